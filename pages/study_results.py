"""Study results: ratings per question, agreement between readers, the headline usefulness, time."""

import streamlit as st

from db.repository import studies_of
from ui.router import through_the_router
from ui.state import Keys
from ui.study import login_box, read_session
from ui.study_admin import results

through_the_router()  # before anything is drawn: a page run alone reruns through app.py
st.title("Study results")
reader = login_box()
if reader is None:
    st.stop()
with read_session() as s:
    titles = {x.id: x.title for x in studies_of(s, reader)}
if not titles:
    st.info("No study to show yet.")
    st.stop()
results(reader, st.selectbox("Study", list(titles), format_func=titles.get, key=Keys.RESULTS_STUDY))
