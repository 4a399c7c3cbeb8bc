"""Cached loading: each scan is read once per server process, not on every widget move."""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st
from streamlit.runtime.uploaded_file_manager import UploadedFile

from core.demo import get_case
from core.io import ACCEPTED_SUFFIXES, load_upload, load_volume
from core.resources import PROJECT_ROOT
from core.types import Volume
from ui.state import Keys

UPLOAD_TYPES = list(dict.fromkeys(suffix.rsplit(".", 1)[1] for suffix in ACCEPTED_SUFFIXES))
"""The uploaders' ``type=``: :data:`core.io.ACCEPTED_SUFFIXES` by their last part, without the dot
(``gz`` lets ``.nii.gz`` through: Streamlit checks a name's last suffix)."""


@st.cache_resource(show_spinner="Loading the demo scan ...", max_entries=8)
def demo_volume(case_key: str) -> Volume:
    """The demo case's Volume. Shared by all sessions: callers must not modify it."""
    case = get_case(case_key)
    return load_volume(case.path, modality=case.modality)


def uploaded_volume(upload: UploadedFile) -> Volume:
    """An uploaded file as a Volume, read once per upload and kept in this session.

    Keyed by the upload's file id rather than cached on its bytes, so a slider move does not
    re-hash a large file. Raises core.errors.InputError on bad input (nothing is kept then).
    """
    kept = st.session_state.get(Keys.UPLOADED_VOLUME)
    if kept is not None and kept[0] == upload.file_id:
        return kept[1]
    with st.spinner(f"Reading {upload.name} ..."):
        volume = load_upload(upload.name, upload.getvalue())
    st.session_state[Keys.UPLOADED_VOLUME] = (upload.file_id, volume)
    return volume


def data_dirs() -> tuple[Path, Path]:
    """The reference and test-benchmark folders (``SAFEGEN_DATA_DIR`` overrides, for tests)."""
    root = Path(os.environ.get("SAFEGEN_DATA_DIR", PROJECT_ROOT / "data"))
    return root / "reference", root / "benchmark"
