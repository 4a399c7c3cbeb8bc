"""Where files shipped by installed packages live (no network involved)."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def shown_path(path: Path) -> str:
    """A path as recorded in sidecar files and manifests: relative to the project when inside it (no
    machine paths); a relative path is kept as given."""
    path = Path(path)
    return str(path.relative_to(PROJECT_ROOT)) if path.is_absolute() and path.is_relative_to(PROJECT_ROOT) else str(path)


def file_sha256(path: Path) -> str:
    """SHA-256 (hex) of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def package_file(module: str, *parts: str) -> Path | None:
    """Path of a file inside an installed package, or None if the package is not installed.

    Example: ``package_file("data_store", "data", "RG1_UNCR.dcm")`` for a pydicom-data file.
    """
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)
