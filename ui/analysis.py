"""Scoring in the dashboard: the models load once per server process, and a scan is scored once.

Moving a slider, the tolerance or the colour map re-renders from the stored :class:`ScanResult`;
only a new scan runs the models. Demo scans' results are shared by every session (they are the
same files); an upload's result stays in its own session.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import streamlit as st

from core.baselines.scorer import BaselineScorer
from core.calibration import smallest_p_value
from core.explain import Explainer, ExplainerName
from core.head_explain import load_explainer as head_explainer
from core.profiles import DEFAULT_PROFILE
from core.head_scoring import HeadScorer, load_detector
from core.scoring import Scorer
from core.screening import reference_scores
from core.types import SAFEGEN_METHOD, ScanResult, Volume
from ui.resources import data_dirs
from ui.state import Keys


@st.cache_resource(show_spinner="Loading the SAFEGEN models ...")
def load_scorer(profile: str = DEFAULT_PROFILE.name) -> Scorer | HeadScorer:
    """A profile's committed SAFEGEN scorer (:func:`core.head_scoring.load_detector`: the segmentation
    head where the profile has one), once per server process. Raises FileNotFoundError naming the
    command that makes a missing file."""
    return load_detector(profile=profile)


def calibration_slices(method: str = SAFEGEN_METHOD, profile: str = DEFAULT_PROFILE.name) -> int:
    """How many real clean calibration slices the p-values of ``method`` count against (SAFEGEN: the
    detector of ``profile``), read from the calibration loaded now."""
    return len(reference_scores(load_scorer(profile) if method == SAFEGEN_METHOD else load_baseline(method)))


def format_p(p: float) -> str:
    """A p-value as a reader expects it: three decimals, or "< 0.001"."""
    return f"{p:.3f}" if p >= 0.001 else "< 0.001"


def p_floor_sentence(n: int) -> str:
    """Why many flagged scans share one p-value: the smallest p ``n`` calibration slices can give."""
    return (f"p = {smallest_p_value(n):.2g} is the smallest p {n} calibration slices can give, 1/({n} + 1): a "
            "score above all of them gets it, however far above")


def progress_bar(total: int, first_text: str, label: str, unit: str = "slices"):
    """A progress bar and its ``advance(n_done)`` callback (the ``progress`` argument of core and db calls)."""
    bar = st.progress(0.0, text=first_text)
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        bar.progress(min(1.0, done / max(total, 1)), text=f"{label}: {done} of {total} {unit}")

    return bar, advance


@st.cache_resource(show_spinner="Loading the seed's reconstruction models ...")
def load_seed_scorer(profile: str = DEFAULT_PROFILE.name) -> Scorer:
    """A profile's seed scorer (S_diffusion, E_AE, their alpha-combination), once per server process:
    the head's inputs where it has reconstruction inputs, else loaded on its own (the Evaluation
    page's quick re-run measures the seed)."""
    scorer = load_scorer(profile)
    if isinstance(scorer, Scorer):
        return scorer
    return scorer.seed if scorer.seed is not None else Scorer.from_folder(profile=profile)


@st.cache_resource
def _shared_results() -> dict[tuple[str, str, str], ScanResult]:
    return {}


@st.cache_resource(show_spinner=False)
def _fitted_baseline(name: str, reference_dir: str) -> BaselineScorer:
    with st.spinner(f"Fitting the {name} baseline on the real reference slices (once per server) ..."):
        return BaselineScorer.fit(name, Path(reference_dir))


def load_baseline(name: str) -> BaselineScorer:
    """A baseline fitted on the reference slices once per server process (1-15 s; builds them if missing)."""
    return _fitted_baseline(name, str(data_dirs()[0]))


def scan_result(scan_key: str, volume: Volume, *, shared: bool, method: str = SAFEGEN_METHOD,
                profile: str = DEFAULT_PROFILE.name) -> ScanResult:
    """The scan's result, scored now (with a progress bar) unless it was scored before.

    Args:
        scan_key: identifies the scan (``demo:<case>`` or ``upload:<file id>``).
        volume: the loaded scan.
        shared: keep the result for every session (demo scans) or only this one (uploads).
        method: ``safegen`` or a baseline of :func:`core.baselines.factories`.
        profile: whose models score it (SAFEGEN only; the baselines are fitted on brain MRI T1).
    """
    store = _shared_results() if shared else st.session_state.setdefault(Keys.RESULTS, {})
    key = (scan_key, method, profile if method == SAFEGEN_METHOD else "")
    if key in store:
        return store[key]
    scorer = load_scorer(profile) if method == SAFEGEN_METHOD else load_baseline(method)
    total = int(scorer.slices_to_score(volume).sum())
    what = "both models" if method == SAFEGEN_METHOD else f"the {method} baseline"
    bar, advance = progress_bar(total, f"Scoring {total} slice(s) with {what} ...", "Scoring")
    result = scorer.score_volume(volume, progress=advance)
    bar.empty()
    if not shared:  # one upload at a time per session (volumes can be large); its methods may stay
        for old in [k for k in store if k[0] != scan_key]:
            del store[old]
    store[key] = result
    return result


@st.cache_resource(show_spinner=False)
def load_explainer(name: str, profile: str = DEFAULT_PROFILE.name) -> Explainer:
    """An explainer of a profile's committed scorer with its committed calibration (the head's own
    explainers where the profile has a head)."""
    return head_explainer(load_scorer(profile), name)


@st.cache_resource
def _shared_explained() -> dict[tuple[str, str, str], ScanResult]:
    return {}


def explained_result(scan_key: str, volume: Volume, result: ScanResult, explainer: str, *,
                     shared: bool) -> ScanResult:
    """``result`` with the heatmap and mask of ``explainer``; only the explainer runs, once per scan.
    A baseline's result keeps its own map (explainers explain SAFEGEN's score)."""
    if explainer == ExplainerName.RESIDUAL or result.method != SAFEGEN_METHOD:
        return result
    store = _shared_explained() if shared else st.session_state.setdefault(Keys.EXPLAINED, {})
    key = (scan_key, explainer, result.profile)
    if key in store:
        return store[key]
    total = int(np.isfinite(result.slice_scores).sum())
    bar, advance = progress_bar(total, f"Explaining {total} slice(s) with {explainer} ...", explainer)
    explained = load_scorer(result.profile).explain(volume, result, load_explainer(explainer, result.profile),
                                                    progress=advance)
    bar.empty()
    if not shared:
        store.clear()
    store[key] = explained
    return explained


def heatmap_range(result: ScanResult) -> tuple[float, float]:
    """Colour-map limits for a scan: from 0 z to its hottest pixel (at least tau + 1); the head's
    probabilities from 0 to 1."""
    if getattr(result, "head", False):
        return 0.0, 1.0
    top = float(np.nanmax(result.heatmap)) if result.heatmap.size else result.tau + 1.0  # no copy: it runs per rerun
    return 0.0, max(top if np.isfinite(top) else result.tau + 1.0, result.tau + 1.0)


def mask_nifti_bytes(result: ScanResult, volume: Volume, tau: float) -> bytes:
    """The unsafe-region mask at ``tau`` as a gzipped NIfTI (uint8) on the scan's voxel grid and affine."""
    image = nib.Nifti1Image(result.mask_at(tau), volume.affine)
    image.set_data_dtype(np.uint8)
    return gzip.compress(image.to_bytes(), mtime=0)
