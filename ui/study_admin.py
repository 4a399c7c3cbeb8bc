"""The Study admin and Results pages' pieces (admins only for creating and exporting)."""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from sqlalchemy import select

from core.demo import available_cases
from core.score_folder import find_inputs
from core.study_stats import (
    agreement,
    answers_frame,
    mask_dice_against,
    mask_dice_between_readers,
    mean_with_ci,
    question_summary,
    reading_time,
)
from db.models import Arm, Reader, Role, Study
from db.repository import (
    DEFAULT_QUESTIONS,
    StudyError,
    answers_table,
    create_reader,
    progress,
    studies_of,
    study_masks,
)
from db.studies import create_study_from_files, export_study
from ui.analysis import load_scorer, progress_bar
from ui.state import Keys
from ui.study import session

ARM_PLANS = {
    "alternate": "Alternate: half the readers see the AI heatmap",
    "all_ai": "Every reader sees the AI heatmap",
    "all_unaided": "No reader sees the AI heatmap (blinded)",
}


def arms_for(reader_ids: list[int], plan: str) -> dict[int, Arm]:
    """Arm per reader: alternate in the given order, or everyone in one arm."""
    if plan == "all_ai":
        return dict.fromkeys(reader_ids, Arm.AI)
    if plan == "all_unaided":
        return dict.fromkeys(reader_ids, Arm.UNAIDED)
    return {rid: (Arm.AI if i % 2 == 0 else Arm.UNAIDED) for i, rid in enumerate(reader_ids)}


def accounts_section() -> None:
    with st.form(Keys.ADMIN_ACCOUNT_FORM, clear_on_submit=True):
        st.subheader("Add an account")
        username = st.text_input("User name", key=Keys.ADMIN_NEW_USERNAME)
        password = st.text_input("Password (8 characters or more)", type="password", key=Keys.ADMIN_NEW_PASSWORD)
        role = st.radio("Role", [Role.READER.value, Role.ADMIN.value], horizontal=True, key=Keys.ADMIN_NEW_ROLE)
        if st.form_submit_button("Add account"):
            try:
                with session() as s:
                    create_reader(s, username, password, Role(role))
                st.success(f"Account {username!r} added.")
            except StudyError as error:
                st.error(str(error))


def new_study_section(admin: Reader) -> None:
    with session() as s:
        readers = [(r.id, r.username) for r in s.scalars(select(Reader).where(Reader.role == Role.READER)
                                                         .order_by(Reader.username))]
    cases = {c.key: c for c in available_cases()}
    with st.form(Keys.ADMIN_STUDY_FORM):
        st.subheader("New study")
        title = st.text_input("Title", key=Keys.ADMIN_TITLE)
        instructions = st.text_area("Instructions for readers", key=Keys.ADMIN_INSTRUCTIONS)
        demo = st.multiselect("Demo scans", list(cases), format_func=lambda k: cases[k].title, key=Keys.ADMIN_DEMOS)
        uploads = st.file_uploader("Or upload scans (NIfTI, DICOM, PNG)", accept_multiple_files=True,
                                   type=["nii", "gz", "dcm", "png", "jpg", "jpeg"], key=Keys.ADMIN_UPLOADS)
        folder_text = st.text_input("Or a folder of scans on the server (.nii, .nii.gz, .dcm, .png)",
                                    key=Keys.ADMIN_FOLDER)
        ids = {name: reader_id for reader_id, name in readers}
        chosen = [ids[name] for name in st.multiselect("Readers", list(ids), key=Keys.ADMIN_READERS)]
        plan = st.radio("Arms", list(ARM_PLANS), format_func=ARM_PLANS.get, key=Keys.ADMIN_ARMS)
        texts = {q["key"]: q["text"] for q in DEFAULT_QUESTIONS}
        asked = st.multiselect("Questions", list(texts), default=list(texts), format_func=texts.get,
                               key=Keys.ADMIN_QUESTIONS)
        seed = st.number_input("Randomisation seed", 0, 2**31 - 1, 0, key=Keys.ADMIN_SEED)
        score = st.checkbox("Score the cases with SAFEGEN for the AI arm", value=True, key=Keys.ADMIN_SCORE)
        create = st.form_submit_button("Create study", type="primary")
    if not create:
        return
    with tempfile.TemporaryDirectory() as folder:
        files = [Path(cases[k].path) for k in demo]
        if folder_text.strip():
            if not Path(folder_text.strip()).is_dir():
                st.error(f"{folder_text.strip()} is not a folder on the server.")
                return
            files += find_inputs(Path(folder_text.strip()))
        for upload in uploads or []:
            target = Path(folder) / Path(upload.name).name
            target.write_bytes(upload.getvalue())
            files.append(target)
        if not files:
            st.error("Choose at least one demo scan or upload a scan.")
            return
        bar, advance = progress_bar(len(files), f"De-identifying{' and scoring' if score else ''} {len(files)} "
                                    "case(s) ...", "Cases ready", "cases")

        try:
            with session() as s:
                study = create_study_from_files(
                    s, s.get(Reader, admin.id), title, files, arms_for(list(chosen), plan), instructions=instructions,
                    questions=[q for q in DEFAULT_QUESTIONS if q["key"] in asked], seed=int(seed),
                    scorer=load_scorer() if score else None, progress=advance)
                created = (study.id, study.title)
        except (StudyError, ValueError) as error:  # InputError is a ValueError
            st.error(f"The study was not created: {error}")
            return
    st.success(f"Study {created[1]!r} created with {len(files)} case(s).")


def studies_section(admin: Reader) -> None:
    with session() as s:
        studies = [(x.id, x.title) for x in studies_of(s, admin)]
    if not studies:
        st.info("No study yet.")
        return
    titles = dict(studies)
    study_id = st.selectbox("Study", list(titles), format_func=titles.get, key=Keys.ADMIN_STUDY)
    with session() as s:
        rows = [{"reader": name, "done": done, "cases": total} for name, (done, total) in progress(s, study_id).items()]
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    if st.button("Prepare the export (answers CSV, NIfTI masks, summary)", key=Keys.ADMIN_EXPORT):
        with tempfile.TemporaryDirectory() as folder, session() as s:
            paths = export_study(s, s.get(Reader, admin.id), study_id, Path(folder))
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
                for path in paths.values():
                    archive.write(path, path.relative_to(folder))
        st.session_state[Keys.ADMIN_EXPORT_ZIP] = (study_id, buffer.getvalue())
    stored = st.session_state.get(Keys.ADMIN_EXPORT_ZIP)
    if stored and stored[0] == study_id:
        st.download_button("Download the export (.zip)", stored[1], file_name=f"study_{study_id}_export.zip",
                           mime="application/zip", icon=":material/download:", on_click="ignore",
                           key=Keys.ADMIN_EXPORT_DOWNLOAD)


def results(reader: Reader, study_id: int) -> None:
    """Per-question statistics, agreement, the headline usefulness and reading time (admins: all
    readers; readers: their own answers only)."""
    with session() as s:
        study = s.get(Study, study_id)
        questions = list(study.questions)
        frame = answers_frame(answers_table(s, reader, study_id))
    if frame.empty:
        st.info("No answers yet.")
        return
    if reader.role is not Role.ADMIN:
        st.caption("You see your own answers only; agreement between readers is for the study admin.")
    headline = mean_with_ci(frame, "heatmap_useful") if "heatmap_useful" in set(frame["question"]) else None
    if headline and headline["n"]:
        st.metric("Mean heatmap usefulness (1-5)", f"{headline['mean']:.2f}",
                  help="The seed's headline figure (target 4.5); 95 % percentile-bootstrap interval below.")
        st.caption(f"95 % CI {headline['low']:.2f} to {headline['high']:.2f} from {int(headline['n'])} ratings")
    summary = question_summary(frame, questions)
    st.subheader("Questions")
    st.dataframe(summary.round(2))
    likert = [q["key"] for q in questions if q["kind"] == "likert" and q["key"] in summary.index]
    figure = go.Figure([go.Bar(name=key, x=[1, 2, 3, 4, 5], y=[int(summary.loc[key, f"n_{k}"]) for k in range(1, 6)])
                        for key in likert])
    figure.update_layout(title="Ratings per level", barmode="group", xaxis_title="rating", yaxis_title="answers",
                         height=360, margin={"t": 50})
    st.plotly_chart(figure, key="study.ratings")
    if reader.role is Role.ADMIN:
        st.subheader("Agreement between readers")
        rows = [{"question": key, **agreement(frame, key)} for key in likert]
        st.dataframe(pd.DataFrame(rows).set_index("question").round(3))
    if reader.role is Role.ADMIN:
        mask_section(reader, study_id)
    st.subheader("Reading time")
    st.dataframe(reading_time(frame).round(1))


def mask_section(admin: Reader, study_id: int) -> None:
    """Dice of the readers' masks with each other and with SAFEGEN's tau mask, per case."""
    with session() as s:
        drawn = study_masks(s, admin, study_id, include_empty=True)
        cases = {c.id: c for c in s.get(Study, study_id).cases}
    masks = {(case.id, name): stack_masks(slices, case.display_shape) for case, name, slices in drawn}
    st.subheader("Masks")
    if not any(mask.any() for mask in masks.values()):
        st.caption("No reader has drawn a mask yet.")
        return
    st.markdown("Dice between readers (cases where both drew or left the case empty count as agreement):")
    st.dataframe(mask_dice_between_readers(masks).round(3), hide_index=True)
    reference = {case_id: safegen_mask(case) for case_id, case in cases.items() if case.ai_heatmap_path}
    if reference:
        st.markdown("Dice of each reader's mask with SAFEGEN's mask at the default τ:")
        st.dataframe(mask_dice_against(masks, reference).round(3), hide_index=True)


def stack_masks(slices: dict[int, np.ndarray], display_shape: list[int]) -> np.ndarray:
    """``(slices, rows, columns)`` boolean stack of a reader's display-slice masks (empty where not drawn)."""
    rows, cols, n = display_shape
    out = np.zeros((n, rows, cols), bool)
    for index, mask in slices.items():
        out[index] = mask
    return out


def safegen_mask(case) -> np.ndarray:
    """SAFEGEN's mask of a case at the default tau, as display slices like the readers'."""
    from core.masks import unsafe_mask
    from ui.study import case_heatmap, case_volume, default_tau

    tau = default_tau()
    volume = case_volume(case.scan_path)
    heatmap = case_heatmap(case.ai_heatmap_path)
    slices = [heatmap if not volume.is_3d else volume.with_array(heatmap).display_slice(i)
              for i in range(volume.n_slices)]
    return np.stack([unsafe_mask(h, tau).astype(bool) for h in slices])
