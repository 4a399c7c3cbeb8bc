"""Widgets of the batch-screening page: inputs, the scoring run in the background with its progress and
Cancel button, the results."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.benchmark.generated_set import GENERATED_SET_DIR, group_summary, read_manifest, with_groups
from core.calibration import smallest_p_value
from core.errors import InputError
from core.export import spreadsheet_safe
from core.io import ACCEPTED_SUFFIXES, load_upload, load_volume
from core.resources import shared_path
from core.types import SAFEGEN_METHOD, ScanScorer
from workflows.score_folder import find_inputs
from workflows.screening import Screening, screened_files, screening_of
from ui.analysis import format_score, load_baseline, load_scorer, model_lock, p_floor_sentence
from ui.jobs import BackgroundJob
from ui.resources import UPLOAD_TYPES
from ui.review import METHOD_LABELS
from ui.state import BATCH_DEMO, BATCH_FOLDER, BATCH_UPLOAD, Keys
from ui.tables import RATE, Column, show_table


def batch_inputs() -> tuple[list, str, pd.DataFrame | None]:
    """The chosen files as ``(name, loader)`` items, a label for the button, and the folder's
    ``manifest.csv`` (groups of a generated set, :mod:`core.benchmark.generated_set`) where it has one."""
    source = st.radio("Images from", [BATCH_DEMO, BATCH_UPLOAD, BATCH_FOLDER], key=Keys.BATCH_SOURCE,
                      horizontal=True)
    items = []
    if source == BATCH_UPLOAD:
        uploads = st.file_uploader("Generated images", type=UPLOAD_TYPES, accept_multiple_files=True,
                                   key=Keys.BATCH_UPLOADS)
        for upload in uploads or []:
            items.append((upload.name, lambda u=upload: load_upload(u.name, u.getvalue())))
        return items, f"{len(items)} file(s)", None
    if source == BATCH_DEMO:
        root, recursive = GENERATED_SET_DIR, False
        st.caption(DEMO_SET_ABOUT)
    else:
        folder = st.text_input("Folder on the server", key=Keys.BATCH_FOLDER,
                               placeholder="/path/to/generated/images")
        recursive = st.checkbox("Include sub-folders", key=Keys.BATCH_RECURSIVE)
        if not folder:
            return items, "0 file(s)", None
        try:
            root = shared_path(folder)  # only the folders the server shares (SAFEGEN_DATA_ROOTS)
        except InputError as error:
            st.error(str(error))
            return items, "0 file(s)", None
        if not root.is_dir():
            st.error(f"**{folder}** is not a folder on this server.")
            return items, "0 file(s)", None
    paths = find_inputs(root, recursive=recursive)
    if not paths:
        st.warning(f"**{root}** holds no {', '.join(ACCEPTED_SUFFIXES)} files.")
    for path in paths:
        items.append((str(path.relative_to(root)), lambda p=path: load_volume(p)))
    return items, f"{len(items)} file(s)", read_manifest(root)


DEMO_SET_ABOUT = (
    "Brain MRI slices made by two generators trained on SAFEGEN's real reference slices (two brains: MNI152 "
    "and Colin27): a MONAI DDPM sampled three ways (ancestral DDPM with 1000 steps; DDIM with 50 and with 10 "
    "steps) and a small VAE (blurry by nature), plus two groups of real held-out slices as controls. "
    "Seeds and sampler settings are in `demo/generated_mri_t1/manifest.csv`; "
    "`python -m workflows.cli make-generated-set` rebuilds it."
)


BATCH_REFRESH_S = 1.0  # how often a running batch's progress and table redraw


@dataclass(eq=False)
class BatchJob(BackgroundJob):
    """A batch being scored in a background thread (:class:`ui.jobs.BackgroundJob`), file by file
    (:func:`workflows.screening.screened_files`), each file under :func:`ui.analysis.model_lock`; it stops
    between files once cancelled, and the files done stay in the table.

    The thread calls no Streamlit function: it only appends to :attr:`rows` and :attr:`thumbnails`
    (under a lock); the page ranks what is there on each run (:meth:`screening`).
    """

    scorer: ScanScorer
    manifest: pd.DataFrame | None = None
    pixel_mm: float | None = None  # pixel size of 2-D images that state none (workflows.score_files.score_files)
    rows: list[dict] = field(default_factory=list)
    thumbnails: dict[str, np.ndarray] = field(default_factory=dict)
    _ranked: tuple[int, Screening] | None = field(default=None, init=False, repr=False)

    @property
    def done(self) -> int:
        return len(self.rows)

    def _keep(self, item: tuple[dict, np.ndarray | None]) -> None:
        row, thumb = item
        self.rows.append(row)
        if thumb is not None:
            self.thumbnails[row["file"]] = thumb

    def start(self, items: list) -> None:
        """Score ``items`` in a daemon thread (it dies with the server). Called from the script thread:
        it hands the thread the process-wide model lock."""
        files = screened_files(items, self.scorer, pixel_mm=self.pixel_mm)  # lazy: each file is read and scored in the thread
        self._launch("batch", files, model_lock())

    def screening(self) -> Screening:
        """The files done so far, ranked (made again only when more are done)."""
        with self._lock:
            rows, thumbnails = list(self.rows), dict(self.thumbnails)
        if self._ranked is None or self._ranked[0] != len(rows):
            self._ranked = (len(rows), screening_of(rows, thumbnails, self.scorer))
        return self._ranked[1]

    def status(self) -> str:
        """``12 of 40 files, about 54 s left``."""
        return self.progress_text("files")


def cancel_screening() -> None:
    """Stop this session's background batch, if one runs."""
    job = st.session_state.pop(Keys.BATCH_JOB, None)
    if job is not None:
        job.cancel()


def start_screening(items: list, method: str = SAFEGEN_METHOD, profile: str = "mri_t1",
                    manifest: pd.DataFrame | None = None, pixel_mm: float | None = None) -> None:
    """Score ``items`` in the background (:class:`BatchJob`), replacing this session's last batch and
    cancelling one still running: one batch per session."""
    try:
        scorer = load_scorer(profile) if method == SAFEGEN_METHOD else load_baseline(method)
    except FileNotFoundError as error:
        st.error(f"The models are missing: {error}")
        return
    cancel_screening()
    for key in (Keys.BATCH_RESULT, Keys.BATCH_MANIFEST, Keys.BATCH_REPORT):
        st.session_state.pop(key, None)
    st.session_state[Keys.BATCH_ITEMS] = items  # the report card of this batch reads the same files
    st.session_state[Keys.BATCH_SCORED_PROFILE] = profile
    job = BatchJob(scorer, total=len(items), manifest=manifest, pixel_mm=pixel_mm)
    job.start(items)
    st.session_state[Keys.BATCH_JOB] = job


@st.fragment(run_every=BATCH_REFRESH_S)
def batch_progress(job: BatchJob) -> None:
    """The running batch's progress bar, Cancel button and the files scored so far, redrawn every
    :data:`BATCH_REFRESH_S` on their own; the whole page reruns when the job ends."""
    if job.finished:
        st.rerun()  # the page keeps the finished batch, or what a cancel kept
    stopping = " (stopping after the file being scored)" if job.cancelled else ""
    st.progress(job.fraction, text=f"Scoring: {job.status()}{stopping}")
    st.button("Cancel", key=Keys.BATCH_CANCEL, on_click=job.cancel, disabled=job.cancelled,
              help="Stop after the file being scored; the files done stay in the table.")
    partial = job.screening()
    if len(partial.table):
        st.caption(f"Running: the figures and the table show the {len(partial.table)} of {job.total} files "
                   "scored so far.")
        show_screening(partial, job.manifest)


def show_batch() -> None:
    """This session's batch: a running one's progress and files so far, a stopped one's files with a caption
    saying it is partial, or the last finished one (kept: a second visit scores nothing)."""
    job = st.session_state.get(Keys.BATCH_JOB)
    if job is not None and job.finished and job.complete and job.error is None:
        del st.session_state[Keys.BATCH_JOB]
        st.session_state[Keys.BATCH_RESULT] = job.screening()
        st.session_state[Keys.BATCH_MANIFEST] = job.manifest
        job = None
    if job is None:
        if st.session_state.get(Keys.BATCH_RESULT) is not None:
            show_screening(st.session_state[Keys.BATCH_RESULT], st.session_state.get(Keys.BATCH_MANIFEST))
        return
    if not job.finished:
        batch_progress(job)
        return
    if job.error is not None:
        st.error(f"The batch stopped on an error after {len(job.rows)} of {job.total} files: {job.error}")
    st.caption(f"Partial batch: stopped after {len(job.rows)} of {job.total} files; the figures and the table "
               "show those (Score runs the whole batch again).")
    if job.rows:
        show_screening(job.screening(), job.manifest)


def score_histogram(screening: Screening, tau: float, reference: np.ndarray) -> go.Figure:
    """Scores of this batch against real clean calibration slices, with tau."""
    scores = screening.scored["score"].astype(float).tolist()
    fig = go.Figure()
    fig.add_trace(go.Histogram(x=[float(v) for v in reference], name="real clean slices (calibration)",
                               histnorm="probability", opacity=0.6, marker_color="#7f8c8d", nbinsx=30))
    fig.add_trace(go.Histogram(x=scores, name="this batch", histnorm="probability", opacity=0.7,
                               marker_color="#1f5fbf", nbinsx=30))
    fig.add_vline(x=tau, line_dash="dash", line_color="#c0392b", annotation_text=f"τ = {format_score(tau)}")
    fig.update_layout(barmode="overlay", height=260, margin={"l": 40, "r": 10, "t": 10, "b": 30},
                      xaxis_title="score (z)", yaxis_title="share", legend={"orientation": "h", "y": 1.15})
    return fig


def show_groups(screening: Screening, manifest: pd.DataFrame) -> None:
    """Scores and flags per group of the folder's manifest (e.g. generator and sampler settings)."""
    summary = group_summary(screening.table, manifest)
    if summary.empty:
        return
    st.subheader("By group (manifest.csv)")
    show_table(summary, hide_index=True, key="batch.groups")


def p_value_note(table: pd.DataFrame, n: int) -> str:
    """The p-value's floor with ``n`` calibration slices, and how many files of ``table`` sit on it."""
    at_floor = int(np.isclose(table["p_value"].astype(float), smallest_p_value(n)).sum())
    note = f"{p_floor_sentence(n)}."
    if at_floor:
        note += f" {at_floor} file(s) here have it: p cannot rank them, the score can."
    if (table["slices"].fillna(1) > 1).any():
        note += (" A volume scored by the segmentation head has its worst slice's p multiplied by its scored "
                 "slices (Bonferroni), so its smallest p is that many times larger.")
    return note


def show_screening(screening: Screening, manifest: pd.DataFrame | None = None) -> None:
    """The batch's figures, its ranked table (with each file's manifest group) and the CSV of that table."""
    table = with_groups(screening.table, manifest)
    n_error = int((table["error"] != "").sum())
    if screening.method != SAFEGEN_METHOD:
        st.info(f"Scored with the **{METHOD_LABELS.get(screening.method, screening.method)}** baseline (its own "
                "threshold, fitted on the same real reference slices).", icon=":material/info:")
    cols = st.columns(5)
    cols[0].metric("Files", len(table))
    cols[1].metric("Flagged", int(table["flag"].sum()))
    cols[2].metric("Out of domain", int(table["out_of_domain"].sum()),
                   help="Files that are not what the models were made for: their scores say little.")
    cols[3].metric("Errors", n_error)
    cols[4].metric("τ (5 % of real slices flagged)", format_score(screening.tau))
    st.plotly_chart(score_histogram(screening, screening.tau, screening.reference), key="batch.histogram")
    if manifest is not None:
        show_groups(screening, manifest)
    flagged_only = st.checkbox("Show flagged files only", key=Keys.BATCH_FLAGGED_ONLY)
    shown = table[table["flag"]] if flagged_only else table
    n = len(screening.reference)
    note = p_value_note(table, n)
    p_value = Column("p-value", f"Conformal p-value against the {n} real clean calibration slices: (1 + those "
                                f"scoring at least as high) / ({n} + 1). {note}",
                     RATE if smallest_p_value(n) >= 0.001 else "%.4f")  # 1/(n + 1) shows, not 0.000
    show_table(shown, hide_index=True, hide_empty=True, key="batch.table", overrides={"p_value": p_value})
    st.caption(note)
    st.download_button("Download the table (CSV)", spreadsheet_safe(table).to_csv(index=False).encode(), file_name="safegen_screening.csv",
                       mime="text/csv", icon=":material/download:", on_click="ignore")
    worst = [name for name in screening.scored["file"] if name in screening.thumbnails][:4]
    if worst:
        st.subheader("Worst cases")
        for col, name in zip(st.columns(4), worst, strict=False):
            row = table[table["file"] == name].iloc[0]
            col.image(screening.thumbnails[name], caption=f"{name} · {row['score']:.2f} · slice {row['worst_slice']}")
