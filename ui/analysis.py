"""Scoring in the dashboard: the models load once per server process, and a scan is scored once.

Moving a slider, the tolerance or the colour map re-renders from the stored :class:`ScanResult`;
only a new scan runs the models. Demo scans' results are shared by every session (they are the
same files); an upload's result stays in its own session.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import streamlit as st

from core.baselines.scorer import BaselineScorer
from core.calibration import smallest_p_value
from core.explain import Explainer, ExplainerName
from core.head_explain import load_explainer as head_explainer
from core.head_scoring import HeadScorer, load_detector, outward_order
from core.profiles import DEFAULT_PROFILE
from core.scoring import Scorer
from core.types import SAFEGEN_METHOD, ScanResult, Volume
from core.viewer_layers import nifti_bytes
from workflows.screening import reference_scores
from ui.jobs import BackgroundJob
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


def calibration_volumes(profile: str = DEFAULT_PROFILE.name) -> int:
    """How many clean calibration volumes a volume's p-value counts against (0: Bonferroni over its
    slices instead), read from the SAFEGEN detector of ``profile`` loaded now."""
    scorer = load_scorer(profile)
    if not isinstance(scorer, HeadScorer) or scorer.calibration.volume_scores is None:
        return 0
    return len(scorer.calibration.volume_scores)


def format_score(value: float) -> str:
    """A score or tolerance as a reader needs it: two decimals, or, just under 1 (the head's anomaly
    probabilities: a volume's threshold is 0.999997), enough to tell it from 1 and from its neighbours."""
    value = float(value)
    if 0.99 < value < 1.0:
        digits = min(8, int(np.ceil(-np.log10(1.0 - value))) + 2)
        return f"{value:.{digits}f}".rstrip("0")
    return f"{value:.2f}"


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
    if method == SAFEGEN_METHOD:  # not while an explainer of the same models runs (model_lock)
        with model_lock():
            result = scorer.score_volume(volume, progress=advance)
    else:
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


EXPLAIN_REFRESH_S = 1.0  # how often the progress of a background explainer redraws
EXPLAIN_CHUNK = 8  # slices a gradient explainer explains together in the background (KernelSHAP: one)


@st.cache_resource
def model_lock() -> threading.Lock:
    """One lock per server process around runs of the SAFEGEN models: the explainers bind state to the
    shared cached models (captum's layer hooks, the head explainer's context), so two sessions' runs
    take turns, slice by slice for a background explainer."""
    return threading.Lock()


@st.cache_resource
def measured_seconds_per_slice() -> dict[str, float]:
    """Explainer name -> seconds per slice its last finished background run took on this server (the
    explainer menu's time hint)."""
    return {}


@dataclass(eq=False)
class ExplainJob(BackgroundJob):
    """An explainer running on a volume in a background thread (:class:`ui.jobs.BackgroundJob`), slice by
    slice in ``order`` (:meth:`core.head_scoring.HeadScorer.explain_slices`); it stops between slices once
    cancelled, and the slices done keep their maps.

    The thread calls no Streamlit function: it only fills :attr:`maps` (under a lock) and, when every
    slice is done, :attr:`result`. The page reads them on each run.
    """

    key: tuple[str, str, str]
    explainer: str
    maps: dict[int, np.ndarray] = field(default_factory=dict)
    result: ScanResult | None = None  # the whole result, once every slice is explained
    drawn: int = -1  # how many slices were done when the page last drew the heatmaps
    _partial: tuple[int, ScanResult] | None = field(default=None, init=False, repr=False)

    @property
    def done(self) -> int:
        return len(self.maps)

    def _keep(self, item: tuple[int, np.ndarray]) -> None:
        index, heat = item
        self.maps[index] = heat

    def start(self, scorer: HeadScorer, volume: Volume, result: ScanResult, explainer, order: list[int]) -> None:
        """Explain the slices of ``order`` not done yet in a daemon thread (it dies with the server).
        Called from the script thread: it hands the thread the process-wide lock and timings."""
        todo = [k for k in order if k not in self.maps]
        chunk = 1 if self.explainer == ExplainerName.SHAP else EXPLAIN_CHUNK
        timings = measured_seconds_per_slice()

        def then(taken: int, started: float) -> None:  # every slice done: the whole result, and its time per slice
            if self.complete:
                self.result = scorer.explained_from(volume, result, self.snapshot(), self.explainer,
                                                    seconds=self.elapsed)
                if taken:
                    timings[self.explainer] = (time.perf_counter() - started) / taken

        slices = scorer.explain_slices(volume, result, explainer, todo, chunk=chunk)  # lazy: runs in the thread
        self._launch(f"explain-{self.explainer}", slices, model_lock(), then)

    def snapshot(self) -> dict[int, np.ndarray]:
        """The maps done so far (a copy: the thread may add one meanwhile)."""
        with self._lock:
            return dict(self.maps)

    def partial(self, scorer: HeadScorer, volume: Volume, result: ScanResult) -> ScanResult:
        """``result`` with the slices done so far explained (made again only when more are done)."""
        maps = self.snapshot()
        if self._partial is None or self._partial[0] != len(maps):
            self._partial = (len(maps), scorer.explained_from(volume, result, maps, self.explainer,
                                                              seconds=self.elapsed))
        self.drawn = len(maps)
        return self._partial[1]

    def status(self) -> str:
        """``KernelSHAP: 12 of 120 slices, about 54 s left``."""
        return f"{self.explainer}: {self.progress_text('slices')}"


def cancel_explain_job() -> None:
    """Stop this session's background explainer, if one runs (the reader chose another explainer or scan)."""
    job = st.session_state.pop(Keys.EXPLAIN_JOB, None)
    if job is not None:
        job.cancel()


@st.fragment(run_every=EXPLAIN_REFRESH_S)
def explain_progress(job: ExplainJob) -> None:
    """The running explainer's progress bar and Cancel button, redrawn every :data:`EXPLAIN_REFRESH_S`
    on their own; the whole page reruns when the shown slice is first done and when the job ends."""
    if job.finished or (job.drawn == 0 and job.maps):
        st.rerun()  # the page picks up the result or what a cancel kept, or draws the shown slice's map
    stopping = " (stopping after the slice being explained)" if job.cancelled else ""
    st.progress(job.fraction, text=job.status() + stopping)
    st.button("Cancel", key=Keys.EXPLAIN_CANCEL, on_click=job.cancel, disabled=job.cancelled,
              help="Stop after the slice being explained; the slices done keep this explainer's map.")
    st.caption(f"The page stays usable meanwhile: slices already explained show the {job.explainer} map, "
               "the others the residual map, starting from the slice on screen and going outward.")


def _shown_slice(result: ScanResult) -> int:
    """The display slice (0-based) on screen now, or the worst slice that a scan opens on."""
    shown = st.session_state.get(Keys.SLICE)
    index = int(shown) - 1 if shown is not None else result.worst_slice
    return min(max(index, 0), len(result.slice_scores) - 1)


def _background_explained(key: tuple[str, str, str], volume: Volume, result: ScanResult, explainer: str,
                          store: dict) -> ScanResult:
    """The explainer's result on a volume without locking the page (:class:`ExplainJob`): the whole
    result once done (stored as a blocking run would be), meanwhile ``result`` with the slices done."""
    scorer = load_scorer(result.profile)
    job = st.session_state.get(Keys.EXPLAIN_JOB)
    if job is not None and job.key != key:
        cancel_explain_job()  # one job per session: another scan or explainer was chosen
        job = None
    if job is None:
        order = outward_order(_shown_slice(result), np.flatnonzero(np.isfinite(result.slice_scores)))
        job = ExplainJob(key, explainer, total=len(order))
        job.start(scorer, volume, result, load_explainer(explainer, result.profile), order)
        st.session_state[Keys.EXPLAIN_JOB] = job
    if job.error is not None:
        del st.session_state[Keys.EXPLAIN_JOB]
        raise ValueError(f"the {explainer} explainer failed: {job.error}")
    if job.result is not None:
        del st.session_state[Keys.EXPLAIN_JOB]
        store[key] = job.result
        return job.result
    shown = job.partial(scorer, volume, result)
    if not job.finished:
        explain_progress(job)
    else:  # cancelled: keep what was done, offer the rest
        st.caption(f"{job.explainer} was stopped after {len(job.maps)} of {job.total} slices: those show its map, "
                   "the others the residual map.")
        if st.button(f"Explain the other {job.total - len(job.maps)} slices", key=Keys.EXPLAIN_RESUME):
            order = outward_order(_shown_slice(result), np.flatnonzero(np.isfinite(result.slice_scores)))
            resumed = ExplainJob(key, explainer, total=job.total, maps=job.snapshot(), elapsed=job.elapsed)
            resumed.start(scorer, volume, result, load_explainer(explainer, result.profile), order)
            st.session_state[Keys.EXPLAIN_JOB] = resumed
            st.rerun()
    return shown


def explained_result(scan_key: str, volume: Volume, result: ScanResult, explainer: str, *,
                     shared: bool) -> ScanResult:
    """``result`` with the heatmap and mask of ``explainer``; only the explainer runs, once per scan.
    A baseline's result keeps its own map (explainers explain SAFEGEN's score).

    On a volume scored by the segmentation head the explainer runs in the background, the slice on
    screen first (:class:`ExplainJob`): until it is done this returns ``result`` with the slices done
    so far (its ``explained_slices``) and shows a progress bar with a Cancel button. Elsewhere (a 2-D
    image, the seed's reconstruction scorer) it runs now, behind a progress bar.
    """
    if explainer == ExplainerName.RESIDUAL or result.method != SAFEGEN_METHOD:
        cancel_explain_job()
        return result
    store = _shared_explained() if shared else st.session_state.setdefault(Keys.EXPLAINED, {})
    key = (scan_key, explainer, result.profile)
    if key in store:
        cancel_explain_job()
        return store[key]
    if not shared:
        for old in [k for k in store if k[0] != scan_key]:  # one upload at a time per session
            del store[old]
    scorer = load_scorer(result.profile)
    if isinstance(scorer, HeadScorer) and volume.is_3d:
        return _background_explained(key, volume, result, explainer, store)
    cancel_explain_job()
    total = int(np.isfinite(result.slice_scores).sum())
    bar, advance = progress_bar(total, f"Explaining {total} slice(s) with {explainer} ...", explainer)
    with model_lock():
        explained = scorer.explain(volume, result, load_explainer(explainer, result.profile), progress=advance)
    bar.empty()
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
    return nifti_bytes(result.mask_at(tau).astype(np.uint8), volume.affine)
