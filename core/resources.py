"""Where files shipped by installed packages live (no network involved)."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

from core.errors import InputError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA_ROOTS_ENV = "SAFEGEN_DATA_ROOTS"


def data_roots() -> list[Path]:
    """The server folders the dashboard may read by name (Batch screening's folder; a study's folders
    and case list): ``$SAFEGEN_DATA_ROOTS`` (separated by ``os.pathsep``), else the project's ``data/``.
    Read at call time."""
    text = os.environ.get(DATA_ROOTS_ENV)
    roots = [Path(p).expanduser() for p in text.split(os.pathsep) if p.strip()] if text else [PROJECT_ROOT / "data"]
    return [root.resolve() for root in roots]


def shared_path(text: str | Path) -> Path:
    """``text`` resolved (symlinks and ``..`` followed) if it lies inside one of :func:`data_roots`.

    Raises:
        InputError: outside every root (the message names the roots and the variable that sets them).
    """
    path = Path(text).expanduser().resolve()
    if any(path.is_relative_to(root) for root in data_roots()):
        return path
    roots = ", ".join(str(root) for root in data_roots())
    raise InputError(f"{text} is outside the folders this server shares ({roots}); the server's operator can add "
                     f"folders with {DATA_ROOTS_ENV}.")


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
