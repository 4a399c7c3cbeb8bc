"""SAFEGEN dashboard entry point: a router and nothing else. Run with `make run`.

Every page has a stable address, its file's name: /scan_review, /batch_screening, /evaluation, /about,
/reading, /study_results, /study_admin. The root address shows Scan review too, in place: Streamlit serves a
default page only at the root (a bookmarked /scan_review would be "Page not found" were Scan review the
default), and a redirect from the root (``st.switch_page``) raced a reader's first click: a link clicked
while it was pending landed on Scan review.
"""

import streamlit as st

st.set_page_config(page_title="SAFEGEN", page_icon=":material/health_and_safety:", layout="wide")


def page(name: str, title: str, icon: str) -> st.Page:
    """``pages/<name>.py`` at the address ``/<name>`` (the address Streamlit gives a file under ``pages/``
    before any session has run this router: :func:`ui.router.through_the_router` relies on that)."""
    return st.Page(f"pages/{name}.py", title=title, icon=f":material/{icon}:", url_path=name)


scan_review = page("scan_review", "Scan review", "radiology")
screening = [
    scan_review,
    page("batch_screening", "Batch screening", "view_list"),
    page("evaluation", "Evaluation", "monitoring"),
    page("about", "About & model card", "info"),
]
study = [
    page("reading", "Reading", "edit_note"),
    page("study_results", "Study results", "query_stats"),
    page("study_admin", "Study admin", "admin_panel_settings"),
]
root = st.Page("pages/scan_review.py", title="Scan review", url_path="", default=True, visibility="hidden")
st.navigation({"Screening": [root, *screening], "Reader study": study}).run()
