"""About SAFEGEN: intended use, the real data behind it, and its limits."""

import streamlit as st

from ui.about import data_sources_table, versions_table

st.title("About SAFEGEN")
st.markdown(
    """
SAFEGEN checks **synthetic** medical images (from diffusion models, GANs) for artifacts that make
them unsafe to use: hallucinated lesions, smeared regions, checkerboard textures, duplicated
anatomy. Its detectors learn only from **real** images of normal anatomy.

**Intended use:** research — screening generated images before they are used for training,
augmentation or simulation, and reader studies with radiologists. Not for diagnosis.
"""
)
st.subheader("Real data of normal anatomy on this machine")
st.markdown(
    "Only **a few real subjects** can be installed offline, and both brain references are averages "
    "of several scans (smoother than one clinical scan). Normal variation is simulated with "
    "augmentation (rotation, scale, translation, gamma, bias field, Rician noise)."
)
st.dataframe(data_sources_table(), hide_index=True)
st.subheader("Software versions")
st.dataframe(versions_table(), hide_index=True)
