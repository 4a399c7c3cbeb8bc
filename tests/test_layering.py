"""Who may import whom: core is the science and never sees Streamlit or the database."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FORBIDDEN = {
    "core": {"streamlit", "db", "ui", "pages", "app"},
    "db": {"streamlit", "ui", "pages", "app"},
    "ui": {"pages", "app"},
}


def imported_top_level_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_checker_sees_imports(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import streamlit as st\nfrom db.session import make_engine\nimport numpy\n")
    assert imported_top_level_modules(sample) == {"streamlit", "db", "numpy"}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_respects_layering(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"{package}/ has no Python files"
    leaks = {
        str(path.relative_to(ROOT)): sorted(imported_top_level_modules(path) & FORBIDDEN[package])
        for path in files
    }
    leaks = {path: names for path, names in leaks.items() if names}
    assert not leaks, f"{package}/ imports what it must not: {leaks}"
