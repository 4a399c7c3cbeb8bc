"""Who may import whom: core is the science and never sees Streamlit, the database or a workflow; db is
persistence only; workflows (the commands, screening, the reader study) sit above both; ui and pages reach
the database only through db.repository; and no project module imports itself back through a cycle of others."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FORBIDDEN = {
    "core": {"streamlit", "db", "workflows", "ui", "pages", "app"},
    "db": {"streamlit", "workflows", "ui", "pages", "app"},
    "workflows": {"streamlit", "ui", "pages", "app"},
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


# --- No import cycles among the project's own modules -------------------------------------------

CYCLE_PACKAGES = ("core", "db", "workflows", "ui")  # with their subpackages (core.baselines, core.detectors, ...)
# Modules whose in-function imports are deliberate and exempt: the command line imports each
# command's modules when that command runs, and nothing imports it, so it cannot close a cycle.
LAZY_IMPORTS_ALLOWED = {"workflows.cli"}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, name: str, modules: set[str], *, module_level_only: bool) -> set[str]:
    """The project modules that ``path`` (module ``name``) imports anywhere in its body, in functions
    and ``TYPE_CHECKING`` blocks too: an import that closes a cycle is a cycle wherever it hides.
    ``from a.b import c`` is an edge to ``a.b.c`` when that is a module, else to ``a.b``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    nodes = tree.body if module_level_only else ast.walk(tree)
    targets: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    found = set()
    for target in targets:
        while target and target not in modules:  # import a.b.c of a module a.b's attribute c
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)
    return found


def import_graph(root: Path, packages: tuple[str, ...] = CYCLE_PACKAGES,
                 lazy_allowed: set[str] = frozenset()) -> dict[str, set[str]]:
    """Module -> the project modules it imports, over every ``.py`` file of ``packages`` under ``root``."""
    files = {module_name(p, root): p for package in packages for p in sorted((root / package).rglob("*.py"))}
    modules = set(files)
    return {name: _imports(path, name, modules, module_level_only=name in lazy_allowed)
            for name, path in files.items()}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted; a module
    importing itself does not count."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(components)


def test_the_cycle_checker_finds_a_planted_cycle(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.b import thing\n")
    # The closing import hides in a function, relative: still an edge.
    (package / "b.py").write_text("def thing():\n    from .sub import c\n    return c\n")
    (package / "sub" / "c.py").write_text("import numpy\nimport pkg.a\n")
    (package / "leaf.py").write_text("from pkg import a\n")
    (package / "lazy.py").write_text("import pkg.a\ndef run():\n    from pkg import leaf\n")
    (package / "d.py").write_text("from pkg.e import x\n")
    (package / "e.py").write_text("def f():\n    from pkg.d import y\n")
    graph = import_graph(tmp_path, ("pkg",), lazy_allowed={"pkg.lazy"})
    assert graph["pkg.b"] == {"pkg.sub.c"}
    assert graph["pkg.sub.c"] == {"pkg.a"}
    assert graph["pkg.lazy"] == {"pkg.a"}
    assert import_cycles(graph) == [["pkg.a", "pkg.b", "pkg.sub.c"], ["pkg.d", "pkg.e"]]
    assert import_cycles(import_graph(tmp_path, ("pkg",), lazy_allowed={"pkg.e"})) == [["pkg.a", "pkg.b", "pkg.sub.c"]]


def test_no_import_cycles():
    cycles = import_cycles(import_graph(ROOT, lazy_allowed=LAZY_IMPORTS_ALLOWED))
    assert not cycles, "import cycles among the project's modules:\n" + "\n".join(" <-> ".join(c) for c in cycles)


# --- db/ is persistence only; ui/ and pages/ reach it through db.repository ----------------------

# What db/ may take from core: where the default database file lives (core.resources) and how many levels
# a Likert question has, to check a stored answer (core.study_stats.likert_levels). Nothing that loads,
# scores, de-identifies or exports a scan: a workflow that does (the reader study) lives in workflows/.
DB_MAY_IMPORT_FROM_CORE = {"core.resources", "core.study_stats"}


def test_db_holds_no_workflow():
    graph = import_graph(ROOT, ("core", "db", "workflows"))
    reached = {name: sorted(target for target in targets if not target.startswith("db"))
               for name, targets in graph.items() if name.startswith("db")}
    beyond = {name: sorted(set(targets) - DB_MAY_IMPORT_FROM_CORE) for name, targets in reached.items()}
    beyond = {name: targets for name, targets in beyond.items() if targets}
    assert not beyond, f"db/ imports more than persistence needs: {beyond}"


QUERY_CALLS = {"select", "scalars", "scalar", "execute"}


def direct_queries(path: Path) -> list[str]:
    """The places in ``path`` that query the database themselves: an import of SQLAlchemy, a call named
    ``select`` / ``scalars`` / ``scalar`` / ``execute``, or ``x.get(Model, ...)`` with a class of
    ``db.models`` (``Session.get``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    models = {alias.asname or alias.name for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom) and node.module == "db.models" for alias in node.names}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "sqlalchemy" for a in node.names):
            found.append(f"{node.lineno}: import sqlalchemy")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sqlalchemy":
            found.append(f"{node.lineno}: from {node.module} import")
        elif isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            if name in QUERY_CALLS:
                found.append(f"{node.lineno}: {name}(...)")
            elif (name == "get" and node.args and isinstance(node.args[0], ast.Name)
                  and node.args[0].id in models):
                found.append(f"{node.lineno}: get({node.args[0].id}, ...)")
    return found


def test_the_query_checker_sees_queries(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("from sqlalchemy import select\nfrom db.models import Reader\n"
                      "def f(s, d):\n    d.get('key', 1)\n    s.get(Reader, 1)\n"
                      "    return s.scalars(select(Reader))\n")
    assert sorted(direct_queries(sample)) == ["1: from sqlalchemy import", "5: get(Reader, ...)",
                                              "6: scalars(...)", "6: select(...)"]


@pytest.mark.parametrize("package", ["ui", "pages"])
def test_ui_and_pages_query_only_through_the_repository(package):
    found = {str(path.relative_to(ROOT)): queries for path in sorted((ROOT / package).glob("*.py"))
             if (queries := direct_queries(path))}
    assert not found, f"{package}/ queries the database itself (put the query in db/repository.py): {found}"
