"""Batch screening: score many generated images at once, rank them, export the table."""

import streamlit as st

from ui.batch import batch_inputs, run_screening, show_screening
from ui.review import method_choice
from ui.state import Keys

st.title("Batch screening")
st.caption(
    "Score a set of generated images (NIfTI, DICOM, PNG) with the brain-MRI T1 models and rank them, "
    "worst first. Each file is scored once per click; nothing is written on the server."
)
items, label = batch_inputs()
method = method_choice()
if st.button(f"Score {label}", key=Keys.BATCH_RUN, disabled=not items, type="primary"):
    run_screening(items, method)
if st.session_state.get(Keys.BATCH_RESULT) is not None:
    show_screening(st.session_state[Keys.BATCH_RESULT])
