"""Modality normalisation, and the model grid there and back, exactly aligned.

Two jobs sit here, one after the other in the pipeline:

1. **Intensities** to float32 in [0, 1], per modality (:func:`normalize_intensity`):
   MR by robust percentiles inside the foreground, CT by a fixed HU window, radiographs by robust
   percentiles of the whole image. For a 3-D volume the statistics come from the whole volume, so
   one tissue has one value on every slice.
2. **Geometry**: every 2-D display slice is padded to a square and resized to the detector's
   ``(size, size)`` grid (:func:`to_model_grid`); a map computed on that grid is resized back and
   cropped to the slice (:func:`from_model_grid`, :func:`mask_from_model_grid`).

Resize convention
-----------------
One primitive does both directions: :func:`skimage.transform.resize` with ``preserve_range=True``
and ``mode="edge"`` (it calls ``scipy.ndimage.zoom(..., grid_mode=True)``). That is the
half-pixel convention of ``torch.nn.functional.interpolate(..., align_corners=False)``: pixels are
unit squares, the outer *edges* of the two images coincide, and pixel centre ``j`` of the output
samples the input at ``(j + 0.5) * n_in / n_out - 0.5``. So for a slice padded to a square of side
``S`` with ``pad_before = (pr, pc)`` and a grid of ``size`` pixels::

    grid_row = (row + pr + 0.5) * size / S - 0.5
    row      = (grid_row + 0.5) * S / size - 0.5 - pr

(:meth:`GridTransform.to_grid_coords` / :meth:`GridTransform.from_grid_coords`). Forward and
backward use the same formula in opposite directions, so a structure keeps its centre both ways.
Shrinking applies skimage's Gaussian anti-aliasing (sigma ``(factor - 1) / 2``) before
interpolating; it is symmetric, so it blurs edges but does not move them. ``mode="edge"`` repeats
the border pixel for the half pixel the convention reads beyond the image, so maps do not fade
at the border.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.transform import resize

from core.errors import EmptyImageError, NonFiniteError
from core.types import Modality, Volume, Window


class CTWindow(StrEnum):
    """Names of the standard CT display windows in :data:`CT_WINDOWS`."""

    BRAIN = "brain"
    SUBDURAL = "subdural"
    SOFT_TISSUE = "soft_tissue"
    BONE = "bone"
    LUNG = "lung"


# Standard level/width presets in HU, as on CT consoles and in Radiopaedia's "Windowing (CT)"
# article: brain W80 L40, subdural W215 L75 (within its W130-300 / L50-100), soft tissue
# W400 L40, bone W1800 L400, lung W1500 L-600. Same values as ``core.render.CT_PRESETS``.
CT_WINDOWS: dict[CTWindow, Window] = {
    CTWindow.BRAIN: Window(40.0, 80.0, "Brain"),
    CTWindow.SUBDURAL: Window(75.0, 215.0, "Subdural"),
    CTWindow.SOFT_TISSUE: Window(40.0, 400.0, "Soft tissue"),
    CTWindow.BONE: Window(400.0, 1800.0, "Bone"),
    CTWindow.LUNG: Window(-600.0, 1500.0, "Lung"),
}

# Robust percentile ranges used when no window is given. MR statistics come from inside the
# foreground, so (1, 99) already ignores the background; radiographs have no clean background, so
# their range is taken over the whole image and trimmed less.
DEFAULT_PERCENTILES: dict[Modality, tuple[float, float]] = {
    Modality.MR: (1.0, 99.0),
    Modality.XRAY: (0.5, 99.5),
    Modality.OTHER: (0.5, 99.5),
}

# Air is about -1000 HU, fat about -100 HU: -500 separates the body (and the table) from air.
CT_BODY_THRESHOLD_HU = -500.0
# Light smoothing before Otsu on MR, in voxels: enough to stop noise from splitting the head.
MR_SMOOTHING_SIGMA = 1.0
# Radiographs (and unknown images) count everything above their darkest 1% as foreground.
XRAY_BACKGROUND_PERCENTILE = 1.0


# ---------------------------------------------------------------------------------------------
# Intensities
# ---------------------------------------------------------------------------------------------


def _checked_float(image: np.ndarray) -> np.ndarray:
    """``image`` as float32, after checking that it is 2-D/3-D, finite and not constant."""
    values = np.asarray(image)
    if values.ndim not in (2, 3):
        raise ValueError(f"expected a 2-D image or a 3-D volume, got shape {values.shape}")
    values = values.astype(np.float32, copy=False)
    if values.size == 0:
        raise EmptyImageError("the image has no pixels")
    if not np.isfinite(values).all():
        raise NonFiniteError("the image holds NaN or infinite values; cannot normalise it")
    low, high = values.min(), values.max()
    if low == high:
        raise EmptyImageError(f"every pixel has the same value ({low:g}); there is no contrast to normalise")
    return values


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest face-connected component of ``mask`` (in 3-D for volumes)."""
    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0  # label 0 is the background
    return labels == int(np.argmax(sizes))


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill holes in 2-D, or in each axial slice (axis 2) of a 3-D RAS volume.

    Per-slice filling also closes cavities that open to the outside only through another slice
    (a 3-D fill would leave them): the detectors look at axial slices, so that is what counts.
    """
    if mask.ndim == 2:
        return ndimage.binary_fill_holes(mask)
    filled = np.empty_like(mask)
    for k in range(mask.shape[2]):
        filled[:, :, k] = ndimage.binary_fill_holes(mask[:, :, k])
    return filled


def foreground_mask(image: np.ndarray, modality: Modality) -> np.ndarray:
    """The part of the image that holds the patient (head, body, radiograph field).

    Rules:
        * MR: Otsu threshold of the image smoothed with a Gaussian of ``MR_SMOOTHING_SIGMA``
          voxels, largest connected component, holes filled (ventricles, dark lesions).
        * CT: HU above ``CT_BODY_THRESHOLD_HU`` (-500), largest connected component (drops most
          of the table and the air outside), holes filled (lungs, airways, sinuses).
        * XRAY / OTHER: every pixel above the image's 1st percentile. A radiograph is anatomy from
          edge to edge; this drops only the darkest collimator border / unexposed margin.

        If a rule leaves nothing (e.g. a "CT" that is not in HU), the mask falls back to every
        pixel above the image's minimum, which is non-empty for any non-constant image.

    Args:
        image: ``(H, W)`` or ``(X, Y, Z)`` (RAS; axial slices along axis 2) in the modality's units.
        modality: the :class:`~core.types.Modality`.

    Returns:
        bool array of ``image.shape``.

    Raises:
        EmptyImageError: the image is constant (a ``ValueError``).
        NonFiniteError: the image holds NaN or infinite values (a ``ValueError``).
    """
    modality = Modality(modality)
    values = _checked_float(image)
    if modality is Modality.MR:
        smoothed = ndimage.gaussian_filter(values, MR_SMOOTHING_SIGMA)
        mask = fill_holes(largest_component(smoothed > threshold_otsu(smoothed.ravel())))
    elif modality is Modality.CT:
        mask = fill_holes(largest_component(values > CT_BODY_THRESHOLD_HU))
    else:
        mask = values > np.percentile(values, XRAY_BACKGROUND_PERCENTILE)
    if not mask.any():
        mask = values > values.min()
    return mask


def normalize_intensity(
    image: np.ndarray,
    modality: Modality,
    *,
    window: Window | None = None,
    foreground: np.ndarray | None = None,
    percentiles: tuple[float, float] | None = None,
) -> np.ndarray:
    """Map intensities linearly to [0, 1] (clipped), the way the detectors were trained.

    Rules:
        * CT: the HU ``window`` (default ``CT_WINDOWS[CTWindow.BRAIN]``): ``low`` -> 0, ``high`` -> 1.
        * MR: ``lo, hi`` = ``percentiles`` (default (1, 99)) of the voxels *inside* ``foreground``
          (default :func:`foreground_mask`), then ``(x - lo) / (hi - lo)``. The same map is applied
          to the background rather than zeroing it: for skull-stripped data it is already about
          0, and for data with a skull any residual signal stays visible to the detectors.
        * XRAY / OTHER: ``percentiles`` (default (0.5, 99.5)) of the whole image, or of
          ``foreground`` if one is given.
        * A ``window`` given for any modality is applied as is (``foreground`` and
          ``percentiles`` are then ignored), e.g. a window stored in a radiograph's DICOM file.

        For a 3-D volume the statistics come from the whole volume, so a tissue gets the same
        value on every slice and slice-to-slice differences are kept.

    Args:
        image: ``(H, W)`` or ``(X, Y, Z)`` in the modality's own units (HU for CT).
        modality: the :class:`~core.types.Modality`.
        window: a linear window to use instead of percentiles.
        foreground: bool mask of ``image.shape`` where percentiles are measured.
        percentiles: ``(low, high)`` percentiles in [0, 100], ``low < high``.

    Returns:
        float32 array of ``image.shape`` in [0, 1].

    Raises:
        EmptyImageError: the image is constant, or the percentiles coincide (no contrast).
        NonFiniteError: the image holds NaN or infinite values.
        ValueError: a bad window, percentile pair or foreground mask.
    """
    modality = Modality(modality)
    values = _checked_float(image)
    if window is None and modality is Modality.CT:
        window = CT_WINDOWS[CTWindow.BRAIN]
    if window is not None:
        if not window.width > 0:
            raise ValueError(f"window width must be positive, got {window.width}")
        low, high = float(window.low), float(window.high)
    else:
        p_low, p_high = DEFAULT_PERCENTILES[modality] if percentiles is None else percentiles
        if not 0.0 <= p_low < p_high <= 100.0:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {(p_low, p_high)}")
        if foreground is None and modality is Modality.MR:
            foreground = foreground_mask(values, modality)
        if foreground is None:
            sample, where = values, "image"
        else:
            foreground = np.asarray(foreground, dtype=bool)
            if foreground.shape != values.shape:
                raise ValueError(f"foreground shape {foreground.shape} != image shape {values.shape}")
            if not foreground.any():
                raise ValueError("the foreground mask is empty: no pixels to measure percentiles in")
            sample, where = values[foreground], "foreground"
        low, high = (float(v) for v in np.percentile(sample, (p_low, p_high)))
        if not high > low:
            raise EmptyImageError(
                f"the {p_low:g}th and {p_high:g}th percentiles of the {where} are both {low:g}: "
                "there is no contrast to normalise"
            )
    # Python floats keep the arithmetic in float32 (NumPy 2 promotion rules).
    out = (values - low) / (high - low)
    return np.clip(out, 0.0, 1.0, out=out).astype(np.float32, copy=False)


def normalize_volume(volume: Volume, **kwargs) -> Volume:
    """The same :class:`~core.types.Volume` with intensities from :func:`normalize_intensity`.

    Args:
        volume: any volume; its ``modality`` picks the rule.
        **kwargs: ``window``, ``foreground``, ``percentiles`` as in :func:`normalize_intensity`.

    Returns:
        a copy whose ``array`` is float32 in [0, 1] and whose display ``window`` spans [0, 1]
        (the file's window was in the old units and would no longer mean anything).
    """
    normalised = normalize_intensity(volume.array, volume.modality, **kwargs)
    return volume.with_array(normalised, window=Window(0.5, 1.0, "Normalised"))


def normalise_for_models(volume: Volume, modality: Modality | None = None, window: Window | None = None) -> Volume:
    """Intensities in [0, 1] the way the reference slices were made, for the models of a profile.

    * A picture (PNG/JPEG, modality OT, 2-D) is divided by its maximum: a generative model writes
      full-range pictures, and SAFEGEN's own 16-bit benchmark PNGs come back exactly.
    * A scan of the profile's ``modality`` with a profile ``window`` (CT: its HU window) gets that window.
    * Anything else follows :func:`normalize_volume` (MR: 1st-99th percentile of the tissue over
      the whole volume, as the reference set; CT: brain window).

    Args:
        volume: the scan or image as loaded.
        modality: the profile's modality (:attr:`core.profiles.Profile.modality`); None: no profile.
        window: the profile's HU window (CT), or None (MR: robust percentiles).
    """
    if volume.modality is Modality.OTHER and not volume.is_3d:
        peak = float(np.max(volume.array))
        if peak > 0 and float(np.min(volume.array)) >= 0:
            return normalize_volume(volume, window=Window(peak / 2.0, peak))
    if window is not None and volume.modality is modality:
        return normalize_volume(volume, window=window)
    return normalize_volume(volume)


# ---------------------------------------------------------------------------------------------
# The model grid
# ---------------------------------------------------------------------------------------------

GRID_SIZE = 128  # side of the square grid every slice model (SAFEGEN's detectors, the baselines) sees


@dataclass(frozen=True)
class GridTransform:
    """How one 2-D slice was put on the model grid, so maps can be put back on its pixels.

    Attributes:
        original_shape: ``(H, W)`` of the slice.
        padded_side: ``max(H, W)``, the side of the square the slice was padded to.
        pad_before: rows added on top, columns added on the left (the rest went below / right).
        size: side of the model grid.
    """

    original_shape: tuple[int, int]
    padded_side: int
    pad_before: tuple[int, int]
    size: int

    @classmethod
    def for_shape(cls, shape: tuple[int, int], size: int) -> "GridTransform":
        """The transform that pads ``shape`` symmetrically to a square (the odd pixel goes after)."""
        if len(shape) != 2 or min(shape) < 1:
            raise ValueError(f"expected a non-empty 2-D shape, got {shape}")
        if size < 1:
            raise ValueError(f"grid size must be positive, got {size}")
        h, w = (int(n) for n in shape)
        side = max(h, w)
        return cls((h, w), side, ((side - h) // 2, (side - w) // 2), int(size))

    @property
    def scale(self) -> float:
        """Slice pixels per grid pixel."""
        return self.padded_side / self.size

    def to_grid_coords(self, points: np.ndarray) -> np.ndarray:
        """Slice ``(row, col)`` coordinates (pixel centres at integers) to grid coordinates.

        Args:
            points: ``(..., 2)`` rows and columns on the slice.

        Returns:
            ``(..., 2)`` float rows and columns on the grid.
        """
        padded = np.asarray(points, dtype=float) + np.asarray(self.pad_before, dtype=float)
        return (padded + 0.5) / self.scale - 0.5

    def from_grid_coords(self, points: np.ndarray) -> np.ndarray:
        """Exact inverse of :meth:`to_grid_coords`: grid ``(row, col)`` to slice ``(row, col)``."""
        padded = (np.asarray(points, dtype=float) + 0.5) * self.scale - 0.5
        return padded - np.asarray(self.pad_before, dtype=float)


def _resample_dtype(dtype: np.dtype, order: int) -> np.dtype:
    """Nearest neighbour keeps bool and integer labels; interpolation works in float32."""
    if order == 0 and (dtype == bool or np.issubdtype(dtype, np.integer)):
        return dtype
    return np.dtype(np.float32)


def _resize_square(image: np.ndarray, side: int, order: int) -> np.ndarray:
    """Resize a square ``image`` to ``(side, side)`` with the module's one convention.

    Anti-aliasing only when shrinking with interpolation (never for nearest-neighbour labels);
    the same shape returns an exact copy.
    """
    if order not in (0, 1):
        raise ValueError(f"order must be 0 (nearest) or 1 (bilinear), got {order}")
    if image.shape == (side, side):
        return image.copy()
    out = resize(
        image,
        (side, side),
        order=order,
        mode="edge",
        preserve_range=True,
        anti_aliasing=order > 0 and side < image.shape[0],
    )
    return out.astype(image.dtype, copy=False)


def to_model_grid(
    image2d: np.ndarray, size: int = GRID_SIZE, *, pad_value: float = 0.0, order: int = 1
) -> tuple[np.ndarray, GridTransform]:
    """Pad a slice symmetrically to a square, then resize it to the ``(size, size)`` model grid.

    Args:
        image2d: ``(H, W)`` display slice (normalised intensities, a mask or a label map).
        size: side of the model grid.
        pad_value: value of the added rows/columns (0 = background of normalised images).
        order: 1 bilinear (anti-aliased when shrinking), 0 nearest neighbour (masks, labels).

    Returns:
        ``(size, size)`` grid image, float32 (bool / integer kept with ``order=0``), and the
        :class:`GridTransform` that :func:`from_model_grid` needs. An ``(size, size)`` slice is
        returned unchanged (apart from the float32 cast).
    """
    image = np.asarray(image2d)
    if image.ndim != 2:
        raise ValueError(f"to_model_grid takes one 2-D slice, got shape {image.shape}")
    transform = GridTransform.for_shape(image.shape, size)
    image = image.astype(_resample_dtype(image.dtype, order), copy=False)
    (h, w), side, (top, left) = transform.original_shape, transform.padded_side, transform.pad_before
    padded = np.pad(image, ((top, side - h - top), (left, side - w - left)), constant_values=pad_value)
    return _resize_square(padded, size, order), transform


def from_model_grid(grid_map: np.ndarray, transform: GridTransform, *, order: int = 1) -> np.ndarray:
    """Put a map computed on the model grid back on the slice's pixels.

    Resizes ``(size, size)`` to ``(padded_side, padded_side)`` with the same convention as
    :func:`to_model_grid`, then crops the padding away.

    Args:
        grid_map: ``(size, size)`` map on the grid.
        transform: the :class:`GridTransform` returned by :func:`to_model_grid` for that slice.
        order: 1 bilinear for continuous maps; 0 nearest for labels (for binary masks prefer
            :func:`mask_from_model_grid`).

    Returns:
        ``transform.original_shape`` array, float32 (bool / integer kept with ``order=0``).
        When the slice already was ``(size, size)`` this is ``grid_map`` itself (a copy).
    """
    grid = np.asarray(grid_map)
    if grid.shape != (transform.size, transform.size):
        raise ValueError(f"grid map shape {grid.shape} != model grid {(transform.size, transform.size)}")
    grid = grid.astype(_resample_dtype(grid.dtype, order), copy=False)
    padded = _resize_square(grid, transform.padded_side, order)
    (h, w), (top, left) = transform.original_shape, transform.pad_before
    return np.ascontiguousarray(padded[top : top + h, left : left + w])


def mask_from_model_grid(grid_mask: np.ndarray, transform: GridTransform, threshold: float = 0.5) -> np.ndarray:
    """Put a (binary or soft) mask from the grid back on the slice's pixels.

    The mask is resized as a soft map (bilinear) and thresholded at ``threshold``: on a
    symmetric interpolation the 0.5 level sits on the true edge, so boundaries come back within
    a fraction of a pixel instead of in nearest-neighbour blocks of ``transform.scale`` pixels.

    Args:
        grid_mask: ``(size, size)`` bool mask or probabilities in [0, 1].
        transform: the slice's :class:`GridTransform`.
        threshold: level above which (inclusive) a pixel is in the mask.

    Returns:
        bool array of ``transform.original_shape``.
    """
    soft = from_model_grid(np.asarray(grid_mask, dtype=np.float32), transform, order=1)
    return soft >= threshold


def to_model_batch(volume: Volume, size: int = GRID_SIZE, *, pad_value: float = 0.0) -> tuple[np.ndarray, list[GridTransform]]:
    """Every display slice of a volume on the model grid, as one detector batch.

    Args:
        volume: a (normalised) 2-D image or 3-D RAS volume.
        size: side of the model grid.
        pad_value: value of the padding (0 = background of normalised images).

    Returns:
        ``(S, 1, size, size)`` float32 with ``S = volume.n_slices`` (1 for a 2-D image), and one
        :class:`GridTransform` per slice for :func:`maps_to_volume`.
    """
    grids, transforms = [], []
    for k in range(volume.n_slices):
        grid, transform = to_model_grid(volume.display_slice(k), size, pad_value=pad_value)
        grids.append(grid)
        transforms.append(transform)
    return np.stack(grids)[:, None].astype(np.float32, copy=False), transforms


def maps_to_volume(
    maps: np.ndarray, transforms: list[GridTransform], volume: Volume, *, as_mask: bool = False
) -> np.ndarray:
    """Per-slice maps on the model grid back into the volume's own array layout.

    Args:
        maps: ``(S, size, size)`` (or ``(S, 1, size, size)``) grid maps, slice ``k`` computed
            from ``to_model_batch(volume)[0][k]``.
        transforms: the transforms returned by :func:`to_model_batch` for ``volume``.
        volume: the volume the batch came from.
        as_mask: treat the maps as masks / probabilities: put each back with
            :func:`mask_from_model_grid` (bool result) instead of :func:`from_model_grid`.

    Returns:
        array of ``volume.array.shape`` (float32, or bool with ``as_mask``): for a 3-D volume map
        voxel ``[x, y, z]`` belongs to voxel ``[x, y, z]`` of ``volume.array``.
    """
    maps = np.asarray(maps)
    if maps.ndim == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if not len(maps) == len(transforms) == volume.n_slices:
        raise ValueError(
            f"{len(maps)} maps and {len(transforms)} transforms for a volume of {volume.n_slices} slices"
        )
    back = mask_from_model_grid if as_mask else from_model_grid
    return volume.stack_display_slices([back(m, t) for m, t in zip(maps, transforms, strict=True)])


# ---------------------------------------------------------------------------------------------
# The segmentation head's normalisation: robust, and keeping the bright tail
# ---------------------------------------------------------------------------------------------

# Values above the tissue's 99th percentile are kept up to this many times it: a hyperintense
# lesion (or a hallucinated bright blob) must stay brighter than white matter, not be clipped to it.
TAIL_MAX = 3.0


def robust_scale(image: np.ndarray, modality: Modality = Modality.MR, *,
                 foreground: np.ndarray | None = None) -> tuple[float, float]:
    """``(low, high)`` of :func:`robust_normalize`: the image's 0.5th percentile (the background
    level, noise included) and the 99th percentile of the foreground (:func:`foreground_mask`)."""
    values = _checked_float(image)
    foreground = foreground_mask(values, modality) if foreground is None else np.asarray(foreground, dtype=bool)
    if foreground.shape != values.shape or not foreground.any():
        raise ValueError("the foreground mask must have the image's shape and hold at least one pixel")
    low = float(np.percentile(values, 0.5))
    high = float(np.percentile(values[foreground], 99.0))
    if not high > low:
        raise EmptyImageError("the tissue is no brighter than the background: there is no contrast to normalise")
    return low, high


def robust_normalize(image: np.ndarray, modality: Modality = Modality.MR, *,
                     scale: tuple[float, float] | None = None) -> np.ndarray:
    """``(x - low) / (high - low)`` clipped to ``[0, TAIL_MAX]`` (:func:`robust_scale`).

    Unlike :func:`normalize_intensity` this does not clip at the 99th percentile, so a region
    brighter than any normal tissue keeps its contrast. For a 3-D volume pass the whole volume
    (one scale for every slice).

    Args:
        image: ``(H, W)`` or ``(X, Y, Z)`` in the file's units.
        modality: picks the foreground rule.
        scale: a ``(low, high)`` measured elsewhere (e.g. on the whole volume) instead.

    Returns:
        float32 of ``image.shape``; tissue in about [0, 1].
    """
    low, high = robust_scale(image, modality) if scale is None else scale
    out = (np.asarray(image, dtype=np.float32) - low) / (high - low)
    return np.clip(out, 0.0, TAIL_MAX, out=out).astype(np.float32, copy=False)
