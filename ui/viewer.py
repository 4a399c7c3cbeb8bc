"""The slice viewer: slice slider, window/level presets, and the rendered slice."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np
import streamlit as st
from PIL import Image

from core.render import apply_window, window_presets
from core.types import Volume
from core.viewer_layers import scan_layer
from ui.state import Keys


def square_pixels(image_u8: np.ndarray, spacing_rc: tuple[float, float]) -> np.ndarray:
    """Stretch a rendered slice so that one screen pixel is the same size in mm both ways."""
    row_mm, col_mm = spacing_rc
    if np.isclose(row_mm, col_mm, rtol=0.02):
        return image_u8
    h, w = image_u8.shape[:2]
    scale = max(row_mm, col_mm) / min(row_mm, col_mm)
    size = (round(w * scale), h) if col_mm > row_mm else (w, round(h * scale))
    return np.asarray(Image.fromarray(image_u8).resize(size, Image.Resampling.BILINEAR))


MAX_DISPLAY_PX = 1024  # larger slices are shrunk for the screen; the data keep their resolution


def fit_for_screen(image_u8: np.ndarray, max_px: int = MAX_DISPLAY_PX) -> np.ndarray:
    """Shrink a rendered slice whose longer side exceeds ``max_px`` (a 2k radiograph, say)."""
    h, w = image_u8.shape[:2]
    scale = max_px / max(h, w)
    if scale >= 1.0:
        return image_u8
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(image_u8).resize(size, Image.Resampling.LANCZOS))


def clamp_slice_number(key: str, n: int) -> None:
    """Keep the slider state ``key`` within ``1..n`` (middle slice if unset) before the slider is built.

    Slices are numbered from 1 on screen, as on a scanner console; a new scan can have fewer slices
    than the last one.
    """
    current = int(st.session_state.get(key, n // 2 + 1))
    st.session_state[key] = min(max(current, 1), n)


def slice_viewer(volume: Volume, overlay: Callable[[int, np.ndarray], np.ndarray] | None = None) -> int:
    """Show one display slice of ``volume`` with its controls; return the slice index shown.

    Args:
        volume: the scan.
        overlay: optional ``(slice index, windowed uint8 slice) -> RGB uint8`` drawn instead of the
            grey slice (the heatmap overlay of the scan review).
    """
    presets = window_presets(volume)
    if st.session_state.get(Keys.WINDOW) not in presets:
        st.session_state[Keys.WINDOW] = next(iter(presets))
    n = volume.n_slices
    clamp_slice_number(Keys.SLICE, n)

    controls, view = st.columns([1, 3])
    with controls:
        if n > 1:
            st.slider("Axial slice", 1, n, key=Keys.SLICE, help="Use the arrow keys after clicking the slider.")
        st.selectbox("Window / level", list(presets), key=Keys.WINDOW)
        window = presets[st.session_state[Keys.WINDOW]]
        st.caption(f"Level {window.center:g}, width {window.width:g}")
        index = int(st.session_state[Keys.SLICE]) - 1 if n > 1 else 0
    with view:
        row_mm, col_mm = volume.display_spacing()
        gray = apply_window(volume.display_slice(index), window)
        shown = overlay(index, gray) if overlay is not None else gray
        pixels = fit_for_screen(square_pixels(shown, (row_mm, col_mm)))
        # Only volumes carry an orientation; a 2-D picture is shown as stored.
        orientation = " · anterior at the top, patient's right on the left" if volume.is_3d else ""
        st.image(
            pixels,
            caption=f"Slice {index + 1} of {n} · pixel {row_mm:.2f} x {col_mm:.2f} mm{orientation}",
            width=min(640, max(pixels.shape[1], 384)),
            clamp=True,
        )
    return index


PlaneOverlay = Callable[[str, int, np.ndarray], np.ndarray]


def orthogonal_views(volume: Volume, axial_index: int, overlay: PlaneOverlay | None = None) -> None:
    """Coronal and sagittal views of a volume, crossing the axial slice shown (a line marks it).

    Args:
        volume: a 3-D scan.
        axial_index: the axial slice of the main viewer (0-based).
        overlay: optional ``(plane, index, windowed uint8 slice) -> RGB uint8``, the heatmap drawn
            on each view (:func:`ui.review.make_plane_overlay`).
    """
    if not st.toggle("Coronal and sagittal views", key=Keys.PLANES,
                     help="Cut the volume front-to-back and side-to-side; the yellow line is the axial slice above."):
        return
    window = window_presets(volume)[st.session_state[Keys.WINDOW]]
    columns = st.columns(2)
    for column, plane, key, label in ((columns[0], "coronal", Keys.CORONAL, "Coronal slice (posterior → anterior)"),
                                      (columns[1], "sagittal", Keys.SAGITTAL, "Sagittal slice (left → right)")):
        n = volume.plane_count(plane)
        clamp_slice_number(key, n)
        with column:
            st.slider(label, 1, n, key=key)
            index = int(st.session_state[key]) - 1
            gray = apply_window(volume.plane_slice_of(volume.array, plane, index), window)
            shown = overlay(plane, index, gray) if overlay is not None else np.repeat(gray[..., None], 3, axis=-1)
            shown = mark_row(shown, volume.n_slices - 1 - axial_index)  # superior at the top
            row_mm, col_mm = volume.plane_spacing(plane)
            side = "the patient's right on the left" if plane == "coronal" else "anterior on the left"
            st.image(fit_for_screen(square_pixels(shown, (row_mm, col_mm))), clamp=True,
                     caption=f"{plane.capitalize()} {index + 1} of {n} · superior at the top, {side}")


def mark_row(rgb: np.ndarray, row: int, colour: tuple[int, int, int] = (255, 214, 0)) -> np.ndarray:
    """``rgb`` with row ``row`` drawn in ``colour`` (a copy): where the axial slice cuts this view."""
    marked = np.array(rgb, copy=True)
    if 0 <= row < marked.shape[0]:
        marked[row] = colour
    return marked


def volume_facts(volume: Volume) -> None:
    """A compact table of what was loaded, and any loader warnings."""
    shape = " x ".join(str(s) for s in volume.array.shape)
    spacing = " x ".join(f"{s:.3g}" for s in volume.spacing)
    st.markdown(
        f"**{volume.name}** · {volume.modality.name} · {shape} voxels · {spacing} mm"
        + (f" · {volume.description}" if volume.description else "")
    )
    for warning in volume.warnings:
        st.warning(warning)


T = TypeVar("T")
VIEWER_SLICES = "Slices (sliders)"
VIEWER_NIIVUE = "NiiVue (scroll, drag window/level, zoom)"
OUTLINE_COLORMAP = "green2cyan"  # NiiVue's map whose top is cyan, as core.render.MASK_OUTLINE_RGB
NIIVUE_HEIGHT = 640  # px: the 2 x 2 multiplanar grid about as wide as the main column allows
NIIVUE_MOUSE = ("**Mouse wheel**: next slice · **right-drag a box**: window/level to the intensities inside it · "
                "**click**: move the crosshair (all three planes) · **middle-drag** or **shift-drag**: pan · "
                "**Zoom** in the viewer's menu (or the Z key), then right-drag down or up: zoom in or out "
                "(Zoom again: back to window/level) · **View** menu: one plane or all three.")


def viewer_choice(volume: Volume, key: str = Keys.VIEWER) -> str:
    """The reader's viewer for a volume: the slice viewer (the default, no WebGL needed) or NiiVue.

    A 2-D image keeps the slice viewer: NiiVue would label a radiograph's edges with anatomical
    directions (A, L) it does not have, and has no other slices to scroll.

    Args:
        volume: the scan.
        key: the radio's session-state key (Scan review's by default; the Reading page has its own).
    """
    if not volume.is_3d:
        return VIEWER_SLICES
    return st.radio("Viewer", [VIEWER_SLICES, VIEWER_NIIVUE], key=key, horizontal=True,
                    help="NiiVue draws the three planes in the browser with WebGL, as OHIF and 3D Slicer do: "
                         "scroll, drag the window, zoom and pan. The slice viewer needs no WebGL.")


def kept(store_key: str, key: object, make: Callable[[], T]) -> T:
    """``make()`` once per ``key`` in this session; only the latest is kept under ``store_key`` (the
    viewer's layers are megabytes: a slider move must not rebuild or re-hash them)."""
    stored = st.session_state.get(store_key)
    if stored is None or stored[0] != key:
        stored = (key, make())
        st.session_state[store_key] = stored
    return stored[1]


def crosshair_slice(event: object, n_slices: int) -> int:
    """The axial slice index (0-based) at NiiVue's crosshair.

    Args:
        event: the component's value: ``{"type": "voxel_click", "voxel": [x, y, z], ...}``, which it
            reports after a click or a scroll moved the crosshair, or None before the first.
        n_slices: the volume's axial slices.

    Returns:
        the reported voxel's slice, else ``n_slices // 2``: NiiVue opens at the centre, voxel
        ``round(n / 2 - 0.5)`` (JavaScript rounds halves up).
    """
    if isinstance(event, dict) and event.get("type") == "voxel_click":
        voxel = event.get("voxel") or ()
        if len(voxel) == 3 and 0 <= int(voxel[2]) < n_slices:
            return int(voxel[2])
    return n_slices // 2


def scan_views(volume: Volume, scan_key: str, *, overlay: Callable[[int, np.ndarray], np.ndarray] | None = None,
               plane_overlay: PlaneOverlay | None = None,
               niivue_overlays: Callable[[], list[dict]] | None = None) -> int:
    """The viewer the reader chose (:func:`viewer_choice`) on ``volume``; return the axial slice index
    (0-based) on screen, for the chart and panels below.

    Args:
        volume: the scan.
        scan_key: identifies the scan (``demo:<case>`` or ``upload:<file id>``).
        overlay: the slice viewer's overlay (:func:`slice_viewer`).
        plane_overlay: the coronal and sagittal views' overlay (:func:`orthogonal_views`).
        niivue_overlays: makes NiiVue's overlay layers (:func:`niivue_view`); called only when NiiVue shows.
    """
    if viewer_choice(volume) == VIEWER_NIIVUE:
        index = niivue_view(volume, scan_key, niivue_overlays() if niivue_overlays is not None else None)
        if index is not None:
            return index
    index = slice_viewer(volume, overlay)
    if volume.is_3d:
        orthogonal_views(volume, index, plane_overlay)
    return index


def niivue_message_limit() -> int:
    """The most bytes of layers one NiiVue view may carry: the server's message limit, less the third
    that base64 adds, less room for the rest of the page."""
    return int(st.get_option("server.maxMessageSize") * 1e6 * 3 / 4 * 0.9)


SCAN_REVIEW_FOLLOWS = "the chart and panels below follow its crosshair (a click on the chart does not move it)"


def niivue_view(volume: Volume, scan_key: str, overlays: list[dict] | None = None, *, window_key: str = Keys.WINDOW,
                slice_key: str = Keys.SLICE, follows: str = SCAN_REVIEW_FOLLOWS) -> int | None:
    """A 3-D volume in NiiVue (three planes, crosshair, true voxel aspect); return the axial slice
    index (0-based) at its crosshair, for the chart and panels below, or None (with a warning) when
    the layers are too large to send to the browser.

    Args:
        volume: a 3-D scan.
        scan_key: identifies the scan (``demo:<case>`` or ``upload:<file id>``); one component per scan.
        overlays: NiiVue overlays (``data``, ``name``, ``colormap``, ``opacity``), e.g. the heatmap and
            the mask outline of :func:`ui.review.niivue_overlays`.
        window_key: the session-state key of the window / level selectbox drawn here (the window it opens in).
        slice_key: the session-state key of the slice slider (1-based) that opens at the crosshair when
            the reader goes back to the slice viewer.
        follows: what follows the crosshair, for the caption under the viewer.
    """
    from niivue_component import niivue_viewer  # its frontend (NiiVue, bundled in the wheel) loads here only

    presets = window_presets(volume)
    if st.session_state.get(window_key) not in presets:
        st.session_state[window_key] = next(iter(presets))
    window = presets[st.session_state[window_key]]  # the selectbox's value this run, read before it is drawn
    scan = kept(Keys.NIIVUE_SCAN, (scan_key, window), lambda: scan_layer(volume, window))
    size = len(scan) + sum(len(layer["data"]) for layer in overlays or ())
    if size > niivue_message_limit():  # checked before any widget: the slice viewer draws the same ones
        st.warning(f"This volume is too large for NiiVue here ({size / 1e6:.0f} MB compressed; the server sends "
                   f"at most {niivue_message_limit() / 1e6:.0f} MB at once): the slice viewer shows it.")
        return None
    n = volume.n_slices
    controls, view = st.columns([1, 3])
    with controls:
        st.selectbox("Window / level", list(presets), key=window_key,
                     help="The window NiiVue opens with; right-drag a box in the viewer to change it from there.")
        st.caption(f"Opens at level {window.center:g}, width {window.width:g}")
        st.caption(NIIVUE_MOUSE)
    with view:
        # a new scan, or overlays going away, needs a fresh component: it keeps its overlays when given none
        component_key = f"{Keys.NIIVUE}.{scan_key}" + ("" if overlays else ".plain")
        event = niivue_viewer(
            nifti_data=scan, filename=f"{volume.name.split('.')[0] or 'scan'}.nii.gz", overlays=overlays or None,
            height=NIIVUE_HEIGHT, view_mode="multiplanar", styled=True,
            # radiological: the patient's right on the left, as the slice viewer; nearest voxels, no blur
            settings={"crosshair": True, "radiological": True, "colorbar": False, "interpolation": False},
            update_interval_ms=250, key=component_key,
        )
        index = crosshair_slice(event, n)
        st.session_state[slice_key] = index + 1  # the slice viewer opens there if the reader goes back
        spacing = " x ".join(f"{s:.3g}" for s in volume.spacing)
        st.caption(f"Crosshair on axial slice {index + 1} of {n} · voxels {spacing} mm, drawn to scale · the "
                   f"patient's right on the left. NiiVue opens at the centre of the volume; {follows}.")
    return index
