"""The slice viewer: slice slider, window/level presets, and the rendered slice."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import streamlit as st
from PIL import Image

from core.render import apply_window, window_presets
from core.types import Volume
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
