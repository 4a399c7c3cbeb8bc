"""What a 3-D viewer (the dashboard's NiiVue) draws, as gzipped NIfTI bytes on the scan's own grid.

Three layers share the scan's voxel grid and affine, so the viewer shows true voxel aspect and
orientation and lines them up by itself:

* the scan, with the chosen display window written as ``cal_min`` / ``cal_max`` (the range a viewer
  opens with; NiiVue, FSLeyes and 3D Slicer read it);
* the heatmap above tau, as ``heatmap - tau`` where the heatmap exceeds tau and 0 elsewhere: a viewer
  leaves 0 transparent and spreads its colour map from tau (0) to the top of the scale, as the
  slice viewer's overlay does (:func:`core.render.overlay_heatmap` with ``low=tau``);
* the outline of the unsafe mask (:func:`core.masks.slice_outline`), 1 on the border, 0 elsewhere.

Pure numpy and nibabel: no Streamlit.
"""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np

from core.masks import slice_outline
from core.types import Volume, Window

INT16 = np.iinfo(np.int16)


def nifti_bytes(array: np.ndarray, affine: np.ndarray, *, display_range: tuple[float, float] | None = None,
                compresslevel: int = 9) -> bytes:
    """``array`` as a gzipped NIfTI-1 on ``affine``, stored in the array's own dtype (no scaling).

    Args:
        array: ``(X, Y, Z)`` in the affine's voxel order (a :class:`~core.types.Volume`'s RAS+ order).
        affine: 4x4 voxel-to-world (mm) matrix.
        display_range: ``(low, high)`` written as ``cal_min`` / ``cal_max``; None leaves them 0 (unset).
        compresslevel: gzip level; 1 is four times faster than 9 and about 15 % larger on a brain volume.

    Returns:
        the ``.nii.gz`` file's bytes (no time stamp in the gzip header: equal input, equal bytes).
    """
    image = nib.Nifti1Image(array, np.asarray(affine, dtype=np.float64))
    image.set_data_dtype(array.dtype)
    if display_range is not None:
        image.header["cal_min"], image.header["cal_max"] = display_range
    return gzip.compress(image.to_bytes(), compresslevel=compresslevel, mtime=0)


def compact_voxels(array: np.ndarray) -> np.ndarray:
    """``array`` as int16 when every voxel is an integer in int16's range (CT in HU, 8-bit MRI: exact,
    half the bytes of float32), else as float32."""
    values = np.asarray(array)
    finite = np.isfinite(values).all()
    if finite and values.size and INT16.min <= values.min() and values.max() <= INT16.max \
            and np.array_equal(values, np.round(values)):
        return values.astype(np.int16)
    return values.astype(np.float32)


def scan_layer(volume: Volume, window: Window, *, compresslevel: int = 1) -> bytes:
    """A 3-D scan as NIfTI bytes that open in ``window``.

    The window is clipped to the scan's intensity range: NiiVue ignores a ``cal_min`` / ``cal_max``
    outside the data and falls back to its own robust range.
    """
    if not volume.is_3d:
        raise ValueError("only a 3-D volume is a viewer layer; a 2-D image is shown by the slice viewer")
    voxels = compact_voxels(volume.array)
    low, high = float(np.nanmin(voxels)), float(np.nanmax(voxels))
    shown = (min(max(window.low, low), high), max(min(window.high, high), low))
    return nifti_bytes(voxels, volume.affine, display_range=shown if shown[1] > shown[0] else None,
                       compresslevel=compresslevel)


def heat_above(heatmap: np.ndarray, tau: float) -> np.ndarray:
    """``heatmap - tau`` where the heatmap exceeds ``tau``, 0 elsewhere and where it is NaN (float32)."""
    heat = np.nan_to_num(np.asarray(heatmap, dtype=np.float32), nan=-np.inf)
    return np.where(heat > tau, heat - np.float32(tau), np.float32(0.0)).astype(np.float32)


def heatmap_layer(heatmap: np.ndarray, affine: np.ndarray, tau: float, high: float, *,
                  compresslevel: int = 1) -> bytes:
    """The heatmap above ``tau`` (:func:`heat_above`) as NIfTI bytes whose colour scale runs from tau
    to ``high`` (clipped to the hottest voxel: a viewer ignores a range beyond the data)."""
    above = heat_above(heatmap, tau)
    top = float(above.max()) if above.size else 0.0
    scale = (0.0, min(high - tau, top)) if top > 0.0 and high > tau else None
    return nifti_bytes(above, affine, display_range=scale, compresslevel=compresslevel)


def outline_layer(mask: np.ndarray, affine: np.ndarray, *, compresslevel: int = 1) -> bytes:
    """The outline of ``mask`` (:func:`core.masks.slice_outline`) as uint8 NIfTI bytes, 1 on the border."""
    border = slice_outline(mask).astype(np.uint8)
    return nifti_bytes(border, affine, display_range=(0.0, 1.0) if border.any() else None,
                       compresslevel=compresslevel)
