"""Unsafe-region masks from a calibrated heatmap, and what they cover.

A mask is ``heatmap > tau`` on the slices whose score is above tau, without the 8-connected
regions smaller than ``min_region_fraction`` of the slice (isolated specks are noise, not
findings). The same function serves every explainer, the CLI and the dashboard's tau slider.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

# Connected unsafe regions smaller than this share of the slice are dropped: 8 pixels of the
# 128x128 model grid, about 10 mm^2 of a 1 mm brain slice.
MIN_REGION_FRACTION = 8 / 128**2


def remove_small_regions(mask: np.ndarray, min_pixels: int) -> np.ndarray:
    """``mask`` (2-D) without its 8-connected components smaller than ``min_pixels``."""
    mask = np.asarray(mask, dtype=bool)
    if min_pixels <= 1 or not mask.any():
        return mask
    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= min_pixels
    keep[0] = False
    return keep[labels]


def unsafe_mask(heatmap: np.ndarray, tau: float, flags: np.ndarray | None = None,
                min_region_fraction: float = MIN_REGION_FRACTION) -> np.ndarray:
    """``heatmap > tau`` per slice, small regions removed, only on flagged slices.

    Args:
        heatmap: ``(H, W)`` or ``(H, W, S)`` (slices last, as :class:`~core.types.Volume`).
        tau: tolerance, the heatmap's units.
        flags: bool per slice (``(1,)`` for 2-D); None keeps every slice.
        min_region_fraction: regions smaller than this share of a slice's pixels are dropped.

    Returns:
        uint8 mask, the heatmap's shape.
    """
    volume = heatmap[..., None] if heatmap.ndim == 2 else heatmap
    min_pixels = int(round(min_region_fraction * volume.shape[0] * volume.shape[1]))
    out = np.zeros(volume.shape, dtype=np.uint8)
    for s in range(volume.shape[2]):
        if flags is not None and not flags[s]:
            continue
        out[..., s] = remove_small_regions(volume[..., s] > tau, min_pixels)
    return out[..., 0] if heatmap.ndim == 2 else out


def slice_outline(mask: np.ndarray) -> np.ndarray:
    """The one-pixel border of a mask, slice by slice: the mask minus its 4-connected 2-D erosion.

    A mask is made per axial slice (:func:`unsafe_mask`), so its outline is too: each slice's regions
    are drawn as closed rings, and a region touching the image edge is closed along that edge.

    Args:
        mask: ``(H, W)`` or ``(H, W, S)`` (slices last), any dtype; nonzero is inside.

    Returns:
        bool, ``mask``'s shape.
    """
    inside = np.asarray(mask, dtype=bool)
    cross = ndimage.generate_binary_structure(2, 1)
    structure = cross if inside.ndim == 2 else cross[..., None] * np.array([False, True, False])
    return inside & ~ndimage.binary_erosion(inside, structure=structure, border_value=0)


@dataclass(frozen=True)
class MaskSummary:
    """What an unsafe-region mask covers, per slice and in total.

    Attributes:
        area_mm2: ``(S,)`` unsafe area of each slice.
        regions: ``(S,)`` number of 8-connected regions on each slice.
        total_mm2: summed area (2-D images).
        volume_ml: summed area times slice spacing, in ml (3-D volumes; 0 for 2-D).
        n_regions: 26-connected regions in 3-D (same as ``regions.sum()`` for 2-D).
        largest_slice: slice with the largest unsafe area (-1 when the mask is empty).
    """

    area_mm2: np.ndarray
    regions: np.ndarray
    total_mm2: float
    volume_ml: float
    n_regions: int
    largest_slice: int


def summarise_mask(mask: np.ndarray, spacing: tuple[float, ...]) -> MaskSummary:
    """Per-slice and whole-scan numbers of a mask ``(H, W)`` or ``(H, W, S)`` with voxel ``spacing`` in mm."""
    volume = np.asarray(mask, dtype=bool)
    volume = volume[..., None] if volume.ndim == 2 else volume
    pixel_mm2 = float(spacing[0]) * float(spacing[1])
    area = volume.sum(axis=(0, 1)) * pixel_mm2
    occupied = np.flatnonzero(area > 0)  # empty slices have no regions: label only the others
    regions = np.zeros(volume.shape[2], dtype=int)
    for s in occupied:
        regions[s] = ndimage.label(volume[..., s], structure=np.ones((3, 3)))[1]
    if volume.shape[2] > 1:
        span = volume[..., occupied.min():occupied.max() + 1] if occupied.size else volume[..., :0]
        n_regions = int(ndimage.label(span, structure=np.ones((3, 3, 3)))[1])
        volume_ml = float(volume.sum() * pixel_mm2 * float(spacing[2]) / 1000.0)
    else:
        n_regions, volume_ml = int(regions.sum()), 0.0
    return MaskSummary(area, regions, float(area.sum()), volume_ml, n_regions,
                       int(np.argmax(area)) if area.any() else -1)
