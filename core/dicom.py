"""DICOM as archives hold it, for :mod:`core.io`: compressed transfer syntaxes and enhanced images.

* Compressed pixel data (JPEG, JPEG-LS, JPEG 2000, RLE) are decoded by pydicom's pixel-data plugins,
  pinned in ``requirements.txt``. :func:`check_decodable` refuses, before decoding, a transfer
  syntax that no installed plugin decodes, naming it and what to install (or how to convert it).
* Enhanced (multi-frame) images keep their geometry, rescale and window in functional groups, per
  frame or shared by all frames, instead of the top-level attributes of classic images.
  :func:`read_frames` reads them; :func:`stack_order` and :func:`stack_affine` turn slice positions
  into a slice order and an affine, for the frames of an enhanced image and for the files of a
  classic series alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom import uid as uids
from pydicom.multival import MultiValue
from pydicom.pixels import get_decoder

from core.errors import SeriesMismatchError, UnsupportedFormatError

_LIBJPEG = "pylibjpeg and pylibjpeg-libjpeg"
_OPENJPEG = "pylibjpeg and pylibjpeg-openjpeg"
_DECODER_PACKAGES = {
    uids.JPEGBaseline8Bit: _LIBJPEG, uids.JPEGExtended12Bit: _LIBJPEG,
    uids.JPEGLossless: _LIBJPEG, uids.JPEGLosslessSV1: _LIBJPEG,
    uids.JPEGLSLossless: "pyjpegls", uids.JPEGLSNearLossless: "pyjpegls",
    uids.JPEG2000Lossless: _OPENJPEG, uids.JPEG2000: _OPENJPEG,
    uids.HTJ2KLossless: _OPENJPEG, uids.HTJ2KLosslessRPCL: _OPENJPEG, uids.HTJ2K: _OPENJPEG,
    uids.RLELossless: "pylibjpeg and pylibjpeg-rle",
}
"""The pip packages (pinned in requirements.txt) that decode each compressed transfer syntax."""


def check_decodable(ds, name: str) -> None:
    """Refuse pixel data that no installed decoder reads, before pydicom tries and fails with its own text.

    Raises:
        UnsupportedFormatError: naming the transfer syntax and what to install, or, where nothing
            installable decodes it (MPEG and other video syntaxes), how to get a readable file.
    """
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if not syntax:
        return  # pydicom guesses the encoding of files without a file meta header
    if not syntax.is_transfer_syntax:
        raise UnsupportedFormatError(f"{name} declares the transfer syntax {syntax}, which is not a DICOM transfer "
                                     "syntax, so its image cannot be decoded")
    if not syntax.is_encapsulated:
        return
    try:
        if get_decoder(syntax).is_available:
            return
    except NotImplementedError:
        pass  # pydicom has no decoder at all for this transfer syntax
    what = f"{name} is compressed as {syntax.name} (transfer syntax {syntax})"
    packages = _DECODER_PACKAGES.get(syntax)
    if packages:
        raise UnsupportedFormatError(
            f"{what}, and the decoder for it is not installed: install {packages} (pinned in requirements.txt: "
            "pip install -r requirements.txt), or convert the file to uncompressed DICOM (e.g. gdcmconv --raw)"
        )
    raise UnsupportedFormatError(
        f"{what}, which SAFEGEN cannot decode: no decoder for it can be installed. Export the images from the "
        "archive uncompressed, or as JPEG, JPEG 2000, JPEG-LS or RLE DICOM"
    )


def _floats(value) -> tuple[float, ...] | None:
    """A DICOM number or list of numbers as floats; None where absent, empty or not numeric."""
    if value is None or value == "":
        return None
    values = value if isinstance(value, (list, tuple, MultiValue)) else [value]
    try:
        return tuple(float(v) for v in values) or None
    except (TypeError, ValueError):
        return None


def _frame_item(ds, frame: int, sequence: str):
    """The item of functional group ``sequence`` for one frame: its Per-frame Functional Groups item, else the
    Shared one; None if neither holds it."""
    for groups, index in (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0)):
        items = ds.get(groups) or []
        if index < len(items) and items[index].get(sequence):
            return items[index].get(sequence)[0]
    return None


def _per_frame(ds, n_frames: int, sequence: str, keyword: str) -> list[tuple[float, ...] | None]:
    """``keyword`` of functional group ``sequence``, for every frame (None for a frame without it)."""
    items = (_frame_item(ds, k, sequence) for k in range(n_frames))
    return [None if item is None else _floats(item.get(keyword)) for item in items]


def _common(values: list, what: str, name: str):
    """The one value all frames share (None unless every frame has one); refuses frames that differ."""
    if any(v is None for v in values):
        return None
    first = np.asarray(values[0], dtype=float)
    if any(not np.allclose(np.asarray(v, dtype=float), first, atol=1e-4) for v in values[1:]):
        raise SeriesMismatchError(f"{name}: its frames differ in {what}, so they are not one stack of slices; "
                                  "SAFEGEN reads one stack at a time")
    return first


@dataclass(frozen=True)
class FrameInfo:
    """What the functional groups of an enhanced DICOM image say about its frames (None: not said).

    Attributes:
        pixel_spacing: (row, column) mm, the same for every frame (Pixel Measures).
        slice_thickness: mm (Pixel Measures).
        rescale: slopes and intercepts, one per frame (Pixel Value Transformation).
        positions: ``(frames, 3)`` Image Position (Patient) of every frame, LPS mm (Plane Position).
        orientation: Image Orientation (Patient), the same for every frame (Plane Orientation).
        window: (center, width) of the first frame (Frame VOI LUT).
    """

    pixel_spacing: tuple[float, float] | None
    slice_thickness: float | None
    rescale: tuple[np.ndarray, np.ndarray] | None
    positions: np.ndarray | None
    orientation: np.ndarray | None
    window: tuple[float, float] | None


def read_frames(ds, n_frames: int, name: str) -> FrameInfo | None:
    """The per-frame and shared functional groups of an enhanced image; None for a classic image.

    Raises:
        SeriesMismatchError: frames that differ in pixel spacing or orientation (several stacks in one file).
    """
    if "PerFrameFunctionalGroupsSequence" not in ds and "SharedFunctionalGroupsSequence" not in ds:
        return None
    spacing = _common(_per_frame(ds, n_frames, "PixelMeasuresSequence", "PixelSpacing"), "pixel spacing", name)
    thickness = _per_frame(ds, n_frames, "PixelMeasuresSequence", "SliceThickness")[0]
    orientation = _common(_per_frame(ds, n_frames, "PlaneOrientationSequence", "ImageOrientationPatient"),
                          "orientation", name)
    positions = _per_frame(ds, n_frames, "PlanePositionSequence", "ImagePositionPatient")
    slopes = _per_frame(ds, n_frames, "PixelValueTransformationSequence", "RescaleSlope")
    intercepts = _per_frame(ds, n_frames, "PixelValueTransformationSequence", "RescaleIntercept")
    rescale = None
    if any(v is not None for v in slopes + intercepts):
        default_slope, default_intercept = (_floats(ds.get(k)) for k in ("RescaleSlope", "RescaleIntercept"))
        rescale = (np.array([(s or default_slope or (1.0,))[0] for s in slopes]),
                   np.array([(i or default_intercept or (0.0,))[0] for i in intercepts]))
    center = _per_frame(ds, n_frames, "FrameVOILUTSequence", "WindowCenter")[0]
    width = _per_frame(ds, n_frames, "FrameVOILUTSequence", "WindowWidth")[0]
    valid_spacing = spacing is not None and len(spacing) == 2 and min(spacing) > 0
    return FrameInfo(
        pixel_spacing=(float(spacing[0]), float(spacing[1])) if valid_spacing else None,
        slice_thickness=thickness[0] if thickness else None,
        rescale=rescale,
        positions=None if any(p is None or len(p) != 3 for p in positions) else np.array(positions, dtype=float),
        orientation=orientation if orientation is not None and len(orientation) == 6 else None,
        window=(center[0], width[0]) if center and width and width[0] > 0 else None,
    )


def stack_order(positions: np.ndarray, orientation: np.ndarray, name: str, warnings: list[str],
                what: str = "images") -> np.ndarray:
    """The order that sorts slices along their normal, from their Image Position (Patient) ``(n, 3)``.

    Raises:
        SeriesMismatchError: two slices at the same position.
    """
    normal = np.cross(orientation[:3], orientation[3:])
    along = np.asarray(positions, dtype=float) @ normal
    order = np.argsort(along, kind="stable")
    steps = np.diff(along[order])
    if np.any(np.isclose(steps, 0.0, atol=1e-4)):
        raise SeriesMismatchError(f"{name}: two or more {what} share the same slice position (duplicates?)")
    median = float(np.median(steps))
    if np.any(np.abs(steps - median) > 0.1 * median):
        warnings.append(f"{name}: the slice gaps are uneven ({steps.min():.2f}-{steps.max():.2f} mm)")
    return order


def stack_affine(orientation: np.ndarray, row_mm: float, col_mm: float, first: np.ndarray, last: np.ndarray,
                 n_slices: int) -> np.ndarray:
    """The RAS affine of slices stacked ``[row, column, slice]`` from the ``first`` to the ``last`` position."""
    lps = np.eye(4)
    lps[:3, 0] = orientation[3:] * row_mm  # moving down a column (row index) follows the 2nd IOP vector
    lps[:3, 1] = orientation[:3] * col_mm  # moving along a row (column index) follows the 1st IOP vector
    lps[:3, 2] = (np.asarray(last, dtype=float) - np.asarray(first, dtype=float)) / (n_slices - 1)
    lps[:3, 3] = first
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
