"""The Study admin and Results pages' pieces (admins only for creating and exporting)."""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.demo import available_cases
from core.errors import InputError
from core.io import ACCEPTED_SUFFIXES
from core.resources import shared_path
from core.study_stats import likert_levels
from db.models import Arm, Reader, Role, StudyKind
from db.repository import (
    ARTIFACT_CHECKLIST,
    DEFAULT_QUESTIONS,
    QUALITY_SCALES,
    TURING_QUESTIONS,
    TWO_ARM_QUESTIONS,
    StudyError,
    account,
    create_reader,
    progress,
    quality_questions,
    reader_accounts,
    studies_of,
)
from workflows.score_folder import find_inputs
from workflows.studies import analyse_study, create_study_from_files, export_study, read_case_list
from ui.analysis import load_scorer, progress_bar
from ui.resources import UPLOAD_TYPES
from ui.state import Keys
from ui.study import case_heatmap, case_volume, default_tau, plain_markdown, read_session, session
from ui.tables import RATE, Column, show_table

def _shared(text: str | Path) -> Path:
    """A server path the admin named, if it is inside the folders the server shares; else a StudyError."""
    try:
        return shared_path(text)
    except InputError as error:
        raise StudyError(str(error)) from None


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


def accounts_section(admin: Reader) -> None:
    with st.form(Keys.ADMIN_ACCOUNT_FORM, clear_on_submit=True):
        st.subheader("Add an account")
        username = st.text_input("User name", key=Keys.ADMIN_NEW_USERNAME)
        password = st.text_input("Password (8 characters or more, not easy to guess)", type="password",
                                 key=Keys.ADMIN_NEW_PASSWORD)
        role = st.radio("Role", [Role.READER.value, Role.ADMIN.value], horizontal=True, key=Keys.ADMIN_NEW_ROLE)
        if st.form_submit_button("Add account"):
            try:
                with session() as s:
                    create_reader(s, account(s, admin.id), username, password, Role(role))
                st.success(f"Account {username!r} added.")
            except StudyError as error:
                st.error(str(error))


KIND_NAMES = {
    StudyKind.RATING: "Rating: Likert items, quality checklist, masks",
    StudyKind.VISUAL_TURING: "Visual Turing test: real or synthetic?",
    StudyKind.TWO_ARM: "Two arms: every case with and without SAFEGEN (MRMC ROC)",
}
QUALITY_OPTION = "MRIQC-style quality rating"
TURING_P = Column("p (vs chance)", "Two-sided exact binomial test of the accuracy against 0.5.", RATE)
MRMC_TABLES = {"aucs": "AUC per reader and arm", "variance_components": "Variance components", "tests": "Tests",
               "differences": "Difference between the arms", "reader_differences": "Difference per reader"}


def new_study_section(admin: Reader) -> None:
    """The new-study form; its fields follow the study type chosen above it."""
    if message := st.session_state.pop(Keys.ADMIN_MESSAGE, None):  # the study made by the previous run
        st.success(message)
    with read_session() as s:
        readers = [(r.id, r.username) for r in reader_accounts(s)]
    cases = {c.key: c for c in available_cases()}
    kind = StudyKind(st.radio("Study type", list(KIND_NAMES), format_func=KIND_NAMES.get, key=Keys.ADMIN_KIND))
    with st.form(Keys.ADMIN_STUDY_FORM):
        st.subheader("New study")
        title = st.text_input("Title", key=Keys.ADMIN_TITLE)
        instructions = st.text_area("Instructions for readers", key=Keys.ADMIN_INSTRUCTIONS)
        demo, uploads, synthetic_text = [], [], ""
        if kind is StudyKind.VISUAL_TURING:
            folder_text = st.text_input("Folder of REAL images on the server", key=Keys.ADMIN_FOLDER)
            synthetic_text = st.text_input("Folder of SYNTHETIC images on the server", key=Keys.ADMIN_SYNTHETIC)
        else:
            demo = st.multiselect("Demo scans", list(cases), format_func=lambda k: cases[k].title, key=Keys.ADMIN_DEMOS)
            uploads = st.file_uploader("Or upload scans (NIfTI, DICOM, PNG, JPEG)", accept_multiple_files=True,
                                       type=UPLOAD_TYPES, key=Keys.ADMIN_UPLOADS)
            folder_text = st.text_input(f"Or a folder of scans on the server ({', '.join(ACCEPTED_SUFFIXES)})",
                                        key=Keys.ADMIN_FOLDER)
        list_text = st.text_input(
            "Or a case list on the server (CSV: image, truth or label, mask)", key=Keys.ADMIN_CASE_LIST,
            help="Paths relative to the CSV. truth: real, synthetic, artifact or clean; label 1/0 = artifact/clean "
                 "(a benchmark's labels.csv, e.g. data/benchmark/labels.csv, works as it is). Masks score the "
                 "readers' masks.")
        limit = st.number_input("Cases to draw from the case list (0 = all; balanced between truths)", 0, 10_000, 0,
                                key=Keys.ADMIN_LIMIT)
        ids = {name: reader_id for reader_id, name in readers}
        chosen = [ids[name] for name in st.multiselect("Readers", list(ids), key=Keys.ADMIN_READERS)]
        if kind is StudyKind.TWO_ARM:
            st.caption("Every reader reads every case twice, one session per arm; half the readers start with "
                       "the heatmaps (counterbalanced). The ROC rating is the artifact confidence.")
            plan = "alternate"
        else:
            # one key per study type, so each type keeps its own default (a Turing test: nobody sees AI)
            plan = st.radio("Arms", list(ARM_PLANS), format_func=ARM_PLANS.get, key=f"{Keys.ADMIN_ARMS}.{kind.value}",
                            index=2 if kind is StudyKind.VISUAL_TURING else 0)
        asked, scale, checklist = [], None, None
        if kind is StudyKind.RATING:
            texts = {q["key"]: q["text"] for q in DEFAULT_QUESTIONS} | {QUALITY_OPTION: QUALITY_OPTION}
            asked = st.multiselect("Questions", list(texts), default=list(DEFAULT_KEYS), format_func=texts.get,
                                   key=Keys.ADMIN_QUESTIONS)
        if kind is not StudyKind.TWO_ARM:
            scale = st.selectbox("Overall quality scale (for the quality rating)", list(QUALITY_SCALES),
                                 key=Keys.ADMIN_SCALE)
            checklist = st.multiselect("Artifact checklist (type to add an item)", ARTIFACT_CHECKLIST,
                                       default=ARTIFACT_CHECKLIST, accept_new_options=True, key=Keys.ADMIN_CHECKLIST)
            if kind is StudyKind.VISUAL_TURING:
                asked = [QUALITY_OPTION] if st.checkbox("Also ask the quality rating", key=Keys.ADMIN_TURING_QUALITY) else []
        minimum = st.number_input("Minimum reading time per case (seconds, 0 = none)", 0, 3600, 0,
                                  key=Keys.ADMIN_MIN_SECONDS)
        seed = st.number_input("Randomisation seed", 0, 2**31 - 1, 0, key=Keys.ADMIN_SEED)
        score = st.checkbox("Score the cases with SAFEGEN for the AI arm", value=kind is not StudyKind.VISUAL_TURING,
                            key=f"{Keys.ADMIN_SCORE}.{kind.value}")
        create = st.form_submit_button("Create study", type="primary")
    if not create:
        return
    try:
        questions = study_questions(kind, asked, scale, checklist)
    except StudyError as error:
        st.error(f"The study was not created: {error}")
        return
    with tempfile.TemporaryDirectory() as folder:
        try:
            files, truths, masks = gather_cases(kind, [Path(cases[k].path) for k in demo], folder_text,
                                                synthetic_text, list_text, int(limit), int(seed))
        except StudyError as error:
            st.error(str(error))
            return
        for upload in uploads or []:
            target = Path(folder) / Path(upload.name).name
            target.write_bytes(upload.getvalue())
            files.append(target)
            truths.append(None)
            masks.append(None)
        if not files:
            st.error("Choose at least one demo scan, folder, case list or upload.")
            return
        bar, advance = progress_bar(len(files), f"De-identifying{' and scoring' if score else ''} {len(files)} "
                                    "case(s) ...", "Cases ready", "cases")
        settings = {"min_read_seconds": int(minimum), "crossed": kind is StudyKind.TWO_ARM}
        if kind is not StudyKind.RATING:
            settings["roc_question"] = "origin" if kind is StudyKind.VISUAL_TURING else "artifact_confidence"
        try:
            with session() as s:
                study = create_study_from_files(
                    s, account(s, admin.id), title, files, arms_for(list(chosen), plan), instructions=instructions,
                    questions=questions, seed=int(seed), scorer=load_scorer() if score else None, progress=advance,
                    truths=truths, truth_masks=masks, kind=kind, settings=settings)
                created = (study.id, study.title)
        except (StudyError, ValueError) as error:  # InputError is a ValueError
            st.error(f"The study was not created: {error}")
            return
    # Rerun so the Studies tab (drawn earlier in this run) lists the new study; the message survives it.
    st.session_state[Keys.ADMIN_MESSAGE] = f"Study {plain_markdown(repr(created[1]))} created with {len(files)} case(s)."
    st.rerun()


DEFAULT_KEYS = [q["key"] for q in DEFAULT_QUESTIONS]


def study_questions(kind: StudyKind, asked: list[str], scale: str | None, checklist: list[str] | None) -> list[dict]:
    """The question set of a new study of ``kind`` from the form's choices."""
    quality = quality_questions(scale or "MRIQC 1-4", checklist) if QUALITY_OPTION in asked else []
    if kind is StudyKind.TWO_ARM:
        return list(TWO_ARM_QUESTIONS)
    if kind is StudyKind.VISUAL_TURING:
        turing = list(TURING_QUESTIONS)
        keys = {q["key"] for q in turing}
        return turing + [q for q in quality if q["key"] not in keys]
    chosen = [q for q in DEFAULT_QUESTIONS if q["key"] in asked]
    keys = {q["key"] for q in chosen}
    questions = chosen + [q for q in quality if q["key"] not in keys]
    if not questions:
        raise StudyError("choose at least one question")
    return questions


def gather_cases(kind: StudyKind, demo: list[Path], folder_text: str, synthetic_text: str, list_text: str,
                 limit: int, seed: int) -> tuple[list[Path], list, list]:
    """Files, truths and truth masks from the form's demo scans, folders and case list."""
    files, truths, masks = list(demo), [None] * len(demo), [None] * len(demo)
    folders = [(folder_text, "real" if kind is StudyKind.VISUAL_TURING else None)]
    if kind is StudyKind.VISUAL_TURING:
        folders.append((synthetic_text, "synthetic"))
    for text, truth in folders:
        if text.strip():
            folder = _shared(text.strip())
            if not folder.is_dir():
                raise StudyError(f"{text.strip()} is not a folder on the server.")
            found = find_inputs(folder)
            files += found
            truths += [truth] * len(found)
            masks += [None] * len(found)
    if list_text.strip():
        listed, listed_truths, listed_masks = read_case_list(_shared(list_text.strip()), limit=limit or None, seed=seed)
        for path in [*listed, *(m for m in listed_masks if m is not None)]:  # a list may not point outside the roots
            _shared(path)
        files += listed
        truths += listed_truths
        masks += listed_masks
    if kind is StudyKind.VISUAL_TURING and set(truths) != {"real", "synthetic"}:
        raise StudyError("A visual Turing test needs real and synthetic images (two folders, or a case list "
                         "with truth real / synthetic).")
    if kind is StudyKind.TWO_ARM and not {"artifact", "clean"} <= set(truths):
        raise StudyError("A two-arm ROC study needs cases with known truth, artifact and clean (a case list, "
                         "e.g. data/benchmark/labels.csv).")
    return files, truths, masks


def studies_section(admin: Reader) -> None:
    with read_session() as s:
        studies = [(x.id, x.title) for x in studies_of(s, admin)]
    if not studies:
        st.info("No study yet.")
        return
    titles = dict(studies)
    study_id = st.selectbox("Study", list(titles), format_func=titles.get, key=Keys.ADMIN_STUDY)
    with read_session() as s:
        rows = [{"reader": name, "done": done, "cases": total} for name, (done, total) in progress(s, account(s, admin.id), study_id).items()]
    show_table(pd.DataFrame(rows), hide_index=True)
    if st.button("Prepare the export (answers CSV, NIfTI and DICOM-SEG masks, summary)", key=Keys.ADMIN_EXPORT):
        with tempfile.TemporaryDirectory() as folder, read_session() as s:  # reads only: saves go on meanwhile

            paths = export_study(s, account(s, admin.id), study_id, Path(folder), tau=default_tau())
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
    """The study's results (:func:`workflows.studies.analyse_study`): per-question statistics, the visual
    Turing test line, reader AUCs and the MRMC comparison of the arms, checklists, agreement, masks
    against each other, SAFEGEN and the ground truth, and reading time. Admins see every reader;
    readers their own answers only."""
    # The estimator's radio sits in the MRMC section (shown only when there is one); its value from the
    # last run is what this run analyses with.
    covariance = st.session_state.get(Keys.RESULTS_COVARIANCE, "jackknife")
    with read_session() as s:
        report = analyse_study(s, account(s, reader.id), study_id, tau=default_tau(), covariance=covariance,
                               load_scan=case_volume, load_array=case_heatmap)
    if report.answers.empty:
        st.info("No answers yet.")
        return
    if reader.role is not Role.ADMIN:
        st.caption("You see your own answers only; accuracy, agreement and masks are for the study admin.")
    for note in report.notes:
        st.caption(note)
    if report.turing_line:
        st.subheader("Visual Turing test")
        st.markdown(f"**{report.turing_line}**")
        st.caption("Sensitivity: synthetic images called synthetic; specificity: real images called real; p: "
                   "two-sided exact binomial test of the accuracy against 0.5.")
        show_table(report.turing_table.astype(float).round(3), key="study.turing",
                   overrides={"p_value": TURING_P})
    if report.reader_aucs is not None:
        st.subheader("ROC: readers' AUC")
        show_table(report.reader_aucs.round(3), hide_index=True, key="study.aucs")
    if report.mrmc is not None:
        mrmc_section(report.mrmc)
    if report.usefulness and report.usefulness["n"]:
        st.metric("Mean heatmap usefulness (1-5)", f"{report.usefulness['mean']:.2f}",
                  help="The seed's headline figure (target 4.5); 95 % percentile-bootstrap interval below.")
        st.caption(f"95 % CI {report.usefulness['low']:.2f} to {report.usefulness['high']:.2f} from "
                   f"{int(report.usefulness['n'])} ratings")
    summary = report.question_summary
    st.subheader("Questions")
    show_table(summary.round(2), key="study.questions")
    likert = [q for q in report.questions if q["kind"] == "likert" and q["key"] in summary.index]
    if likert:
        levels = {q["key"]: list(range(1, likert_levels(q) + 1)) for q in likert}
        top = max(len(values) for values in levels.values())
        figure = go.Figure([go.Bar(name=key, x=values, y=[int(summary.loc[key, f"n_{k}"]) for k in values])
                            for key, values in levels.items()])
        figure.update_layout(title="Ratings per level", barmode="group", xaxis_title="rating", yaxis_title="answers",
                             height=360, margin={"t": 50}, xaxis={"range": [0.5, top + 0.5], "dtick": 1})
        st.plotly_chart(figure, key="study.ratings")
    for key, counts in report.checklists.items():
        st.subheader(f"Checklist: {key}")
        show_table(counts.round(3), hide_index=True, key=f"study.checklist.{key}")
    if report.arms is not None:
        st.subheader("Arms")
        show_table(report.arms.round(2), key="study.arms")
    if report.agreement is not None:
        st.subheader("Agreement between readers")
        show_table(report.agreement.round(3), key="study.agreement")
    if reader.role is Role.ADMIN:
        mask_section(report)
    st.subheader("Reading time")
    show_table(report.reading_time.round(1), key="study.time")


def mrmc_section(analysis) -> None:
    """The Obuchowski-Rockette-Hillis comparison of the arms: the headline lines and the tables."""
    st.subheader("MRMC ROC: the arms compared")
    st.radio("MRMC covariance estimator", ["jackknife", "delong"], horizontal=True, key=Keys.RESULTS_COVARIANCE,
             help="Both as in OR-DBM MRMC / MRMCaov; jackknife is their default.")
    first, second = analysis.treatments[:2]
    st.caption(f"AUCs in the order {first} vs {second}; the difference is {first} minus {second}. Ratings: the "
               "ROC question on cases of known truth; empirical (trapezoidal) AUC.")
    st.markdown(f"**{analysis.summary_line('RRRC')}**")
    st.markdown(analysis.summary_line("FRRC"))
    if analysis.cases_dropped:
        st.caption(f"{analysis.cases_dropped} case(s) not read by every reader in every arm were left out.")
    frames = analysis.to_frames()
    with st.expander("Variance components, tests and per-reader differences"):
        for name, title in MRMC_TABLES.items():
            st.markdown(f"**{title}**")
            show_table(frames[name], hide_index=True, key=f"study.mrmc.{name}")


def mask_section(report) -> None:
    """Dice of the readers' masks with each other, with SAFEGEN's tau mask and with the ground truth."""
    if report.masks_between is None and report.masks_vs_truth_per_reader is None:
        return
    st.subheader("Masks")
    if report.masks_between is None:
        st.caption("No reader has drawn a mask yet.")
    else:
        st.markdown("Dice between readers (cases where both drew or left the case empty count as agreement):")
        show_table(report.masks_between.round(3), hide_index=True, key="study.masks.between")
    if report.masks_vs_safegen is not None:
        st.markdown("Dice of each reader's mask with SAFEGEN's mask at the default τ:")
        show_table(report.masks_vs_safegen.round(3), hide_index=True, key="study.masks.safegen")
    if report.masks_vs_truth_per_reader is not None:
        st.markdown("Readers against the ground-truth masks (Dice and hit rate on cases with an artifact; "
                    "false marks on clean cases):")
        show_table(report.masks_vs_truth_per_reader.round(3), hide_index=True, key="study.masks.truth")
