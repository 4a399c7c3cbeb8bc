"""The Evaluation page's pieces: read an evaluation folder, plot it, and re-run a quick one.

Everything plotted comes from the files ``python -m workflows.cli evaluate`` writes (see
:func:`core.benchmark.evaluation.run_evaluation`); the page never recomputes a figure the report holds.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.benchmark.evaluation import clean_test_slices, ensure_benchmark, load_benchmark, load_evaluation, run_evaluation
from core.benchmark.head_evaluation import load_report
from core.explain import Explainer
from core.metrics import image_auroc, roc_curve_points
from core.resources import PROJECT_ROOT
from core.types import SAFEGEN_METHOD
from ui.analysis import load_seed_scorer, progress_bar
from ui.resources import data_dirs
from ui.state import Keys

VARIANT_LABELS = {
    "combined": "Combined score (default α)",
    "autoencoder": "Autoencoder E_AE",
    "diffusion": "Diffusion, reconstruction",
    "diffusion_nll": "Diffusion, bound (NLL)",
}
QUICK_EXPLAINERS = ("residual", "saliency", "gradcam")  # SHAP takes about 0.5 s a slice: the full run has it


@dataclass(frozen=True)
class RunKind:
    """A kind of evaluation report the page reads: how to load it, where it is written, which files stamp it."""

    load: Callable[[Path], dict | None]
    env_var: str  # overrides the folder (tests)
    folder: str  # under out/
    stamps: tuple[str, ...]  # the cache is refreshed when one of these changes


REALISTIC = RunKind(load_report, "SAFEGEN_REALISTIC_DIR", "evaluation_realistic", ("overall.csv",))  # evaluate-realistic
SEED = RunKind(load_evaluation, "SAFEGEN_EVALUATION_DIR", "evaluation", ("summary.csv", "methods.csv"))  # evaluate


def run_dir(kind: RunKind) -> Path:
    """Where ``make evaluate`` writes a report of ``kind`` (its environment variable overrides)."""
    return Path(os.environ.get(kind.env_var, PROJECT_ROOT / "out" / kind.folder))


@st.cache_data(show_spinner=False)
def _load(_kind: RunKind, name: str, folder: str, stamp: float) -> dict | None:  # keyed by the kind's name
    return _kind.load(Path(folder))


def load_run(kind: RunKind, folder: Path) -> dict | None:
    """The report of ``kind`` in ``folder``, cached until one of its stamp files changes."""
    stamp = sum(p.stat().st_mtime for p in (Path(folder) / name for name in kind.stamps) if p.is_file())
    return _load(kind, kind.folder, str(folder), stamp)


def readme_figure(command: str, readme: Path = PROJECT_ROOT / "README.md") -> str:
    """How long ``command`` took, as the README's Figures table measured it (its "measured" cell up to the
    first ";"), so the page quotes the measured time rather than a guess; "see the README's Figures"
    when no row names the command."""
    try:
        lines = readme.read_text(encoding="utf-8").splitlines()
    except OSError:
        lines = []
    for line in lines:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and f"`{command}`" in cells[1]:
            return "measured: " + cells[2].split(";")[0].strip()
    return "see the README's Figures"


def realistic_headline(tables: dict) -> None:
    """The head's own row: detection, localisation and false alarms on clean images."""
    overall = tables["overall"].set_index("method")
    head = overall.loc["head"]
    cols = st.columns(4)
    cols[0].metric("Image AUROC", f"{head['image_auroc']:.3f}", help="Chance that a corrupted image scores above a clean one.")
    cols[1].metric("Dice at τ", f"{head['dice_at_tau']:.3f}", help="The mask at the calibrated τ against the exact artifact mask.")
    cols[2].metric("Pixel AUROC", f"{head['pixel_auroc']:.3f}")
    cols[3].metric("Clean images flagged", f"{head['false_alarm']:.1%}",
                   help=f"Configured: 5 %. 95 % CI {head['false_alarm_ci_low']:.1%}-{head['false_alarm_ci_high']:.1%}.")


def by_group_bars(frame: pd.DataFrame, group: str, title: str) -> go.Figure:
    """Image AUROC per ``group`` value (artifact kind or severity), one bar per method."""
    wide = frame.pivot(index=group, columns="method", values="image_auroc")
    return grouped_bars(wide, "image AUROC", title)


def unseen_volume_line(volumes: pd.DataFrame) -> str:
    flagged = int(volumes["flag"].astype(str).isin(["True", "1"]).sum())
    return (f"Clean volumes of the held-out subject flagged: {flagged} of {len(volumes)} "
            f"(configured rate 5 %; median {volumes['seconds'].astype(float).median():.1f} s a volume).")


def quick_rerun() -> None:
    """Score a small balanced subset of the test benchmark now (about a minute) into a session folder.

    It re-runs the seed's reconstruction score (S_diffusion, E_AE and their alpha-combination on the
    128 grid) and its explainers: the segmentation head's figures come from ``evaluate-realistic``."""
    scorer = load_seed_scorer()
    reference_dir, benchmark_dir = data_dirs()
    with st.spinner("Preparing the benchmark (first time only) ..."):
        ensure_benchmark(reference_dir, benchmark_dir)
    bench = load_benchmark(benchmark_dir, small=True)
    clean = clean_test_slices(reference_dir)
    explainers = [Explainer.load(scorer, name) for name in QUICK_EXPLAINERS]
    total = len(bench["images"]) + len(clean) + len(explainers) * (int(bench["labels"].sum()) + len(clean))
    bar, advance = progress_bar(total, f"Evaluating {len(bench['images'])} benchmark slices ...", "Evaluating",
                                "slice passes")

    # The folder lives as long as the session holds it: a later re-run or the session's end removes it.
    folder = tempfile.TemporaryDirectory(prefix="safegen-eval-")
    st.session_state[Keys.EVAL_QUICK_FOLDER] = folder
    out_dir = Path(folder.name)
    run_evaluation(scorer, bench, clean, out_dir, explainers=explainers, progress=advance,
                   context={"command": "quick re-run from the dashboard (one artifact image per kind and severity)"})
    bar.empty()
    st.session_state[Keys.EVAL_QUICK_DIR] = str(out_dir)
    st.session_state[Keys.EVAL_SOURCE] = QUICK


FULL, QUICK = "Full run (make evaluate)", "Quick re-run (this session)"


def choose_run() -> tuple[str, dict | None]:
    """Sidebar: which evaluation to show, and the re-run button. Returns (label, tables)."""
    quick_dir = st.session_state.get(Keys.EVAL_QUICK_DIR)
    with st.sidebar:
        options = [FULL] + ([QUICK] if quick_dir else [])
        source = st.radio("Results", options, key=Keys.EVAL_SOURCE) if len(options) > 1 else FULL
        if st.button("Re-run on a small set", key=Keys.EVAL_RERUN, icon=":material/replay:",
                     help="27 artifact images (one per kind and severity), 27 clean ones and 36 clean real "
                          "slices, with the residual, saliency and Grad-CAM explainers: about a minute."):
            quick_rerun()
            st.rerun()
    folder = Path(quick_dir) if source == QUICK else run_dir(SEED)
    return source, load_run(SEED, folder)


def headline(tables: dict) -> None:
    summary, context = tables["summary"], tables["context"]
    combined = summary.loc["combined"]
    cols = st.columns(4)
    cols[0].metric("Image AUROC (combined)", f"{combined['auroc']:.3f}",
                   help="Chance that a corrupted slice scores above a clean one.")
    cols[1].metric("Dice at τ (combined)", f"{combined['dice']:.3f}", help="Mask at τ against the true artifact mask.")
    cols[2].metric("Pixel AUROC (combined)", f"{combined['pixel_auroc']:.3f}")
    if "false_alarms_test_clean" in summary.columns:
        cols[3].metric("Clean real slices flagged", f"{combined['false_alarms_test_clean']:.1%}",
                       help="Configured false-alarm rate: 5 %.")
    st.caption(" · ".join(f"{k}: {v}" for k, v in context.items() if k in ("benchmark", "alpha", "date", "command")))


def roc_figure(scores: pd.DataFrame) -> go.Figure:
    """ROC curve per variant from the per-image scores (``scores.csv``)."""
    figure = go.Figure()
    labels = scores["label"].to_numpy()
    for variant, name in VARIANT_LABELS.items():
        column = f"score_{variant}"
        if column not in scores.columns:
            continue
        fpr, tpr, _ = roc_curve_points(labels, scores[column].to_numpy())
        auc = image_auroc(labels, scores[column].to_numpy())
        figure.add_trace(go.Scatter(x=fpr.tolist(), y=tpr.tolist(), mode="lines", name=f"{name} (AUROC {auc:.3f})"))
    figure.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance",
                                line={"dash": "dot", "color": "gray"}))
    figure.update_layout(title="ROC: corrupted vs clean slices", xaxis_title="false-positive rate",
                         yaxis_title="true-positive rate", height=420, margin={"t": 50}, legend={"y": 0.02, "x": 0.98, "xanchor": "right", "yanchor": "bottom"})
    return figure


def grouped_bars(frame: pd.DataFrame, y_title: str, title: str = "") -> go.Figure:
    """One bar group per row (artifact kind), one bar per column (variant or explainer)."""
    figure = go.Figure([go.Bar(name=str(c), x=[str(i) for i in frame.index], y=frame[c].round(3).tolist())
                        for c in frame.columns])
    figure.update_layout(title=title, barmode="group", yaxis_title=y_title, height=420, margin={"t": 50})
    return figure


def deletion_figure(deletion: pd.DataFrame) -> go.Figure:
    figure = go.Figure()
    for name in deletion.columns:
        line = {"dash": "dash", "color": "gray"} if name == "random" else {}
        figure.add_trace(go.Scatter(x=(deletion.index * 100).tolist(), y=deletion[name].round(3).tolist(),
                                    mode="lines+markers", name=name, line=line))
    figure.update_layout(title="Faithfulness: score drop when a map's top pixels are in-painted",
                         xaxis_title="pixels in-painted (% of tissue)", yaxis_title="score drop (z)", height=420,
                         margin={"t": 50})
    return figure


def calibration_figure(false_alarms: pd.DataFrame, tau: float, rate: float = 0.05) -> go.Figure:
    """False-alarm rate on clean slices (and recall on artifacts) as τ moves; the default τ marked."""
    taus = false_alarms.index.to_numpy().tolist()
    figure = go.Figure()
    for column, name in (("false_alarms_calib", "clean calibration slices (τ fitted here)"),
                         ("false_alarms_test_clean", "clean real test slices (never seen)"),
                         ("recall_artifacts", "artifact slices flagged (recall)")):
        figure.add_trace(go.Scatter(x=taus, y=false_alarms[column].tolist(), mode="lines", name=name))
    figure.add_vline(x=tau, line={"dash": "dash"}, annotation_text=f"default τ = {tau:.2f}")
    figure.add_hline(y=rate, line={"dash": "dot", "color": "gray"}, annotation_text=f"{rate:.0%}")
    figure.update_layout(title="Share of slices flagged as τ moves", xaxis_title="τ (z units)",
                         yaxis_title="share of slices above τ", height=420, margin={"t": 50})
    return figure


def where_safegen_loses(per_kind: pd.DataFrame, margin: float = 0.05) -> list[str]:
    """One line per artifact kind where a baseline's image AUROC beats SAFEGEN's by more than ``margin``."""
    lines = []
    for kind, row in per_kind.iterrows():
        others = row.drop(labels=[c for c in row.index if c.startswith(SAFEGEN_METHOD)])
        best = others.idxmax()
        if others[best] > row[SAFEGEN_METHOD] + margin:
            lines.append(f"**{kind}**: {best} {others[best]:.2f} vs SAFEGEN {row[SAFEGEN_METHOD]:.2f}")
    return lines
