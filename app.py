"""SAFEGEN dashboard entry point: a router and nothing else. Run with `make run`."""

import streamlit as st

st.set_page_config(page_title="SAFEGEN", page_icon=":material/health_and_safety:", layout="wide")

pages = [
    st.Page("pages/scan_review.py", title="Scan review", icon=":material/radiology:", default=True),
    st.Page("pages/batch_screening.py", title="Batch screening", icon=":material/view_list:"),
    st.Page("pages/evaluation.py", title="Evaluation", icon=":material/monitoring:"),
    st.Page("pages/about.py", title="About & model card", icon=":material/info:"),
]
study = [
    st.Page("pages/reading.py", title="Reading", icon=":material/edit_note:"),
    st.Page("pages/study_results.py", title="Study results", icon=":material/query_stats:"),
    st.Page("pages/study_admin.py", title="Study admin", icon=":material/admin_panel_settings:"),
]
st.navigation({"Screening": pages, "Reader study": study}).run()
