"""The generator report card on Batch screening: the finished batch's files judged as a set (fidelity,
coverage, diversity, likely copies of training images, artifact flags per group), made in memory by
:mod:`workflows.report` from the files and the scores the batch already has."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.export import spreadsheet_safe
from core.generator_report import load_feature_encoder
from workflows.report import (
    FEATURE_NOTE, ReportCard, calibrate, group_of, in_manifest_order, read_generated, reference_real_set,
    report_card,
)
from ui.analysis import load_scorer, model_lock
from ui.state import Keys
from ui.tables import show_table

COPIES_SHOWN = 6


@st.cache_resource(show_spinner="Calibrating the copy threshold on the real held-out slices ...")
def reference_and_calibration(profile: str):
    """The profile's real set, its copy thresholds and the feature network: made once per server."""
    real = reference_real_set(profile)
    encoder = load_feature_encoder(profile).standardised_on(real.images)
    return real, calibrate(real, encoder), encoder


def make_card(items: list, screening_table: pd.DataFrame, manifest: pd.DataFrame | None, profile: str,
              method: str) -> ReportCard:
    """The report card of the batch's ``items``, with the scores its batch gave them; a progress bar counts the
    files read, then the set's measures."""
    real, calibration, encoder = reference_and_calibration(profile)
    items = in_manifest_order(items, manifest)
    bar = st.progress(0.0, text="Reading the images ...")
    steps = len(items) + 1  # each file, then the measures of the set
    done = 0

    def read_one(name: str) -> None:
        nonlocal done
        done += 1
        bar.progress(done / steps, text=f"Reading the images: {done} of {len(items)} ({name})")

    with model_lock():
        files, images = read_generated(items, group_of([name for name, _ in items], manifest), profile=profile,
                                       scored=screening_table, progress=read_one)
        if len(images) == 0:
            bar.empty()
            raise ValueError("no file of the batch could be read as a 2-D image")
        bar.progress(len(items) / steps, text=f"Measuring the set of {len(images)} images: features, KID, "
                                              "precision / recall, MS-SSIM, nearest training images ...")
        rate = float(getattr(load_scorer(profile), "false_alarm_rate", float("nan")))
        card = report_card(files, images, real, profile=profile, calibration=calibration, encoder=encoder,
                           method=method, false_alarm_rate=rate, source=f"{len(items)} file(s) of Batch screening")
    bar.empty()
    return card


def precision_recall_figure(card: ReportCard) -> go.Figure:
    """Precision against recall, one labelled point per group."""
    groups = card.groups
    fig = go.Figure(go.Scatter(x=groups["recall"], y=groups["precision"], text=groups["group"],
                               mode="markers+text", textposition="top center", marker={"size": 11}))
    fig.update_layout(height=320, margin={"l": 40, "r": 10, "t": 30, "b": 40},
                      title="Precision / recall per group (k = 3)",
                      xaxis={"title": "recall (coverage)", "range": [-0.05, 1.05]},
                      yaxis={"title": "precision (fidelity)", "range": [-0.05, 1.1]})
    return fig


def similarity_figure(card: ReportCard) -> go.Figure:
    """Nearest-training NCC of the generated and the real held-out images, with the copy threshold."""
    cal = card.report.calibration
    fig = go.Figure()
    fig.add_trace(go.Histogram(x=cal.heldout_pixel.similarity.tolist(), name="real held-out images",
                               histnorm="probability", opacity=0.6, marker_color="#7f8c8d", nbinsx=40))
    fig.add_trace(go.Histogram(x=card.report.copy_check.pixel.similarity.tolist(), name="this batch",
                               histnorm="probability", opacity=0.7, marker_color="#1f5fbf", nbinsx=40))
    fig.add_vline(x=cal.pixel_threshold, line_dash="dash", line_color="#c0392b",
                  annotation_text=f"copy threshold {cal.pixel_threshold:.3f}")
    fig.update_layout(barmode="overlay", height=320, margin={"l": 40, "r": 10, "t": 30, "b": 40},
                      title="Similarity to the nearest training image", xaxis_title="NCC", yaxis_title="share",
                      legend={"orientation": "h", "y": -0.25})
    return fig


def _gray(image: np.ndarray) -> np.ndarray:
    return np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


def show_card(card: ReportCard) -> None:
    """The report card: counts, the per-group tables, the two figures, likely copies beside their twin,
    downloads."""
    groups = card.groups
    cols = st.columns(4)
    cols[0].metric("Images", len(card.ok))
    cols[1].metric("Groups", len(groups))
    cols[2].metric("Likely copies", int(groups["likely copies"].sum()))
    cols[3].metric("Flagged for artifacts", int(groups["flagged"].sum()))
    st.caption(FEATURE_NOTE.format(layer=card.report.feature_layer))
    st.markdown("**Fidelity and coverage** (KID, FID: lower is closer to the real set; precision, recall: higher "
                "is better)")
    show_table(groups[["group", "images", "KID", "KID SE", "FID", "precision", "recall"]], hide_index=True,
               key="report.fidelity")
    left, right = st.columns(2)
    left.plotly_chart(precision_recall_figure(card), key="report.precision_recall")
    right.plotly_chart(similarity_figure(card), key="report.similarity")
    real = card.report.real_ms_ssim
    st.markdown(f"**Diversity** (mean MS-SSIM of pairs within a group: higher = less diverse; real images "
                f"{real.mean:.3f} ± {real.se:.3f})")
    show_table(groups[["group", "MS-SSIM pairs", "MS-SSIM", "MS-SSIM SE", "mode collapse"]], hide_index=True,
               key="report.diversity")
    cal = card.report.calibration
    st.markdown(f"**Memorisation and artifacts** (likely copy: NCC with a training image above "
                f"{cal.pixel_threshold:.4f}; flagged: artifact score above τ, which flags "
                f"{card.false_alarm_rate:.0%} of real clean slices)")
    show_table(groups[["group", "likely copies", "copy share", "highest NCC", "copy margin", "flagged",
                       "flag rate"]], hide_index=True, key="report.copies")
    st.caption(f"Copy threshold: {card.real.copy_rule}.")
    copies = card.copies()
    for copy in copies[:COPIES_SHOWN]:
        generated, twin = st.columns(2)
        generated.image(_gray(copy["generated_image"]), caption=f"{copy['file']} ({copy['group']})")
        twin.image(_gray(copy["training_image"]),
                   caption=f"training: {copy['training']} · NCC {copy['ncc']:.4f}")
    if len(copies) > COPIES_SHOWN:
        st.caption(f"{len(copies) - COPIES_SHOWN} more likely copies are in images.csv.")
    downloads = st.columns(3)
    downloads[0].download_button("report.md", card.markdown().encode(), file_name="report.md",
                                 mime="text/markdown", icon=":material/download:", on_click="ignore")
    downloads[1].download_button("report.json", json.dumps(card.as_json(), indent=2, allow_nan=False).encode(),
                                 file_name="report.json", mime="application/json", icon=":material/download:",
                                 on_click="ignore")
    downloads[2].download_button("images.csv", spreadsheet_safe(card.files).to_csv(index=False).encode(),
                                 file_name="images.csv", mime="text/csv", icon=":material/download:",
                                 on_click="ignore")


def show_report_card() -> None:
    """The finished batch's report card, behind a button (tens of seconds the first time: the copy
    threshold's calibration, then kept for the server)."""
    screening = st.session_state.get(Keys.BATCH_RESULT)
    items = st.session_state.get(Keys.BATCH_ITEMS)
    if screening is None or not items:
        return
    card = st.session_state.get(Keys.BATCH_REPORT)
    with st.expander("Generator report card", expanded=card is not None):
        st.caption("The batch as a set: how close it is to the real reference slices and how much of them it "
                   "covers (KID, FID, precision / recall), how diverse it is (MS-SSIM), whether it copies training "
                   "images (nearest training image by pixel correlation, against a threshold from real held-out "
                   "slices), and how often SAFEGEN flags it, per group of the folder's manifest.csv. "
                   "`python -m workflows.cli report FOLDER` writes the same report to files.")
        if st.button("Make the report card", key=Keys.BATCH_REPORT_RUN, type="secondary"):
            profile = st.session_state.get(Keys.BATCH_SCORED_PROFILE) or "mri_t1"
            try:
                card = make_card(items, screening.table, st.session_state.get(Keys.BATCH_MANIFEST), profile,
                                 screening.method)
            except (ValueError, FileNotFoundError) as error:
                st.error(f"No report card: {error}")
                return
            st.session_state[Keys.BATCH_REPORT] = card
        if card is not None:
            show_card(card)
