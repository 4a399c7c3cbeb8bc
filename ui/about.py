"""Tables for the About page (kept out of the page so it stays a layout file)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import pandas as pd

from core.demo import DEMO_CASES
from core.reference import KNOWN_SUBJECTS

_PACKAGES = ("torch", "monai", "streamlit", "nibabel", "pydicom", "nilearn", "captum", "shap", "SQLAlchemy")


def data_sources_table() -> pd.DataFrame:
    rows = [
        {
            "use": "reference (normal anatomy)",
            "name": s.name,
            "description": s.description,
            "installed by": s.provenance,
            "present": s.path is not None and s.path.is_file(),
        }
        for s in KNOWN_SUBJECTS
    ]
    rows += [
        {
            "use": "demo scan",
            "name": c.key,
            "description": c.description,
            "installed by": c.provenance,
            "present": c.available,
        }
        for c in DEMO_CASES
    ]
    return pd.DataFrame(rows)


def versions_table() -> pd.DataFrame:
    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    return pd.DataFrame([{"package": p, "version": installed(p)} for p in _PACKAGES])
