"""Scan review: load a demo scan or an upload and read it slice by slice."""

import streamlit as st

from core.demo import available_cases
from core.errors import InputError
from ui.resources import demo_volume, uploaded_volume
from ui.state import SOURCE_DEMO, SOURCE_UPLOAD, Keys
from ui.viewer import slice_viewer, volume_facts

st.title("Scan review")

cases = {case.key: case for case in available_cases()}
with st.sidebar:
    source = st.radio("Scan source", [SOURCE_DEMO, SOURCE_UPLOAD], key=Keys.SOURCE_KIND)

volume = None
if source == SOURCE_DEMO:
    key = st.selectbox(
        "Demo scan", list(cases), format_func=lambda k: cases[k].title, key=Keys.DEMO_CASE
    )
    st.caption(f"{cases[key].description} Source: {cases[key].provenance}.")
    volume = demo_volume(key)
else:
    upload = st.file_uploader(
        "NIfTI (.nii, .nii.gz), DICOM file (.dcm), zipped DICOM series (.zip), PNG or JPEG",
        type=["nii", "gz", "dcm", "zip", "png", "jpg", "jpeg"],
        key=Keys.UPLOAD,
    )
    if upload is not None:
        try:
            volume = uploaded_volume(upload)
        except InputError as error:
            st.error(f"**{upload.name}** cannot be used: {error}")

if volume is not None:
    volume_facts(volume)
    slice_viewer(volume)
