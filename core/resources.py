"""Where files shipped by installed packages live (no network involved)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def package_file(module: str, *parts: str) -> Path | None:
    """Path of a file inside an installed package, or None if the package is not installed.

    Example: ``package_file("data_store", "data", "RG1_UNCR.dcm")`` for a pydicom-data file.
    """
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)
