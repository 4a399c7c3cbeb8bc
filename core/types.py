"""Data types shared by every part of SAFEGEN.

A file becomes a :class:`Volume`; everything downstream reads volumes.

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

from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path

import numpy as np


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
    """

    array: np.ndarray
    spacing: tuple[float, ...]
    affine: np.ndarray
    modality: Modality = Modality.OTHER
    source: str = ""
    window: Window | None = None
    warnings: list[str] = field(default_factory=list)
    description: str = ""

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

    def with_array(self, array: np.ndarray, **changes) -> "Volume":
        """A copy with a new array of the same shape (e.g. a normalised or corrupted version)."""
        if array.shape != self.array.shape:
            raise ValueError(f"new array shape {array.shape} != {self.array.shape}")
        return replace(self, array=array, warnings=list(self.warnings), **changes)
