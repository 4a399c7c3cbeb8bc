"""Batch screening: score many generated images at once, rank them, export the table."""

import streamlit as st

from core.types import SAFEGEN_METHOD
from ui.batch import batch_inputs, show_batch, start_screening
from ui.report import show_report_card
from ui.review import batch_profile_choice, method_choice, pixel_size_choice
from ui.router import through_the_router
from ui.state import Keys
from ui.study import require_screening_access

through_the_router()  # before anything is drawn: a page run alone reruns through app.py
st.title("Batch screening")
require_screening_access()  # once the server runs reader studies: admins only
st.caption(
    "Score a set of generated images (NIfTI, DICOM, PNG) with one profile's models (brain MRI T1 or head CT) "
    "and rank them, "
    "worst first. Each file is scored once per click, in the background (the page stays usable; Cancel keeps "
    "the files done); nothing is written on the server."
)
items, label, manifest = batch_inputs()
method = method_choice()
profile = batch_profile_choice() if method == SAFEGEN_METHOD else "mri_t1"
pixel_mm = pixel_size_choice(Keys.BATCH_PIXEL_MM)
if st.button(f"Score {label}", key=Keys.BATCH_RUN, disabled=not items, type="primary"):
    start_screening(items, method, profile, manifest, pixel_mm)
show_batch()
show_report_card()
