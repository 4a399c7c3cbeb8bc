"""The scan-review widgets around a scored scan: verdict, heatmap controls, per-slice plot, panels.

Everything here renders from a stored :class:`ScanResult`; nothing runs a model.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from scipy import ndimage

from core.baselines import factories
from core.explain import DEFAULT_EXPLAINER
from core.head_explain import HEAD_EXPLAINERS
from core.masks import summarise_mask, unsafe_mask
from core.profiles import all_profiles, auto_profile, get_profile
from core.render import HEATMAP_COLORMAPS, overlay_heatmap
from core.summary import summary_page
from core.types import OUT_OF_DOMAIN, PIXEL_MM_RANGE, SAFEGEN_METHOD, UNLIKE_TRAINING, ScanResult, Volume, Window
from core.viewer_layers import heatmap_layer, outline_layer
from core.calibration import smallest_p_value
from ui.analysis import (calibration_slices, calibration_volumes, format_p, format_score, heatmap_range, mask_nifti_bytes,
                         measured_seconds_per_slice, p_floor_sentence)
from ui.state import Keys
from ui.viewer import OUTLINE_COLORMAP, kept

TAU_MAX = 20.0  # z units; above this every model map here is far outside normal variation
HEAD_TAU_STEP = 0.0001  # the head's tau is a probability in [0, 1]; a volume's sits near 1 (0.9946)


def tau_unit(result: ScanResult) -> str:
    """What tau and the heatmap are measured in, for labels."""
    return "anomaly probability" if result.head else "z units"

MODEL_SCOPE = {
    "mri_t1": (
        "The segmentation head learned from corrupted real slices of **two real brains** (MNI152 and Colin27, "
        "with and without skull) under simulated normal variation. On a realistic benchmark it ranks a "
        "corrupted slice above a clean one 76 % of the time (image AUROC 0.76, also on a held-out real "
        "scan) and flags 6 % of clean slices at the configured 5 % (9 % on the held-out scan); blur, "
        "checkerboards and dropouts are found and outlined (Dice 0.56-0.87), lesions, duplication and ghosting "
        "are missed (about chance), and its masks at τ overlap the truth little overall (Dice 0.32). On whole "
        "volumes from a new scanner the verdict has no power: it flagged all 12 clean volumes of the held-out "
        "scan; read the slice scores and maps there. It learned mostly 1 mm pixels: on images at 1.5-2 mm "
        "pixels it ranks worse (AUROC 0.69), and when such a coarse size is stated (a NIfTI) it flags a third "
        "of clean images (README, The detector). "
        "Treat the score as research output, not a verdict."
    ),
    "ct_head": (
        "The head-CT detectors were trained on **one real head CT** (the InVesalius sample scan) in the "
        "brain window (0-80 HU), with augmentation; bone and air are saturated, so artifacts confined "
        "to them cannot be seen. A first CT profile: its benchmark figures are in the README "
        "(Profiles). Treat the score as research output, not a verdict."
    ),
}


def unsafe_extent(result: ScanResult, tau: float) -> str:
    """" Unsafe volume X ml in N region(s)." for a volume with pixel maps (the mask at ``tau`` times the
    voxel volume; regions connected in 3-D), else ""."""
    if result.heatmap.ndim != 3 or not result.pixel_maps:
        return ""
    totals = summarise_mask(result.mask_at(tau), result.spacing)
    return f" Unsafe volume {totals.volume_ml:.2f} ml in {totals.n_regions} region(s)."


def p_value_floor(result: ScanResult) -> str:
    """What the p-value counts against and the smallest value it can take, from the calibration loaded now."""
    n = calibration_slices(result.method, result.profile)
    text = (f"Conformal p-value against the {n} real clean calibration slices: (1 + those scoring at least as "
            f"high) / ({n} + 1). {p_floor_sentence(n)}.")
    scored = int(np.isfinite(result.slice_scores).sum())
    if result.head and scored > 1:  # core.head_scoring: a volume's p counts against volumes
        volumes = calibration_volumes(result.profile)
        if volumes:
            text += (f" For this volume p counts its worst slice's score against the {volumes} clean calibration "
                     f"volumes' worst slices, so it cannot fall below {smallest_p_value(volumes):.2g}.")
        else:
            text += (f" For this volume p is the worst slice's p times its {scored} scored slices (Bonferroni, at "
                     f"most 1), so it cannot fall below {smallest_p_value(n, scored):.2g}.")
    return text


def verdict(result: ScanResult, tau: float) -> None:
    """The image-level verdict at the tolerance ``tau``: flag, score, p-value, components, warnings."""
    flags = result.flags_at(tau)
    flagged = bool(flags.any())
    n_scored = int(np.isfinite(result.slice_scores).sum())
    if result.out_of_domain:  # never silently "safe" or "unsafe" (core.domain)
        reasons = "; ".join(w.removeprefix(OUT_OF_DOMAIN) for w in result.out_of_domain)
        st.warning(f"**Out of domain: no verdict.** {reasons[0].upper() + reasons[1:]}. The detector was not made for "
                   f"this image, so its score and map below say little ({int(flags.sum())} of {n_scored} scored "
                   f"slice(s) above τ = {format_score(tau)}).", icon=":material/block:")
    elif flagged:
        extent = unsafe_extent(result, tau)
        st.error(f"**Possibly unsafe**: {int(flags.sum())} of {n_scored} scored slice(s) above τ = {format_score(tau)}."
                 f"{extent}",
                 icon=":material/warning:")
    else:
        st.success(f"**No artifact found** above τ = {format_score(tau)} in {n_scored} scored slice(s).",
                   icon=":material/check_circle:")
    for unlike in result.unlike_training:  # a badly degraded synthetic image, or another kind of image
        what = unlike.removeprefix(UNLIKE_TRAINING)
        st.warning(f"**{what[0].upper()}{what[1:]}** "
                   "(the appearance check of the head's own features): another kind of image, or one far from "
                   "real anatomy. Read the score with care.", icon=":material/help:")
    safegen = result.method == SAFEGEN_METHOD and not result.head
    cols = st.columns(5 if safegen else 3)
    score_help = ("The head's anomaly probability at the worst region of the worst slice (averaged over the "
                  "calibrated window)."
                  if result.head else "Calibrated z units; higher = more likely unsafe.")
    cols[0].metric("Score (worst slice)", format_score(result.score), help=score_help)
    against = "volumes" if result.head and n_scored > 1 and calibration_volumes(result.profile) else "slices"
    floor = p_value_floor(result)
    cols[1].metric(f"p-value vs real {against}", format_p(result.p_value), help=floor)
    cols[2].metric("Worst slice", f"{result.worst_slice + 1}")
    if safegen:
        cols[3].metric("Diffusion (S_diffusion)", f"{result.score_diffusion:.2f}")
        cols[4].metric("Autoencoder (E_AE)", f"{result.score_autoencoder:.2f}")
    st.caption(floor)
    with st.expander(f"About these scores ({len(result.warnings)} note(s))", icon=":material/info:"):
        seconds = f"Scored in {result.seconds.get('total', 0.0):.1f} s."
        if result.head:
            where = ("a volume is flagged when any slice is above the volume τ, set so that 5 % of clean volumes "
                     "are flagged" if result.heatmap.ndim == 3 and result.heatmap.shape[2] > 1
                     else "it flags 5 % of clean calibration slices under normal variation")
            sees = ("with its E_AE and S_diffusion reconstructions" if result.reconstruction is not None else
                    "(the image alone: on the validation set the reconstructions did not help it)")
            st.markdown(f"A segmentation head (a small MONAI U-Net) sees the slice at about 1 mm {sees} and outputs "
                        "an anomaly probability per pixel; the heatmap is that probability. "
                        f"The default τ = {format_score(result.tau)}: {where}. {seconds}")
            st.markdown(f"Profile: **{get_profile(result.profile).title}**. "
                        + MODEL_SCOPE.get(result.profile, get_profile(result.profile).about))
        elif safegen:
            st.markdown(f"S = α·S_diffusion + (1 − α)·E_AE with α = {result.alpha:.2f}; the default τ = "
                        f"{format_score(result.tau)} flags 5 % of real clean calibration slices. {seconds}")
            st.markdown(f"Profile: **{get_profile(result.profile).title}**. "
                        + MODEL_SCOPE.get(result.profile, get_profile(result.profile).about))
        else:
            st.markdown(f"Scored by the **{METHOD_LABELS.get(result.method, result.method)}** baseline, fitted on "
                        f"the same real reference slices as SAFEGEN; its own τ = {format_score(result.tau)} flags 5 % of "
                        f"the same clean calibration slices. {seconds} How it compares with SAFEGEN per artifact "
                        "kind: the Evaluation page's Baselines tab.")
        for warning in result.warnings:
            st.warning(warning)


def heatmap_controls(result: ScanResult, scan_key: str) -> tuple[bool, float, float, str]:
    """Sidebar controls: overlay on/off, tau (live mask), opacity, colour map."""
    if st.session_state.get(Keys.TAU_SCAN) != scan_key:  # a new scan opens at its calibrated tau ...
        st.session_state[Keys.TAU_SCAN] = scan_key
        # exactly the calibrated tau, not rounded to the slider's step: the head's thresholds sit within
        # 0.0001 of 1 (rounded, a volume's 0.99993 became 1.00 and nothing was ever flagged)
        st.session_state[Keys.TAU] = min(float(result.tau), 1.0 if result.head else TAU_MAX)
        st.session_state[Keys.SLICE] = result.worst_slice + 1  # ... on its worst slice
    with st.sidebar:
        st.subheader("Heatmap")
        show = st.toggle("Show heatmap overlay", value=True, key=Keys.SHOW_HEATMAP)
        # Fixed limits keep the widget's identity across scans (a changing max re-mounts it).
        top, step, shown = (1.0, HEAD_TAU_STEP, "%.4f") if result.head else (TAU_MAX, 0.05, "%.2f")
        tau = st.slider(f"Tolerance τ ({tau_unit(result)})", 0.0, top, step=step, format=shown, key=Keys.TAU,
                        help="Pixels and slices above τ are marked unsafe. Moving it re-draws; no model runs. "
                             "The arrow keys move it one step.")
        opacity = st.slider("Opacity", 0.0, 1.0, 0.55, step=0.05, key=Keys.OPACITY)
        cmap = st.selectbox("Colour map", HEATMAP_COLORMAPS, key=Keys.COLORMAP,
                            help="Perceptually uniform maps, readable with colour-vision deficiency.")
    return show, float(tau), float(opacity), cmap


def method_labels() -> dict[str, str]:
    """``--method`` name -> a label for the detector choice: SAFEGEN first, then each baseline's title.

    A slow reference (``max_images`` set, i.e. AnoDDPM's full-step reconstruction: seconds per
    slice, minutes to calibrate) is left out; ``score --method`` runs it."""
    return {SAFEGEN_METHOD: "SAFEGEN (diffusion + autoencoder)",
            **{name: cls.title for name, cls in factories().items() if getattr(cls, "max_images", None) is None}}


METHOD_LABELS = method_labels()


AUTO_PROFILE = "auto"


def profile_choice(volume: Volume) -> str:
    """Sidebar choice of the modality profile whose models score the scan; returns a profile name.

    ``Auto`` takes the profile made for the scan's modality (DICOM tag, or HU values in a NIfTI)
    when its models are trained, else brain MRI T1 (the scan then carries an out-of-domain warning).
    """
    auto = auto_profile(volume.modality)
    labels = {AUTO_PROFILE: f"Auto: {auto.title} (from the {volume.modality.value} scan)",
              **{name: p.title for name, p in all_profiles().items() if p.is_trained()}}
    with st.sidebar:
        chosen = st.selectbox(
            "Profile", list(labels), format_func=labels.get, key=Keys.PROFILE,
            help="Which detectors score the scan: each profile was trained on real scans of one modality "
                 "(README, Profiles). Auto follows the scan's modality.",
        )
    return auto.name if chosen == AUTO_PROFILE else chosen


def batch_profile_choice() -> str:
    """Sidebar choice of the profile that scores a batch (generated pictures carry no modality)."""
    trained = {name: p for name, p in all_profiles().items() if p.is_trained()}
    with st.sidebar:
        return st.selectbox("Profile", list(trained), format_func=lambda n: trained[n].title, key=Keys.BATCH_PROFILE,
                            help="Which detectors score the batch: pick the modality the images were generated "
                                 "for (README, Profiles).")


def pixel_size_choice(key: str) -> float | None:
    """Sidebar choice of the pixel size (mm) at which 2-D images that state none (PNG, JPEG) are read
    (:meth:`core.types.Volume.with_pixel_size`); None (empty): 1 mm, with a warning."""
    with st.sidebar:
        return st.number_input(
            "Pixel size of images that state none (mm)", min_value=PIXEL_MM_RANGE[0], max_value=PIXEL_MM_RANGE[1], value=None, step=0.1,
            format="%.2f", key=key, placeholder="1 mm, with a warning",
            help="PNG and JPEG files carry no pixel size and are read at 1 mm. Give the true size for true "
                 "millimetres (areas, volumes, the field-of-view check); a generator's 128-px slice of a whole "
                 "brain is about 1.8 mm. The current detector learned 1 mm pixels: read at a coarser true size, "
                 "a clean picture looks blurred to it and is flagged far more often (README, The detector).")


def method_choice() -> str:
    """Sidebar choice of the detector: SAFEGEN, or a baseline to compare with on the same scan."""
    with st.sidebar:
        return st.selectbox(
            "Detector", list(METHOD_LABELS), format_func=METHOD_LABELS.get, key=Keys.METHOD,
            help="SAFEGEN's score, or one of the baselines it is compared with (fitted on the same real "
                 "reference slices the first time it is chosen, a few seconds). The Evaluation page's "
                 "Baselines tab shows where each one wins.",
        )


EXPLAINER_LABELS = {
    "residual": "Residual (reconstruction error)",
    "saliency": "Saliency (input gradient)",
    "gradcam": "Grad-CAM (autoencoder layer)",
    "latent_ig": "Latent-walk Integrated Gradients (medXGAN-style)",
    "shap": "KernelSHAP (superpixels)",
}


def explainer_choice(result: ScanResult | None = None) -> str:
    """Sidebar choice of the heatmap's explainer (all on the same calibrated scale, so one τ); the
    segmentation head's results offer the head's explainers (:data:`core.head_explain.HEAD_EXPLAINERS`)."""
    names = list(EXPLAINER_LABELS)
    if result is not None and result.head:
        names = [n for n in names if n in {e.value for e in HEAD_EXPLAINERS}]
    with st.sidebar:
        choice = st.selectbox(
            "Heatmap explainer", names, index=names.index(DEFAULT_EXPLAINER),
            format_func=EXPLAINER_LABELS.get, key=Keys.EXPLAINER,
            help="Every explainer's map is matched to the residual map's scale on real images, so τ means the "
                 "same for all. Scores and flags do not change; only the heatmap and mask do. "
                 "The README's explainer table compares them on the benchmark.",
        )
        # Measured on this server by the last finished run (not in the labels: changing them would reset the menu).
        if measured := {n: t for n, t in measured_seconds_per_slice().items() if n in names}:
            st.caption("Seconds per slice on this server: " + ", ".join(
                f"{EXPLAINER_LABELS[n].split(' (')[0]} about {t:.2g} s" for n, t in sorted(measured.items())) + ".")
        return choice


def shown_explainer(result: ScanResult, index: int) -> str:
    """Which explainer made display slice ``index`` of the heatmap: the result's, or the residual map
    where a background explainer has not reached the slice (:attr:`ScanResult.explained_slices`)."""
    if result.explained_slices is None or index in result.explained_slices:
        return result.explainer
    return "residual"


def heat_slice(result: ScanResult, volume: Volume, index: int) -> np.ndarray:
    """Display slice ``index`` of the heatmap (the scan's orientation, like the image)."""
    return volume.display_slice_of(result.heatmap, index)


def make_overlay(result: ScanResult, volume: Volume, tau: float, opacity: float, cmap: str):
    """The ``overlay`` callback of :func:`ui.viewer.slice_viewer`: colour above tau, outline the mask."""
    _, high = heatmap_range(result)
    flags = result.mask_flags_at(tau)

    def draw(index: int, gray: np.ndarray) -> np.ndarray:
        heat = heat_slice(result, volume, index)
        mask = unsafe_mask(heat, tau, flags[index : index + 1]).astype(bool)
        return overlay_heatmap(gray, heat, low=tau, high=max(high, tau + 1.0), opacity=opacity, cmap=cmap, mask=mask)

    return draw


def make_plane_overlay(result: ScanResult, volume: Volume, tau: float, opacity: float, cmap: str):
    """The ``overlay`` of :func:`ui.viewer.orthogonal_views`: the same colours and mask outline as the
    axial overlay, cut through the coronal or sagittal plane."""
    _, high = heatmap_range(result)
    whole_mask = functools.cache(lambda: result.mask_at(tau))  # made on the first call only: the views may stay shut

    def draw(plane: str, index: int, gray: np.ndarray) -> np.ndarray:
        heat = volume.plane_slice_of(result.heatmap, plane, index)
        cut = volume.plane_slice_of(whole_mask(), plane, index).astype(bool)
        return overlay_heatmap(gray, heat, low=tau, high=max(high, tau + 1.0), opacity=opacity, cmap=cmap, mask=cut)

    return draw


def niivue_overlays(result: ScanResult, volume: Volume, scan_key: str, tau: float, opacity: float, cmap: str,
                    shown: bool = True) -> list[dict]:
    """The overlays of :func:`ui.viewer.niivue_view`: the heatmap above tau in ``cmap`` at ``opacity`` and
    the mask at tau outlined in cyan, as on the slice viewer (:func:`make_overlay`).

    The layers are built once per scan, result and tau; opacity and colour map only restyle them.
    The component reloads its overlays only when a name, colour map, opacity or size changes, and
    keeps them when given none: so the names carry what the layers were made from, and a hidden
    heatmap (``shown`` False) is the same layers at opacity 0.
    """
    if not result.pixel_maps:
        return []
    _, high = heatmap_range(result)
    explained = result.explainer if result.explained_slices is None else \
        f"{result.explainer}{len(result.explained_slices)}of{int(np.isfinite(result.slice_scores).sum())}"
    layers = (scan_key, result.method, result.profile, explained, tau)
    heat, outline = kept(Keys.NIIVUE_MAPS, layers, lambda: (
        heatmap_layer(result.heatmap, volume.affine, tau, max(high, tau + 1.0)),
        outline_layer(result.mask_at(tau), volume.affine)))
    made_of = f"{result.method}_{result.profile}_{explained}_tau{format_score(tau)}"
    return [{"data": heat, "name": f"heatmap_above_tau_{made_of}.nii.gz", "colormap": cmap,
             "opacity": opacity if shown else 0.0},
            {"data": outline, "name": f"mask_outline_{made_of}.nii.gz", "colormap": OUTLINE_COLORMAP,
             "opacity": 1.0 if shown else 0.0}]


def apply_chart_pick(n_slices: int) -> None:
    """If the per-slice plot was clicked since the last run, move the slice slider there."""
    event = st.session_state.get(Keys.SCORE_CHART)  # a PlotlyState, which is a dict
    points = (event or {}).get("selection", {}).get("points", [])
    if not points:
        return
    pick = int(round(points[0].get("x", 0)))
    if pick != st.session_state.get(Keys.LAST_PICK) and 1 <= pick <= n_slices:
        st.session_state[Keys.SLICE] = pick
    st.session_state[Keys.LAST_PICK] = pick


def slice_score_figure(result: ScanResult, tau: float, current: int) -> go.Figure:
    """Score per slice (1-based), the tolerance line and the slice on screen."""
    # Plain lists (not numpy arrays) so the figure's JSON holds the numbers themselves.
    x = list(range(1, len(result.slice_scores) + 1))
    scores = [None if not np.isfinite(v) else round(float(v), 4) for v in result.slice_scores]
    flags = result.flags_at(tau)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=x, y=scores, mode="lines+markers", name="slice score",
                             marker={"size": 5, "color": ["#c0392b" if f else "#1f5fbf" for f in flags]},
                             hovertemplate="slice %{x}: %{y:.2f}<extra></extra>"))
    fig.add_hline(y=tau, line_dash="dash", line_color="#c0392b", annotation_text=f"τ = {format_score(tau)}")
    fig.add_vline(x=current + 1, line_color="#555555", line_width=1)
    fig.update_layout(height=220, margin={"l": 40, "r": 10, "t": 10, "b": 30}, showlegend=False,
                      xaxis_title="axial slice (click to jump)", yaxis_title="score (z)", clickmode="event+select")
    return fig


def slice_score_chart(result: ScanResult, tau: float, current: int) -> None:
    st.plotly_chart(slice_score_figure(result, tau, current), key=Keys.SCORE_CHART, on_select="rerun",
                    selection_mode="points")


def panels(result: ScanResult, volume: Volume, index: int, gray: np.ndarray, tau: float, cmap: str) -> None:
    """Image, the autoencoder's reconstruction, heatmap and mask of the slice on screen, side by side."""
    if not result.pixel_maps:
        st.image(gray, caption="Image", clamp=True, width=360)
        st.info(f"{METHOD_LABELS.get(result.method, result.method)} scores whole images only: no heatmap or mask.",
                icon=":material/info:")
        return
    heat = heat_slice(result, volume, index)
    _, high = heatmap_range(result)
    mask = unsafe_mask(heat, tau, result.mask_flags_at(tau)[index : index + 1]).astype(bool)
    regions = int(ndimage.label(mask, structure=np.ones((3, 3)))[1])
    heat_rgb = overlay_heatmap(np.zeros_like(gray), heat, low=0.0, high=high, opacity=1.0, cmap=cmap)
    cols = st.columns(4)
    cols[0].image(gray, caption="Image", clamp=True, width="stretch")
    if result.reconstruction is not None:
        recon = volume.display_slice_of(result.reconstruction, index)
        cols[1].image(np.clip(recon, 0.0, 1.0), caption="Reconstruction (autoencoder, normalised)", clamp=True,
                      width="stretch")
    explainer = shown_explainer(result, index)
    cols[2].image(heat_rgb, caption=f"Heatmap ({explainer}), 0 to {high:.1f} ({tau_unit(result)})",
                  width="stretch")
    if explainer != result.explainer:
        cols[2].caption(f"{result.explainer} has not reached this slice yet: its residual map is shown.")
    cols[3].image((mask * 255).astype(np.uint8),
                  caption=f"Unsafe mask at τ = {format_score(tau)} ({int(mask.sum())} px, {regions} region(s))",
                  width="stretch")
    if result.flags_at(tau)[index] and not mask.any():
        st.info(f"This slice is flagged, but the {explainer} map has no region above τ here: gradient "
                "maps show where the score is sensitive, not how anomalous a pixel is. The residual map "
                "shows the magnitude.", icon=":material/info:")


def mask_download(result: ScanResult, volume: Volume, tau: float) -> None:
    stem = volume.name.split(".")[0] or "scan"
    # A callable: the NIfTI is built and gzipped only when clicked, not on every rerun (50 ms on MNI152).
    st.download_button(f"Download the mask at τ = {format_score(tau)} (NIfTI)",
                       lambda: mask_nifti_bytes(result, volume, tau),
                       file_name=f"{stem}_mask_tau{format_score(tau)}.nii.gz", mime="application/gzip",
                       icon=":material/download:", on_click="ignore",
                       key=f"review.download.{stem}.{format_score(tau)}")  # a new tau is a new file: a new button


def dicom_seg_download(result: ScanResult, volume: Volume, tau: float, upload=None) -> None:
    """The mask at ``tau`` as a DICOM-SEG (:mod:`core.dicom_seg`), zipped with the derived DICOM copy it
    references when the scan is not DICOM. ``upload``: the uploaded file the volume came from (its
    DICOM headers are re-read from it); None for a demo scan (read from its file)."""
    stem = volume.name.split(".")[0] or "scan"
    st.download_button(f"Download the mask at τ = {format_score(tau)} (DICOM-SEG)",
                       lambda: _dicom_seg_zip(result, volume, tau, upload, stem),
                       file_name=f"{stem}_mask_tau{format_score(tau)}_dicom_seg.zip", mime="application/zip",
                       icon=":material/download:", on_click="ignore",
                       key=f"review.dicom_seg.{stem}.{format_score(tau)}",
                       help="A DICOM Segmentation for PACS viewers (OHIF, 3D Slicer). A DICOM scan's SEG references "
                            "its own images; any other scan's comes with a derived DICOM copy of the scan.")


def _dicom_seg_zip(result: ScanResult, volume: Volume, tau: float, upload, stem: str) -> bytes:
    from core.dicom_seg import safegen_author_of, seg_zip  # highdicom loads on the first click, not with the page

    with tempfile.TemporaryDirectory(prefix="safegen-seg-") as folder:
        source = Path(volume.source) if upload is None and volume.source else None
        if upload is not None:  # the upload's temporary file is gone: its bytes are read again
            source = Path(folder) / (Path(upload.name).name or "upload")
            source.write_bytes(upload.getvalue())
        return seg_zip(result.mask_at(tau), volume, safegen_author_of(result, tau), source=source, stem=stem)


def summary_downloads(result: ScanResult, volume: Volume, tau: float, index: int, window: Window, cmap: str,
                      opacity: float) -> None:
    """One-page PNG and PDF summaries of this view (:func:`core.summary.summary_page`).

    The page is rendered when a button is clicked (about half a second), not on every rerun.
    """
    stem = volume.name.split(".")[0] or "scan"
    name = f"{stem}_safegen_slice{index + 1}_tau{format_score(tau)}"
    left, right, _ = st.columns([1, 1, 2])
    for column, fmt, mime, icon in ((left, "png", "image/png", ":material/image:"),
                                    (right, "pdf", "application/pdf", ":material/picture_as_pdf:")):
        column.download_button(
            f"Summary ({fmt.upper()})",
            lambda fmt=fmt: summary_page(result, volume, tau, index, window, cmap=cmap, opacity=opacity, fmt=fmt),
            file_name=f"{name}.{fmt}", mime=mime, icon=icon, on_click="ignore", key=f"review.summary.{fmt}",
            help="What is on screen, on one page: verdict, scores, this slice with its heatmap and mask, "
                 "the per-slice scores and the models' limits.",
        )
