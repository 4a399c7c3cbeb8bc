"""Every page runs through ``app.py``'s router, whatever address a session opens first."""

from __future__ import annotations

import runpy

import streamlit as st


def through_the_router() -> None:
    """Run ``app.py`` (which runs this page) and stop, when Streamlit ran this page alone; the first
    call of every page.

    Streamlit treats a folder named ``pages/`` beside ``app.py`` as its old multipage layout until a
    session has run ``app.py`` (whose ``st.navigation`` switches that off for the server): a fresh
    server's first visit to ``/about`` runs ``pages/about.py`` alone, without the router's page config
    (wide layout) and navigation, and so does every later visit by address. Streamlit's own answer for
    the root address is the same: it runs ``app.py`` inside its old layout. The router resolves the
    same page (its ``url_path`` is the file's name, the address the old layout gave it); widget
    events of this run (a click) reach it, which a rerun would drop.
    """
    from streamlit.runtime.pages_manager import PagesManager  # the switch st.navigation itself turns off
    from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        runpy.run_path(get_script_run_ctx().main_script_path, run_name="__main__")
        st.stop()
