"""Reading: a reader's own cases in their own order, the image, the questions and a mask canvas."""

import streamlit as st

from ui.router import through_the_router
from ui.study import login_box
from ui.study_reading import case_panel, choose_case, choose_study

through_the_router()  # before anything is drawn: a page run alone reruns through app.py
st.title("Reading")
reader = login_box()
if reader is None:
    st.stop()
study = choose_study(reader)
if study is None:
    st.info("You are not a reader of any study yet. An admin adds you on the Study admin page.")
    st.stop()
case_id = choose_case(reader, study)
if case_id is not None:
    case_panel(reader, study, case_id)
