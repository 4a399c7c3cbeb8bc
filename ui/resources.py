"""Cached loading: each scan is read once per server process, not on every widget move."""

from __future__ import annotations

import streamlit as st

from core.demo import get_case
from core.io import load_upload, load_volume
from core.types import Volume


@st.cache_resource(show_spinner="Loading the demo scan ...", max_entries=8)
def demo_volume(case_key: str) -> Volume:
    """The demo case's Volume. Shared by all sessions: callers must not modify it."""
    case = get_case(case_key)
    return load_volume(case.path, modality=case.modality)


@st.cache_data(show_spinner="Reading the upload ...", max_entries=4)
def uploaded_volume(filename: str, data: bytes) -> Volume:
    """An uploaded file as a Volume; raises core.errors.InputError on bad input."""
    return load_upload(filename, data)
