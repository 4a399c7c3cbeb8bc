"""Data types shared by every part of SAFEGEN.

A file becomes a :class:`Volume`; a scorer (:class:`ScanScorer`) makes a :class:`ScanResult` of it
(:func:`result_from_slice_maps`); the UI and the database read results.

Orientation convention
----------------------
* 3-D volumes are stored in nibabel's closest-canonical **RAS+** voxel order: axis 0 runs from the
  patient's left to right, axis 1 from posterior to anterior, axis 2 from inferior to superior.
  ``array[:, :, k]`` is therefore the k-th axial slice, and ``affine`` maps voxel indices to
  RAS millimetres exactly as in NIfTI.
* 2-D images (PNG, JPEG, a single DICOM slice) are stored as ``(rows, columns)`` exactly as the
  file shows them.
* A *display slice* is what a reader sees: rows top to bottom, columns left to right, in the
  radiological convention (anterior at the top, the patient's right on the screen's left).
  :func:`to_display` / :func:`from_display` convert an axial RAS slice to and from that view, and
  they are exact inverses, so a map computed on a display slice lands on the right voxels.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from core.masks import MaskSummary, summarise_mask, unsafe_mask


class Modality(StrEnum):
    """Imaging modality. Values follow the DICOM ``Modality`` tag where one exists."""

    MR = "MR"
    CT = "CT"
    XRAY = "XR"  # DICOM CR / DX / RF / MG map here
    OTHER = "OT"


@dataclass(frozen=True)
class Window:
    """A display window (level ``center`` and ``width``) in the image's own intensity units."""

    center: float
    width: float
    name: str = ""

    @property
    def low(self) -> float:
        return self.center - self.width / 2.0

    @property
    def high(self) -> float:
        return self.center + self.width / 2.0


PLANE_AXIS = {"sagittal": 0, "coronal": 1, "axial": 2}  # the RAS array axis each plane cuts across


def to_display(axial_ras: np.ndarray) -> np.ndarray:
    """Turn an axial RAS slice ``(X, Y)`` into a radiological display slice ``(Y, X)``.

    Row 0 is the most anterior row; column 0 is the patient's right-most column.
    """
    return axial_ras[::-1, ::-1].T


def from_display(display: np.ndarray) -> np.ndarray:
    """Exact inverse of :func:`to_display`: ``(Y, X)`` display slice back to an axial RAS ``(X, Y)``."""
    return display.T[::-1, ::-1]


@dataclass
class Volume:
    """An image as SAFEGEN sees it.

    Attributes:
        array: float32 intensities in the modality's own units (HU for CT). Shape ``(H, W)`` for a
            2-D image or ``(X, Y, Z)`` in RAS+ voxel order for a 3-D volume.
        spacing: voxel size in mm, one value per array axis.
        affine: 4x4 voxel-to-world (RAS mm) matrix. For 2-D images a diagonal matrix from spacing.
        modality: the :class:`Modality`.
        source: the file or folder it was read from ("" for in-memory data).
        window: a display window suggested by the file (DICOM WindowCenter/Width), if any.
        warnings: things the loader changed that a user should know (e.g. RGB converted to gray).
        description: free text for the UI (series description, template name ...).
        body_part: the body part the file names (DICOM ``BodyPartExamined``), "" when it names none.
        spacing_known: False when the file gives no pixel size and 1 mm was assumed (PNG, JPEG, some DICOM).
    """

    array: np.ndarray
    spacing: tuple[float, ...]
    affine: np.ndarray
    modality: Modality = Modality.OTHER
    source: str = ""
    window: Window | None = None
    warnings: list[str] = field(default_factory=list)
    description: str = ""
    body_part: str = ""
    spacing_known: bool = True

    def __post_init__(self) -> None:
        if self.array.ndim not in (2, 3):
            raise ValueError(f"Volume.array must be 2-D or 3-D, got shape {self.array.shape}")
        if len(self.spacing) != self.array.ndim:
            raise ValueError(f"spacing {self.spacing} does not match array shape {self.array.shape}")
        if self.affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got {self.affine.shape}")

    @property
    def is_3d(self) -> bool:
        return self.array.ndim == 3

    @property
    def n_slices(self) -> int:
        """Number of axial display slices (1 for a 2-D image)."""
        return self.array.shape[2] if self.is_3d else 1

    @property
    def name(self) -> str:
        return Path(self.source).name if self.source else (self.description or "in-memory image")

    def display_slice(self, index: int) -> np.ndarray:
        """The ``index``-th axial slice in display orientation (see module docstring)."""
        if not self.is_3d:
            if index != 0:
                raise IndexError(f"a 2-D image has one slice, asked for slice {index}")
            return self.array
        if not 0 <= index < self.n_slices:
            raise IndexError(f"slice {index} outside 0..{self.n_slices - 1}")
        return to_display(self.array[:, :, index])

    def display_slice_of(self, array: np.ndarray, index: int) -> np.ndarray:
        """The ``index``-th display slice of ``array``, a map on this volume's grid (a heatmap, a mask)."""
        return self.with_array(np.asarray(array)).display_slice(index)

    def display_slices_of(self, array: np.ndarray) -> np.ndarray:
        """Every display slice of ``array`` (on this volume's grid), stacked: ``(n_slices, rows, columns)``."""
        shown = self.with_array(np.asarray(array))
        return np.stack([shown.display_slice(i) for i in range(self.n_slices)])

    def plane_count(self, plane: str) -> int:
        """Number of display slices of a 3-D volume in ``plane`` ("axial", "coronal" or "sagittal")."""
        return self.array.shape[PLANE_AXIS[plane]]

    def plane_slice_of(self, array: np.ndarray, plane: str, index: int) -> np.ndarray:
        """Display slice ``index`` of ``array`` (this volume's grid) in ``plane``, radiological view.

        * axial: as :meth:`display_slice` (anterior at the top, the patient's right on the left);
        * coronal (index along posterior -> anterior): superior at the top, the patient's right on the left;
        * sagittal (index along left -> right): superior at the top, anterior on the left.
        """
        if not self.is_3d:
            raise ValueError("only 3-D volumes have coronal and sagittal views")
        if plane == "axial":
            return self.with_array(np.asarray(array)).display_slice(index)
        axis = PLANE_AXIS[plane]
        if not 0 <= index < array.shape[axis]:
            raise IndexError(f"{plane} slice {index} outside 0..{array.shape[axis] - 1}")
        cut = np.take(np.asarray(array), index, axis=axis)  # (X, Z) coronal, (Y, Z) sagittal
        return cut.T[::-1, ::-1]

    def plane_spacing(self, plane: str) -> tuple[float, float]:
        """Pixel size (row, column) in mm of a display slice in ``plane``."""
        if plane == "axial":
            return self.display_spacing()
        x, y, z = (float(v) for v in self.spacing)
        return (z, x) if plane == "coronal" else (z, y)

    def display_spacing(self) -> tuple[float, float]:
        """Pixel size (row, column) in mm of a display slice."""
        if not self.is_3d:
            return float(self.spacing[0]), float(self.spacing[1])
        return float(self.spacing[1]), float(self.spacing[0])

    def stack_display_slices(self, slices: list[np.ndarray] | np.ndarray) -> np.ndarray:
        """Put per-slice display maps back into this volume's array layout (for export / 3-D views).

        Args:
            slices: ``n_slices`` arrays of the display-slice shape.

        Returns:
            an array with the same shape as :attr:`array`.
        """
        if not self.is_3d:
            (only,) = slices
            return np.asarray(only)
        return np.stack([from_display(np.asarray(s)) for s in slices], axis=2)

    def with_pixel_size(self, mm: float) -> "Volume":
        """This 2-D image read at ``mm`` millimetres per pixel, for a file that states no pixel size
        (:attr:`spacing_known` False: PNG, JPEG, a DICOM without PixelSpacing, read at 1 mm).

        A generator's slices are often a whole brain in 128 px (the reference grid's pixels are about
        1.8 mm): read at 1 mm that is a smaller brain than any the head saw in training.

        Raises:
            ValueError: the image states its own pixel size, is 3-D (which axes are in-plane is not
                known without one), or ``mm`` is not a size from 0.05 to 20 mm.
        """
        if self.spacing_known:
            raise ValueError(f"{self.name} states its pixel size ({' x '.join(f'{s:g}' for s in self.spacing)} mm)")
        if self.is_3d:
            raise ValueError(f"{self.name} is a volume without a pixel size; a pixel size applies to 2-D images")
        check_pixel_size(mm)
        note = f"{self.name} states no pixel size: read at {mm:g} mm per pixel, as asked"
        return replace(self, spacing=(float(mm), float(mm)), affine=np.diag([float(mm), float(mm), 1.0, 1.0]),
                       warnings=[*self.warnings, note], spacing_known=True)

    def with_array(self, array: np.ndarray, **changes) -> "Volume":
        """A copy with a new array of the same shape (e.g. a normalised or corrupted version)."""
        if array.shape != self.array.shape:
            raise ValueError(f"new array shape {array.shape} != {self.array.shape}")
        return replace(self, array=array, warnings=list(self.warnings), **changes)


PIXEL_MM_RANGE = (0.05, 20.0)  # the pixel sizes (mm) an image can have, from microscopy-fine to a thick slab


def check_pixel_size(mm: float) -> float:
    """``mm`` as a float when it is a pixel size an image can have (:data:`PIXEL_MM_RANGE`).

    Raises:
        ValueError: it is not a finite size in that range; the message says which sizes are.
    """
    low, high = PIXEL_MM_RANGE
    mm = float(mm)
    if not (np.isfinite(mm) and low <= mm <= high):
        raise ValueError(f"a pixel size of {mm:g} mm is not one an image has ({low:g} to {high:g} mm)")
    return mm


OUT_OF_DOMAIN = "Out of domain: "  # the start of core.domain's metadata and field-of-view warnings: no verdict
UNLIKE_TRAINING = "Unlike the training slices: "  # the start of core.domain's appearance warning: read with care
SAFEGEN_METHOD = "safegen"  # the method name of SAFEGEN's own detector (a baseline's is its ``--method`` name)


def slices_above(slice_scores: np.ndarray, tau: float) -> np.ndarray:
    """Bool per display slice: its score is above ``tau`` (an unscored slice, NaN, never is)."""
    return np.nan_to_num(slice_scores, nan=-np.inf) > tau


@dataclass
class ScanResult:
    """One scored scan (2-D image or 3-D volume), in the scan's own array layout.

    Every scorer (:class:`ScanScorer`) makes it with :func:`result_from_slice_maps`.

    Attributes:
        source: file the scan came from.
        score: the scan's score (its worst slice's); higher = more likely unsafe.
        score_diffusion / score_autoencoder: each component's calibrated score on that worst slice;
            None where the method has no such components (only SAFEGEN's seed scorer,
            :class:`core.scoring.Scorer`, has them).
        p_value: conformal p-value of ``score`` against clean calibration slices.
        flag: ``score > tau``.
        heatmap: the explainer's map on the score's calibrated scale (the method's own map for the
            ``residual`` explainer), ``volume.array.shape``, float32 (0 on unscored slices).
        mask: :func:`core.masks.unsafe_mask` of the heatmap at tau, ``volume.array.shape``, uint8.
        slice_scores: float per display slice, NaN where the slice was not scored. Which slices are
            scored is the scorer's ``slices_to_score(volume)`` (a bool mask, ``np.isfinite`` of this);
            the ``score`` command's ``scored_slices`` column is their count.
        worst_slice: display-slice index of ``score``.
        alpha: the seed scorer's weight of the diffusion map; None for every other method.
        tau: the threshold used.
        seconds: wall time per stage.
        warnings: what a user should know (out-of-domain modality, unscored slices ...).
        explainer: which explainer made ``heatmap`` (see :mod:`core.explain`).
        reconstruction: the autoencoder's pseudo-normal version of the scan in normalised [0, 1]
            intensities, the scan's shape (0 on unscored slices); None for results made without it.
        spacing: voxel size in mm of the scan, for areas and volumes.
        method: which detector scored it: :data:`SAFEGEN_METHOD`, or a baseline's ``--method`` name
            (:mod:`core.baselines`; an image-level baseline's heatmap and mask are all zero).
        pixel_maps: False for an image-level method: no heatmap, and every mask is empty.
        profile: the modality profile whose models scored it (:mod:`core.profiles`).
        head: True when the segmentation head scored it (:mod:`core.head_scoring`): ``tau`` and the
            heatmap are anomaly probabilities.
        explained_slices: the display slices whose heatmap is ``explainer``'s while an explainer is still
            running (or was stopped) on a volume; the others show the residual map. None: every slice
            (:meth:`core.head_scoring.HeadScorer.explained_from`).
    """

    source: str
    score: float
    score_diffusion: float | None
    score_autoencoder: float | None
    p_value: float
    flag: bool
    heatmap: np.ndarray
    mask: np.ndarray
    slice_scores: np.ndarray
    worst_slice: int
    alpha: float | None
    tau: float
    seconds: dict[str, float]
    warnings: list[str] = field(default_factory=list)
    explainer: str = "residual"
    spacing: tuple[float, ...] = (1.0, 1.0, 1.0)
    reconstruction: np.ndarray | None = None
    method: str = SAFEGEN_METHOD
    pixel_maps: bool = True
    profile: str = "mri_t1"
    head: bool = False
    explained_slices: tuple[int, ...] | None = None

    @property
    def out_of_domain(self) -> list[str]:
        """The warnings that say the scan is not what the models were made for (:mod:`core.domain`)."""
        return [w for w in self.warnings if w.startswith(OUT_OF_DOMAIN)]

    @property
    def unlike_training(self) -> list[str]:
        """The appearance check's warning (:class:`core.domain.AppearanceModel`), if it spoke."""
        return [w for w in self.warnings if w.startswith(UNLIKE_TRAINING)]

    @property
    def flagged_slices(self) -> np.ndarray:
        return np.flatnonzero(self.flags_at(self.tau))

    def flags_at(self, tau: float) -> np.ndarray:
        """Bool per display slice: its score is above ``tau`` (unscored slices never are)."""
        return slices_above(self.slice_scores, tau)

    def mask_at(self, tau: float) -> np.ndarray:
        """The unsafe-region mask at another tolerance, without re-running a model.

        :func:`core.masks.unsafe_mask` of the heatmap on the slices whose score is above ``tau``
        (as :attr:`mask` at ``self.tau``, up to the grid-to-scan resampling of that mask), uint8,
        the scan's shape.
        """
        return unsafe_mask(self.heatmap, tau, self.mask_flags_at(tau))

    def mask_flags_at(self, tau: float) -> np.ndarray:
        """Bool per display slice: its mask may hold pixels at ``tau`` (flagged, and the method has pixel maps)."""
        return self.flags_at(tau) if self.pixel_maps else np.zeros(len(self.slice_scores), dtype=bool)

    @property
    def detector(self) -> str:
        """One line on what made the score, for captions and summaries."""
        if self.method != SAFEGEN_METHOD:
            return f"baseline {self.method} (its own map and threshold; README, Baselines side by side)"
        if self.head:
            return ("SAFEGEN segmentation head: per-pixel anomaly probability from the slice and its E_AE and "
                    "S_diffusion reconstructions")
        return (f"SAFEGEN: S_diffusion {self.score_diffusion:.2f} · E_AE {self.score_autoencoder:.2f} · "
                f"α = {self.alpha:.2f} · heatmap: {self.explainer}")

    def summary_at(self, tau: float | None = None) -> MaskSummary:
        """Unsafe area per slice, regions and total area / volume of the mask at ``tau`` (default: ``self.tau``)."""
        mask = self.mask if tau is None else self.mask_at(tau)
        return summarise_mask(mask, self.spacing)


ToScan = Callable[[np.ndarray, bool], np.ndarray]
"""``to_scan(maps, as_mask)``: ``(N, H, W)`` maps, one per display slice on a scorer's own grid, put
back into the scan's array layout (``as_mask``: the maps are 0/1 masks, resample them as masks)."""


def maps_on_scan(slice_maps: np.ndarray, tau: float, mask_flags: np.ndarray, to_scan: ToScan
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The scan's float32 heatmap and uint8 unsafe-region mask from per-slice maps on a scorer's grid.

    The mask is :func:`core.masks.unsafe_mask` of ``slice_maps`` at ``tau`` on the slices of
    ``mask_flags``, made on the scorer's grid (where the map was made) and then put back as a mask.

    Args:
        slice_maps: ``(N, H, W)`` one map per display slice, 0 on unscored slices.
        tau: the threshold, the maps' units.
        mask_flags: bool per display slice: the slices whose mask may hold pixels.
        to_scan: the scorer's way back onto the scan (:data:`ToScan`).
    """
    grid_mask = unsafe_mask(np.moveaxis(slice_maps, 0, -1), tau, mask_flags)
    heatmap = to_scan(slice_maps, False).astype(np.float32, copy=False)
    mask = to_scan(np.moveaxis(grid_mask, -1, 0).astype(np.float32), True).astype(np.uint8, copy=False)
    return heatmap, mask


def result_from_slice_maps(
    volume: Volume,
    slice_scores: np.ndarray,
    slice_maps: np.ndarray,
    tau: float,
    to_scan: ToScan,
    p_value: Callable[[float], float],
    *,
    method: str,
    seconds: dict[str, float],
    start: float,
    warnings: list[str],
    explainer: str = "residual",
    pixel_maps: bool = True,
    reconstruction_maps: np.ndarray | None = None,
    profile: str = "mri_t1",
    head: bool = False,
) -> ScanResult:
    """The :class:`ScanResult` of a scan from its slice scores and per-slice maps: the one tail of
    every scorer's ``score_volume``.

    The scan's score is its worst slice's; a slice is flagged when its score is above ``tau``; the
    heatmap and mask come from :func:`maps_on_scan` (no mask for a method without pixel maps). The
    SAFEGEN-only numbers (``score_diffusion``, ``score_autoencoder``, ``alpha``) stay None: the seed
    scorer sets them with :func:`dataclasses.replace`.

    Args:
        volume: the scan.
        slice_scores: ``(N,)`` float per display slice, NaN where not scored (at least one is scored).
        slice_maps: ``(N, H, W)`` the map to show per display slice on the scorer's grid (0 where not scored).
        tau: the threshold of the slice scores and of the maps.
        to_scan: the scorer's way from its grid back onto the scan (:data:`ToScan`).
        p_value: the p-value of a slice score (the worst slice's is the scan's).
        method: :data:`SAFEGEN_METHOD` or the baseline's name.
        seconds: the stages timed so far; ``map_back`` (added to) and ``total`` are set here.
        start: ``time.perf_counter()`` when scoring began.
        warnings, explainer, pixel_maps, profile, head: as in :class:`ScanResult`.
        reconstruction_maps: ``(N, H, W)`` pseudo-normal slices on the same grid, or None.
    """
    flags = slices_above(slice_scores, tau)
    t0 = time.perf_counter()
    heatmap, mask = maps_on_scan(slice_maps, tau, flags if pixel_maps else np.zeros_like(flags), to_scan)
    reconstruction = None
    if reconstruction_maps is not None:
        reconstruction = to_scan(reconstruction_maps, False).astype(np.float32, copy=False)
    seconds["map_back"] = seconds.get("map_back", 0.0) + time.perf_counter() - t0
    worst = int(np.nanargmax(slice_scores))
    seconds["total"] = time.perf_counter() - start
    return ScanResult(
        source=volume.source, score=float(slice_scores[worst]), score_diffusion=None, score_autoencoder=None,
        p_value=float(p_value(slice_scores[worst])), flag=bool(flags.any()), heatmap=heatmap, mask=mask,
        slice_scores=slice_scores, worst_slice=worst, alpha=None, tau=float(tau), seconds=seconds,
        warnings=warnings, explainer=explainer, spacing=tuple(float(s) for s in volume.spacing),
        reconstruction=reconstruction, method=method, pixel_maps=pixel_maps, profile=profile, head=head,
    )


@runtime_checkable
class ScanScorer(Protocol):
    """What scores scans: SAFEGEN's segmentation head (:class:`core.head_scoring.HeadScorer`), its seed
    reconstruction scorer (:class:`core.scoring.Scorer`) and every baseline
    (:class:`core.baselines.scorer.BaselineScorer`).

    Attributes:
        name: the ``method`` of its results: :data:`SAFEGEN_METHOD`, or the baseline's name.
        tau: its threshold (of a 2-D image; the head's threshold of a volume depends on its slices).
        calibration_scores: slice scores of the clean calibration slices its tau and p-values count
            against (the batch page's histogram reference).
    """

    name: str
    tau: float

    @property
    def calibration_scores(self) -> np.ndarray: ...

    def slices_to_score(self, volume: Volume) -> np.ndarray:
        """Bool per display slice: the slices it scores (enough tissue to compare with the reference)."""
        ...

    def score_volume(self, volume: Volume, *, explainer=None, progress=None) -> ScanResult:
        """Score every slice of ``volume``; ``progress`` is called with the number of slices done."""
        ...
