"""Study admin: accounts, new studies from demo scans or uploads, progress per reader, export."""

import streamlit as st

from db.models import Role
from ui.router import through_the_router
from ui.study import login_box
from ui.study_admin import accounts_section, new_study_section, studies_section

through_the_router()  # before anything is drawn: a page run alone reruns through app.py
st.title("Study admin")
reader = login_box()
if reader is None:
    st.stop()
if reader.role is not Role.ADMIN:
    st.error("Only a study admin can open this page.")
    st.stop()
studies, new, accounts = st.tabs(["Studies", "New study", "Accounts"])
with accounts:  # first in code: an account added here is a reader option of the new-study form in the same run
    accounts_section(reader)
with studies:
    studies_section(reader)
with new:
    new_study_section(reader)
