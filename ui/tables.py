"""Readable tables: one mapping from the machine column names the reports and CSVs use to the labels,
units and help a reader sees, applied through ``st.column_config`` (the data, and every CSV download,
keep the machine names)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd
import streamlit as st


@dataclass(frozen=True)
class Column:
    """How a machine column shows: its label (with the unit), a help tooltip, a number format
    (``st.column_config.NumberColumn``'s: ``"%.3f"``, ``"percent"`` for a share 0-1) and a width."""

    label: str
    help: str = ""
    format: str | None = None
    width: str | None = None  # "small", "medium" or "large"; None: sized to the content


AUROC_HELP = "Chance that a corrupted image scores above a clean one (0.5: chance, 1: perfect)."
SCORE = "%.2f"
RATE = "%.3f"
SHARE = "percent"

COLUMN_LABELS: dict[str, Column] = {
    # Batch screening (workflows.screening.COLUMNS, core.benchmark.generated_set.group_summary)
    "file": Column("File"),
    "group": Column("Group", "The image's group in the folder's manifest.csv (a generator and its sampler "
                             "settings, or real control slices)."),
    "score": Column("Score", "The worst slice's score; higher = more likely unsafe. The segmentation head: an "
                             "anomaly probability (0-1); the seed score and the baselines: calibrated z units.", SCORE),
    "flag": Column("Flagged", "The score is above τ, set to flag 5 % of real clean calibration slices."),
    "p_value": Column("p-value", "The p-value of the test this table reports.", RATE),
    "score_diffusion": Column("S_diffusion (z)", "The diffusion model's reconstruction score on the worst slice, "
                                                 "calibrated z units (the seed score's component).", SCORE),
    "score_autoencoder": Column("E_AE (z)", "The autoencoder's reconstruction error on the worst slice, calibrated "
                                            "z units (the seed score's component).", SCORE),
    "worst_slice": Column("Worst slice", "Number of the highest-scoring slice, from 1 as on Scan review."),
    "slices": Column("Slices", "Slices in the file."),
    "seconds": Column("Time (s)", "Seconds to load and score the file.", "%.1f"),
    "warnings": Column("Warnings", width="medium"),
    "out_of_domain": Column("Out of domain", "The file is not what the models were made for (modality, body part, "
                                             "field of view, or it does not look like their training slices): "
                                             "its score says little. Warnings say why."),
    "error": Column("Error", "Why the file could not be scored.", width="medium"),
    "images": Column("Images"),
    "median score": Column("Median score", format=SCORE),
    "max score": Column("Max score", format=SCORE),
    "flagged": Column("Flagged", "Images above τ."),
    "flagged share": Column("Flagged share", "Share of the group's images above τ.", SHARE),
    # About: data sources, model card, versions (ui.about)
    "use": Column("Use", width="medium"),
    "name": Column("Name"),
    "description": Column("Description", width="large"),
    "installed by": Column("Installed by", width="medium"),
    "present": Column("On this machine"),
    "model": Column("Model file"),
    "network": Column("Network", width="medium"),
    "trained with": Column("Trained with", "The command, its seed and its number of optimiser steps.", width="medium"),
    "training images": Column("Training images", width="medium"),
    "final val loss": Column("Final validation loss", "Mean loss on held-out real slices after the last step.",
                             "%.4f"),
    "synthetic validation (kept step)": Column("Validation (kept step)", "The head on synthetic artifacts at the "
                                               "training step that was kept.", width="medium"),
    "CPU minutes": Column("CPU time (min)", format="%.1f"),
    "size (MB)": Column("Size (MB)", format="%.2f"),
    "package": Column("Package"),
    "version": Column("Version"),
    # Evaluation: the realistic benchmark (core.benchmark.head_evaluation), the seed's (core.benchmark.evaluation), explainers, baselines
    "method": Column("Method", "head: the segmentation head, the dashboard's detector; the others: its image-level "
                               "variants, the seed's reconstruction score and the baselines."),
    "source": Column("Subjects", "seen: test slices of the training subjects; unseen: the held-out subject."),
    "variant": Column("Score", "The seed's reconstruction scores: S_diffusion, E_AE and their α-combination."),
    "explainer": Column("Explainer"),
    "title": Column("Title", width="medium"),
    "n_clean": Column("Clean images"),
    "n_artifact": Column("Artifact images"),
    "n_images": Column("Images", "Benchmark images the method scored."),
    "image_auroc": Column("Image AUROC", AUROC_HELP, RATE),
    "auroc": Column("Image AUROC", AUROC_HELP, RATE),
    "image_auprc": Column("Image AUPRC", "Area under the precision-recall curve of the image scores.", RATE),
    "auprc": Column("Image AUPRC", "Area under the precision-recall curve of the image scores.", RATE),
    "f1": Column("F1 at τ", "F1 of the flags at the calibrated τ.", RATE),
    "f1_at_tau": Column("F1 at τ", "F1 of the flags at the calibrated τ.", RATE),
    "f1_best": Column("Best F1", "F1 at the best threshold for this benchmark (an upper bound, not a setting).",
                      RATE),
    "recall_at_tau": Column("Recall at τ", "Share of artifact images flagged at τ.", SHARE),
    "false_alarm": Column("Clean flagged", "Share of clean images flagged at the calibrated τ (configured: 5 %).",
                          SHARE),
    "false_alarm_ci_low": Column("Clean flagged, CI low", "Lower end of the 95 % confidence interval.", SHARE),
    "false_alarm_ci_high": Column("Clean flagged, CI high", "Upper end of the 95 % confidence interval.", SHARE),
    "false_alarms_benchmark_clean": Column("Clean flagged (benchmark)", "Share of the benchmark's clean images "
                                           "flagged at τ (configured: 5 %).", SHARE),
    "false_alarms_test_clean": Column("Clean flagged (test)", "Share of clean real test slices, never used for "
                                      "calibration, flagged at τ (configured: 5 %).", SHARE),
    "dice": Column("Dice", "Overlap of two masks: 0 none, 1 identical.", RATE),
    "dice_at_tau": Column("Dice at τ", "Overlap of the mask at τ with the exact artifact mask (0-1).", RATE),
    "dice_flagged": Column("Dice, flagged images", "Dice at τ on the images flagged at τ.", RATE),
    "iou": Column("IoU at τ", "Intersection over union of the mask at τ and the artifact mask (0-1).", RATE),
    "iou_at_tau": Column("IoU at τ", "Intersection over union of the mask at τ and the artifact mask (0-1).", RATE),
    "pixel_auroc": Column("Pixel AUROC", "Chance that an artifact pixel scores above a clean pixel.", RATE),
    "aupro": Column("AUPRO", "Area under the per-region overlap curve up to a 30 % pixel false-positive rate: a "
                             "small artifact found completely counts as much as a large one.", RATE),
    "pointing_game": Column("Pointing game", "Share of artifact images whose hottest pixel lies in the artifact.",
                            SHARE),
    "clean_pixels_above_tau": Column("Clean pixels above τ", "Share of the clean slices' tissue pixels above τ.",
                                     SHARE),
    "tau": Column("τ (z)", "The calibrated threshold, in z units.", SCORE),
    "seconds_per_image": Column("Time per image (s)", format="%.2f"),
    "ms_per_slice": Column("Time per slice (ms)", format="%.1f"),
    "fit_seconds": Column("Fit time (s)", format="%.1f"),
    # Study results (core.study_stats, core.mrmc, workflows.studies)
    "question": Column("Question"),
    "text": Column("Question text", width="medium"),
    "answers": Column("Answers"),
    "mean": Column("Mean", format=SCORE),
    "median": Column("Median", format=SCORE),
    "q25": Column("25th percentile", "The lower quartile of the answers.", SCORE),
    "q75": Column("75th percentile", "The upper quartile of the answers.", SCORE),
    "reader": Column("Reader"),
    "reader_a": Column("Reader A"),
    "reader_b": Column("Reader B"),
    "arm": Column("Arm", "ai: readers saw SAFEGEN's heatmap; unaided: they did not; all: both arms together."),
    "treatment": Column("Arm"),
    "case_id": Column("Case"),
    "cases": Column("Cases"),
    "done": Column("Cases done"),
    "readers": Column("Readers"),
    "readings": Column("Readings"),
    "accuracy": Column("Accuracy", "Share of images called correctly (real or synthetic).", SHARE),
    "sensitivity": Column("Sensitivity", "Share of synthetic images called synthetic.", SHARE),
    "specificity": Column("Specificity", "Share of real images called real.", SHARE),
    "auc": Column("AUC", "Empirical (trapezoidal) area under the reader's ROC curve.", RATE),
    "positives": Column("Artifact cases"),
    "negatives": Column("Clean cases"),
    "item": Column("Item", width="medium"),
    "share": Column("Share", "Share of the readings that ticked the item.", SHARE),
    "median_seconds": Column("Median time (s)", format="%.1f"),
    "total_seconds": Column("Total time (s)", format="%.1f"),
    "kappa_quadratic": Column("Cohen's κ (quadratic)", "Weighted kappa, mean over the pairs of readers: 1 perfect "
                              "agreement, 0 chance.", RATE),
    "krippendorff_alpha_ordinal": Column("Krippendorff's α (ordinal)", "Agreement of all readers, missing answers "
                                         "allowed: 1 perfect, 0 chance.", RATE),
    "icc_2_1": Column("ICC(2,1)", "Intraclass correlation (two-way random, single reader, absolute agreement) on "
                                  "the cases every reader rated.", RATE),
    "cases_rated_by_all": Column("Cases rated by all"),
    "artifact_cases": Column("Artifact cases"),
    "mean_dice": Column("Mean Dice", "Mean Dice with the ground-truth mask on cases with an artifact.", RATE),
    "hit_rate": Column("Hit rate", "Share of artifact cases where the reader's mask touches the artifact.", SHARE),
    "clean_cases": Column("Clean cases"),
    "false_mark_rate": Column("False-mark rate", "Share of clean cases the reader marked.", SHARE),
    "component": Column("Component"),
    "estimate": Column("Estimate", format="%.4f"),
    "correlation": Column("Correlation", format=RATE),
    "analysis": Column("Analysis", "RRRC: random readers and cases; FRRC: fixed readers, random cases."),
    "statistic_name": Column("Statistic"),
    "statistic": Column("Value", format=RATE),
    "df1": Column("df (numerator)", format="%.1f"),
    "df2": Column("df (denominator)", format="%.1f"),
    "df": Column("df", "Degrees of freedom.", "%.1f"),
    "error_term": Column("Error term"),
    "comparison": Column("Comparison"),
    "stderr": Column("Standard error", format="%.4f"),
    "ci_low": Column("95 % CI low", format=RATE),
    "ci_high": Column("95 % CI high", format=RATE),
}

_PATTERNS = (  # columns named after a level or a question
    (re.compile(r"n_(\d+)"), lambda level: Column(f"n({level})", f"Answers at level {level} (a yes/no question: "
                                                                   "1 = yes, 0 = no).")),
    (re.compile(r"mean_(\w+)"), lambda question: Column(f"Mean {question}", f"Mean answer to {question}.", SCORE)),
)


def column_of(name: str) -> Column | None:
    """The display of the machine column ``name``, or None for a name the mapping does not know."""
    if name in COLUMN_LABELS:
        return COLUMN_LABELS[name]
    for pattern, make in _PATTERNS:
        if found := pattern.fullmatch(str(name)):
            return make(found[1])
    return None


def column_config(frame: pd.DataFrame, overrides: dict[str, Column] | None = None, *,
                  hide_empty: bool = False) -> dict:
    """``st.dataframe``'s ``column_config`` for ``frame``: each known column (and a named index) with its
    label, help, number format and width; ``hide_empty`` hides a column with no value at all (the reader
    may show it again from the table's toolbar)."""
    overrides = overrides or {}
    config = {}
    for name in frame.columns:
        if hide_empty and _empty(frame[name]):
            config[name] = None
            continue
        if (column := overrides.get(name) or column_of(name)) is not None:
            config[name] = _config(column, frame[name])
    for position, name in enumerate(frame.index.names):  # an index column is named by its position, from 0
        if name is not None and (column := overrides.get(name) or column_of(name)) is not None:
            config[position] = _config(column, frame.index.get_level_values(position))
    return config


def show_table(frame: pd.DataFrame, *, key: str | None = None, hide_index: bool | None = None,
               overrides: dict[str, Column] | None = None, hide_empty: bool = False) -> None:
    """``frame`` as an ``st.dataframe`` the width of the page, its columns labelled by :data:`COLUMN_LABELS`."""
    st.dataframe(frame, width="stretch", hide_index=hide_index, key=key,
                 column_config=column_config(frame, overrides, hide_empty=hide_empty))


def _config(column: Column, values: pd.Series | pd.Index):
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return st.column_config.NumberColumn(column.label, help=column.help or None, format=column.format,
                                             width=column.width)
    return st.column_config.Column(column.label, help=column.help or None, width=column.width)


def _empty(values: pd.Series) -> bool:
    return bool(values.isna().all() or (values.astype(str).str.strip() == "").all())
