"""Reading scans: every supported file becomes a :class:`~core.types.Volume`, every bad file a typed
:class:`~core.errors.InputError` whose message a radiologist can act on.

Supported: NIfTI (``.nii``, ``.nii.gz``; 2-D and 3-D), DICOM (a file, a folder holding one series,
or a ``.zip`` of one), PNG and JPEG, and InVesalius projects (``.inv3``: the CT or MR volume inside). Formats are recognised by their first bytes, not their names.
DICOM is read as archives hold it: compressed (JPEG, JPEG-LS, JPEG 2000, RLE) and enhanced multi-frame
images, whose frames are placed by their functional groups (see :mod:`core.dicom`).
3-D volumes are reoriented to RAS+ (see :mod:`core.types`); CT values are in HU after the DICOM
rescale; MONOCHROME1 images are inverted so that bright means dense everywhere.

Hostile input is refused before it can hang or exhaust the machine: only regular files are ever
opened (never a named pipe, a device, a socket, a link loop or a broken link), and what a file
decodes to is bounded by :class:`SizeLimits`, checked against the sizes a header declares before
reading and enforced while decompressing, so a stream that under-reports its size is stopped too.
"""

from __future__ import annotations

import errno
import gzip
import io
import math
import os
import plistlib
import stat
import tarfile
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from PIL import Image

from core.dicom import check_decodable, read_frames, stack_affine, stack_order
from core.errors import (
    CorruptFileError, DimensionError, EmptyImageError, InputError, NonFiniteError, NotAFileError,
    SeriesMismatchError, TooLargeError, TooSmallError, UnsupportedDataError, UnsupportedFormatError,
)
from core.types import Modality, Volume, Window, from_display, to_display


MAX_DECODED_BYTES = 512 * 2**20
"""Default of :attr:`SizeLimits.max_decoded_bytes`: 512 MB, e.g. a 512 x 512 x 512 volume as 32-bit floats."""

MIN_SCORABLE_SIDE = 16
"""The fewest rows and columns an image (or a volume's axial slices) must have to be scored. The models
see every slice resized to a 128 x 128 grid; a smaller image would be blown up more than 8 times, and its
score would say nothing about it (a 1 x 2 PNG was once scored and flagged)."""

ACCEPTED_SUFFIXES = (".nii.gz", ".nii", ".dcm", ".png", ".jpg", ".jpeg", ".inv3")
"""The file names SAFEGEN takes as one image file, everywhere: the ``score`` command, Batch screening,
reader studies, reference folders and the uploaders (compare them lower-cased). ``.nii.gz`` / ``.nii``:
NIfTI, gzipped or plain (2-D or 3-D); ``.dcm``: a DICOM file; ``.png``, ``.jpg`` / ``.jpeg``: pictures;
``.inv3``: an InVesalius project (its CT or MR volume). :func:`load_volume` goes by a file's first
bytes, not its name; these names are what a folder is searched for. A zipped DICOM series (``.zip``)
is read by :func:`load_volume` too, but is not among them: the ``score`` command asks for it unpacked."""


@dataclass(frozen=True)
class SizeLimits:
    """What SAFEGEN refuses to read.

    Attributes:
        max_file_bytes: the file on disk (or an upload), and all the files a zip unpacks to together.
        max_voxels: voxels of the decoded image.
        max_decoded_bytes: what a file may decode to: the bytes read from a NIfTI (header, extensions and
            image data, after gunzip), the bytes a gzip stream (``.nii.gz``, ``.inv3``) yields, and the
            32-bit float image SAFEGEN builds (4 bytes a voxel). Checked against the declared sizes before
            anything is read and enforced while decompressing.
    """

    max_file_bytes: int = 1 << 30
    max_voxels: int = 400_000_000
    max_decoded_bytes: int = MAX_DECODED_BYTES


DEFAULT_LIMITS = SizeLimits()


def output_stem(name: str) -> str:
    """``brain.nii.gz`` -> ``brain``; only the contract's suffixes are removed (case-insensitive)."""
    lower = name.lower()
    for suffix in ACCEPTED_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _human(n_bytes: float) -> str:
    """1536 -> '1.5 KB'; sizes in messages read like a file manager's."""
    if n_bytes < 1024:
        return f"{int(n_bytes)} bytes"
    for unit in ("KB", "MB", "GB"):
        n_bytes /= 1024
        if n_bytes < 1024 or unit == "GB":
            break
    return f"{n_bytes:.1f} {unit}"


_SPECIAL_FILES = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
                  (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def stat_input(path: str | Path) -> os.stat_result:
    """``os.stat`` of a file or folder to read (links followed), refusing everything else unopened.

    Raises:
        FileNotFoundError: nothing is there.
        NotAFileError: a named pipe, a device, a socket, a symbolic link loop or a broken link.
    """
    path = Path(path)
    try:
        info = os.stat(path)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise NotAFileError(f"{path.name} is a symbolic link loop (it leads back to itself); there is no file "
                                "to read") from None
        if error.errno == errno.ENOENT and os.path.islink(path):
            raise NotAFileError(f"{path.name} is a broken symbolic link: it points to {os.readlink(path)}, "
                                "which does not exist") from None
        if error.errno == errno.ENOENT:
            raise FileNotFoundError(f"{path} does not exist") from None
        raise InputError(f"{path.name} cannot be opened ({error.strerror})") from None
    if stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode):
        return info
    kind = next((what for test, what in _SPECIAL_FILES if test(info.st_mode)), "a special file")
    link = f" (a link to {os.path.realpath(path)})" if os.path.islink(path) else ""
    raise NotAFileError(f"{path.name} is not a regular file but {kind}{link}; SAFEGEN reads image files only "
                        "and does not open it")


def _read_head(path: Path, n_bytes: int) -> bytes:
    """The first bytes of a regular file; anything else is refused before it is opened."""
    if stat.S_ISDIR(stat_input(path).st_mode):
        raise NotAFileError(f"{path.name} is a folder, not a file")
    # Non-blocking, no controlling terminal: should the path turn into a pipe or a device between the
    # check and the open, the open returns at once and fstat refuses it.
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as error:
        raise InputError(f"{path.name} cannot be opened ({error.strerror})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotAFileError(f"{path.name} is not a regular file; SAFEGEN reads image files only")
        return os.read(fd, n_bytes)
    finally:
        os.close(fd)


def detect_format(path: str | Path) -> str:
    """The file's format from its first bytes: nifti, nifti-gz, inv3, dicom, png, jpeg or zip.

    Raises:
        NotAFileError: the path is a folder, a named pipe, a device, a link loop or a broken link.
        UnsupportedFormatError: anything else, saying what the bytes look like when recognisable.
    """
    path = Path(path)
    head = _read_head(path, 1024)
    if not head:
        raise UnsupportedFormatError(f"{path.name} is an empty file (0 bytes)")
    if head[:2] == b"\x1f\x8b":
        return "inv3" if _is_gzipped_tar(path) else "nifti-gz"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:4] == b"PK\x03\x04":
        return "zip"
    header_sizes = (348, 540)  # NIfTI-1 and NIfTI-2 sizeof_hdr, in either byte order
    if len(head) >= 348 and (
        int.from_bytes(head[:4], "little") in header_sizes or int.from_bytes(head[:4], "big") in header_sizes
    ):
        return "nifti"
    if path.name.lower().endswith(".dcm") and _looks_like_raw_dicom(path):
        return "dicom"  # old DICOM files without the 128-byte preamble and "DICM" marker
    if head[:5] == b"%PDF-":
        what = "a PDF document"
    elif head.lstrip()[:1] == b"<":
        what = "an HTML/XML document"
    elif all(32 <= b < 127 or b in (9, 10, 13) for b in head[:256]):
        what = "plain text"
    else:
        what = "unrecognised binary data"
    raise UnsupportedFormatError(
        f"{path.name} is not a NIfTI, DICOM, PNG or JPEG file (its content looks like {what})"
    )


def _is_gzipped_tar(path: Path) -> bool:
    """A gzip whose content is a tar archive ("ustar" at byte 257): an InVesalius project, not a NIfTI."""
    try:
        with gzip.open(path, "rb") as stream:
            block = stream.read(512)
    except (OSError, EOFError):
        return False
    return block[257:262] == b"ustar"


def _looks_like_raw_dicom(path: Path) -> bool:
    """A preamble-less DICOM file parses into a dataset that names what it is (SOP class, modality, rows)."""
    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True, force=True)
    except Exception:
        return False
    return any(tag in ds for tag in ("SOPClassUID", "Modality", "Rows"))


def validate_array(array: np.ndarray, source: str) -> None:
    """Refuse arrays nobody can assess: wrong dimensions, no pixels, NaN/inf, or a blank image."""
    name = Path(source).name if source else "the image"
    if array.ndim not in (2, 3):
        raise DimensionError(f"{name} has {array.ndim} dimensions; SAFEGEN reads 2-D images and 3-D volumes")
    if array.size == 0:
        raise EmptyImageError(f"{name} contains no pixels (shape {array.shape})")
    finite = np.isfinite(array)
    if not finite.all():
        bad = int(array.size - finite.sum())
        raise NonFiniteError(
            f"{name} has {bad} voxels ({100 * bad / array.size:.2g}%) that are NaN or infinite; "
            "the image was probably written by a failed computation"
        )
    low, high = float(array.min()), float(array.max())
    if low == high:
        raise EmptyImageError(f"{name} is blank: every pixel has the value {low:g}")


def check_scorable(volume: Volume, min_side: int = MIN_SCORABLE_SIDE) -> None:
    """Refuse an image too small to score: fewer than ``min_side`` rows or columns (a volume: in its axial slices).

    Raises:
        TooSmallError: saying the image's size and the smallest size scored.
    """
    rows, columns = volume.array.shape[:2] if not volume.is_3d else volume.array.shape[1::-1]
    if min(rows, columns) < min_side:
        what = "its axial slices are" if volume.is_3d else "it is"
        raise TooSmallError(f"{volume.name} cannot be scored: {what} {rows}x{columns} pixels, and SAFEGEN scores "
                            f"images of at least {min_side}x{min_side} pixels")


def _check_voxels(shape, limits: SizeLimits, name: str) -> None:
    """The declared image size against ``max_voxels`` and, as 32-bit floats, ``max_decoded_bytes``."""
    n = math.prod(int(s) for s in shape)  # Python integers: a hostile header's product cannot overflow
    if n > limits.max_voxels:
        raise TooLargeError(f"{name} has {n:,} voxels {tuple(shape)}; the limit is {limits.max_voxels:,}")
    if 4 * n > limits.max_decoded_bytes:
        raise TooLargeError(f"{name} has {n:,} voxels {tuple(shape)}, {_human(4 * n)} as 32-bit floats; "
                            f"the limit is {_human(limits.max_decoded_bytes)}")


class _CappedGzipFile(gzip.GzipFile):
    """A gzip stream that raises :class:`TooLargeError` before it yields more than ``cap`` bytes.

    The cap holds however the stream was made: a header or a gzip trailer that under-reports the size
    changes nothing, as every read and seek is bounded by the bytes actually decompressed.
    """

    def __init__(self, path: Path, cap: int):
        super().__init__(filename=str(path), mode="rb")
        self._cap, self._label = cap, path.name

    def _too_large(self):
        raise TooLargeError(f"{self._label} unpacks to more than {_human(self._cap)}, the limit; refused "
                            "(a decompression bomb?)")

    def tell(self) -> int:
        return super().seek(0, io.SEEK_CUR)  # GzipFile's tell is seek(0, SEEK_CUR); this seek is checked

    def _bounded(self, size):
        room = self._cap + 1 - self.tell()  # one byte over the cap tells a full stream from an oversized one
        return room if size is None or size < 0 or size > room else size

    def read(self, size=-1):
        data = super().read(self._bounded(size))
        if self.tell() > self._cap:
            self._too_large()
        return data

    def read1(self, size=-1):
        data = super().read1(self._bounded(size))
        if self.tell() > self._cap:
            self._too_large()
        return data

    def seek(self, offset, whence=io.SEEK_SET):
        target = {io.SEEK_SET: offset, io.SEEK_CUR: self.tell() + offset}.get(whence)
        if target is not None and target > self._cap:
            self._too_large()  # before seeking: a forward seek in a gzip stream decompresses everything before it
        return super().seek(offset, whence)


def _guess_modality(array: np.ndarray) -> Modality:
    return Modality.CT if np.percentile(array[:: max(1, array.size // 200_000)], 1) < -500 else Modality.MR


_NIFTI_CLASSES = {348: (nib.Nifti1Header, nib.Nifti1Image), 540: (nib.Nifti2Header, nib.Nifti2Image)}


def _nifti_header(head: bytes, name: str):
    """The header of a NIfTI-1 or -2 file from its first bytes, its image class and its size in bytes."""
    for size, (header_class, image_class) in _NIFTI_CLASSES.items():
        if len(head) >= size and size in (int.from_bytes(head[:4], "little"), int.from_bytes(head[:4], "big")):
            try:  # the extension flag is cleared in this copy: _check_extensions walks the extensions
                header = header_class.from_fileobj(io.BytesIO(head[:size] + b"\0\0\0\0"))
            except Exception:
                break
            return header, image_class, size
    raise CorruptFileError(f"{name} is cut short or damaged: its NIfTI header cannot be read")


def _check_nifti_dtype(dtype: np.dtype, name: str) -> None:
    if dtype.kind == "c":
        raise UnsupportedDataError(
            f"{name} holds complex-valued voxels ({dtype}); SAFEGEN assesses real-valued images and would "
            "lose the imaginary part. Save the magnitude (e.g. numpy.abs of the data) as a real image first."
        )
    if dtype.fields is not None or dtype.kind == "V":
        raise UnsupportedDataError(f"{name} holds RGB colour voxels; SAFEGEN assesses grayscale images")


_CHUNK = 1 << 20  # streams are read and skipped a megabyte at a time


def _skip(stream, n_bytes: int, name: str) -> None:
    """Read past ``n_bytes`` of ``stream`` a chunk at a time, keeping nothing."""
    while n_bytes > 0:
        chunk = stream.read(min(n_bytes, _CHUNK))
        if not chunk:
            raise CorruptFileError(f"{name} is cut short: it ends before its image data start")
        n_bytes -= len(chunk)


def _skip_extensions(stream, header_size: int, offset: int, endian: str, name: str) -> None:
    """Read past the header extensions up to ``offset``, refusing a chain that does not end exactly there.

    Walks the extension sizes as nibabel does (each ``esize`` counts its own 8-byte head) without
    keeping their content, and refuses what the NIfTI standard rules out and leaves the start of the
    image ambiguous: a size that is not a positive multiple of 16, or a chain that ends before or
    after ``vox_offset``. A NIfTI-1 file stores ``vox_offset`` as a 32-bit float, which cannot hold
    every byte position past 16 MB, so a writer's offset can be off by a few bytes; a hostile header
    can simply lie.
    """
    start = position = header_size + 4
    while offset - position >= 16:
        head = stream.read(8)
        if len(head) < 8:
            raise CorruptFileError(f"{name} is cut short: it ends inside its header extensions")
        esize = int.from_bytes(head[:4], "little" if endian == "<" else "big", signed=True)
        if esize < 16 or esize % 16:
            raise CorruptFileError(f"{name} is damaged: its header extension at byte {position:,} declares "
                                   f"{esize:,} bytes, not a positive multiple of 16 as NIfTI requires, so where "
                                   "its image data start is ambiguous; refused")
        _skip(stream, min(esize, offset - position) - 8, name)
        position += esize
    if position != offset:
        raise CorruptFileError(
            f"{name} is inconsistent: its header extensions (from byte {start:,}) end at byte {position:,} but its "
            f"image data are declared to start at byte {offset:,}, so the image would be read shifted by "
            f"{abs(offset - position):,} bytes; refused"
        )


def _read_nifti(path: Path, gzipped: bool, limits: SizeLimits):
    """A nibabel image of a NIfTI file whose declared and decoded sizes are within ``limits``.

    The header is read first; the shape, the voxel type and the bytes up to the end of the image
    data are checked before anything else is read. Then the header extensions are walked and
    skipped (never kept), and exactly the image data are read, from a gzip stream capped at
    ``max_decoded_bytes``. The image is built from the header and those data alone. A NIfTI pair
    (``.hdr`` + ``.img``) is read by nibabel after the same header checks.
    """
    name = path.name
    stream = _CappedGzipFile(path, limits.max_decoded_bytes) if gzipped else path.open("rb")
    try:
        with stream:
            head = stream.read(544)
            header, image_class, header_size = _nifti_header(head, name)
            shape, dtype = header.get_data_shape(), header.get_data_dtype()
            _check_nifti_dtype(dtype, name)
            _check_voxels(shape, limits, name)
            if header["magic"].item() == header.pair_magic:
                return nib.load(str(path))  # a pair: the image data are in the .img file
            offset = int(header.get_data_offset())
            if offset < header_size + 4:
                raise CorruptFileError(f"{name} is damaged: its image data are declared to start at byte "
                                       f"{offset:,}, inside its {header_size + 4}-byte header")
            data_bytes = math.prod(int(s) for s in shape) * dtype.itemsize
            if offset + data_bytes > limits.max_decoded_bytes:
                raise TooLargeError(f"{name} declares {_human(offset + data_bytes)} of header and image data "
                                    f"({tuple(shape)} {dtype} voxels from byte {offset:,}); the limit is "
                                    f"{_human(limits.max_decoded_bytes)}")
            stream.seek(header_size + 4)
            if len(head) > header_size and head[header_size] != 0:
                _skip_extensions(stream, header_size, offset, header.endianness, name)
            else:
                _skip(stream, offset - header_size - 4, name)
            data = stream.read(data_bytes)
    except InputError:
        raise
    except (OSError, EOFError, zlib.error) as error:
        raise CorruptFileError(f"{name} is cut short or damaged: its data cannot be read ({error})") from None
    if len(data) < data_bytes:
        raise CorruptFileError(f"{name} is cut short: its header declares {data_bytes:,} bytes of image data from "
                               f"byte {offset:,}, the file holds {len(data):,} of them")
    header["vox_offset"] = header_size + 4  # the data right after the header, without the extensions
    try:
        return image_class.from_bytes(header.binaryblock + b"\0\0\0\0" + data)
    except Exception:
        raise CorruptFileError(f"{name} is cut short or damaged: its NIfTI header cannot be read") from None


def _nifti_grid(shape, name: str) -> tuple[int, int, int]:
    """The 3-D array shape a NIfTI's data take: trailing singleton axes past the third dropped, 2-D -> one slice."""
    squeezed = list(shape)
    while len(squeezed) > 3 and squeezed[-1] == 1:
        squeezed.pop()
    if len(squeezed) == 4:
        raise DimensionError(
            f"{name} is a 4-D image with {squeezed[3]} volumes (a time series or diffusion series). "
            "SAFEGEN assesses one 2-D or 3-D image at a time; extract a single volume first, e.g. with fslroi."
        )
    if len(squeezed) > 4 or len(squeezed) < 2:
        raise DimensionError(f"{name} has shape {tuple(shape)}; SAFEGEN reads 2-D images and 3-D volumes")
    return (*squeezed, 1) if len(squeezed) == 2 else tuple(squeezed)


def _single_plane(ras_shape) -> int | None:
    """The RAS axis (0 sagittal, 1 coronal) of a volume that is one sagittal or coronal slice, else None.

    A ``(1, 128, 128)`` RAS array is one 128 x 128 sagittal image; taken as a volume it would be 128
    axial slices of 1 x 128 pixels.
    """
    if ras_shape[2] > 1 and (ras_shape[0] == 1) != (ras_shape[1] == 1):
        return 0 if ras_shape[0] == 1 else 1
    return None


def _load_nifti(path: Path, modality: Modality | None, limits: SizeLimits) -> Volume:
    """NIfTI-1/2, plain or gzipped; 2-D files become a one-slice volume; reoriented to RAS+.

    A volume that is one sagittal or coronal slice becomes a 2-D image of that slice, shown as in the
    viewer's sagittal / coronal view (superior at the top), with a warning.
    """
    img = _read_nifti(path, _read_head(path, 2) == b"\x1f\x8b", limits)
    grid = _nifti_grid(img.shape, path.name)
    try:
        data = np.asarray(img.dataobj, dtype=np.float32).reshape(grid)
    except Exception:
        raise CorruptFileError(f"{path.name}: the file is cut short or damaged (its image data cannot be read)") from None
    validate_array(data, str(path))
    canonical = nib.as_closest_canonical(nib.Nifti1Image(data, img.affine))
    array = np.asarray(canonical.dataobj, dtype=np.float32)
    spacing = tuple(float(z) for z in canonical.header.get_zooms()[:3])
    plane = _single_plane(array.shape)
    if plane is not None:
        image = np.ascontiguousarray(np.take(array, 0, axis=plane).T[::-1, ::-1])  # as Volume.plane_slice_of
        pixel = (spacing[2], spacing[1 - plane])  # rows run along S, columns along A (sagittal) or R (coronal)
        view = "sagittal" if plane == 0 else "coronal"
        return Volume(
            array=image, spacing=pixel, affine=np.diag([*pixel, 1.0, 1.0]),
            modality=modality or _guess_modality(image), source=str(path),
            warnings=[f"{path.name} is one {view} slice stored as a volume of shape {tuple(img.shape)}; it is read "
                      "as one 2-D image (superior at the top)"],
        )
    return Volume(
        array=array, spacing=spacing, affine=canonical.affine.astype(float),
        modality=modality or _guess_modality(array), source=str(path),
    )


_XRAY_TAGS = {"CR", "DX", "RF", "MG", "XA", "PX", "IO"}
NON_IMAGE_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.66.4": "a DICOM segmentation object (SEG)",
    "1.2.840.10008.5.1.4.1.1.481.3": "a DICOM RT structure set",
    "1.2.840.10008.5.1.4.1.1.88.11": "a DICOM structured report",
    "1.2.840.10008.5.1.4.1.1.88.22": "a DICOM structured report",
    "1.2.840.10008.5.1.4.1.1.88.33": "a DICOM structured report",
    "1.2.840.10008.5.1.4.1.1.104.1": "an encapsulated PDF in DICOM",
}


def _dicom_modality(ds) -> Modality:
    tag = str(ds.get("Modality", "")).upper()
    if tag == "CT":
        return Modality.CT
    if tag == "MR":
        return Modality.MR
    if tag in _XRAY_TAGS:
        return Modality.XRAY
    return Modality.OTHER


def _first(value) -> float | None:
    if value is None:
        return None
    try:
        return float(value[0]) if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) else float(value)
    except (TypeError, ValueError, IndexError):
        return None


def _read_dicom(path: Path, *, pixels: bool = True):
    try:
        return pydicom.dcmread(str(path), stop_before_pixels=not pixels, force=path.suffix.lower() == ".dcm")
    except Exception as error:
        raise CorruptFileError(f"{path.name} is not a readable DICOM file ({type(error).__name__}: {error})") from None


def _check_is_image(ds, name: str) -> None:
    sop = str(ds.get("SOPClassUID", ""))
    if sop in NON_IMAGE_SOP_CLASSES:
        raise UnsupportedFormatError(f"{name} is {NON_IMAGE_SOP_CLASSES[sop]}, not an image")
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise UnsupportedFormatError(f"{name} is a DICOM file without an image (no pixel data)")


def _dicom_pixels(ds, name: str, warnings: list[str], rescale=None) -> np.ndarray:
    """The decoded image in the modality's units (``rescale``: per-frame slopes and intercepts of an
    enhanced image; else the file's rescale or modality LUT), gray, bright meaning dense."""
    from pydicom.pixels import apply_modality_lut

    check_decodable(ds, name)
    try:
        raw = ds.pixel_array
    except Exception as error:
        raise CorruptFileError(f"{name}: the image data is cut short or cannot be decoded ({error})") from None
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        warnings.append(f"{name} is a colour image ({photometric}); it was converted to grayscale")
        rgb = raw.astype(np.float32)  # pydicom returns YBR images (JPEG's usual colour space) as RGB
        if rgb.ndim >= 3 and rgb.shape[-1] == 3:
            return rgb @ np.array([0.299, 0.587, 0.114], np.float32)
        return rgb
    if rescale is not None:
        slopes, intercepts = (np.asarray(v, dtype=float).reshape((-1, 1, 1) if raw.ndim == 3 else ()) for v in rescale)
        values = (raw * slopes + intercepts).astype(np.float32)
    else:
        values = np.asarray(apply_modality_lut(raw, ds), dtype=np.float32)
    if photometric == "MONOCHROME1":
        # MONOCHROME1 shows low values as white; invert so that bright means dense everywhere.
        values = _invert(values, values)
        warnings.append(f"{name} is stored MONOCHROME1 (inverted gray scale); it was inverted for display")
    return values


def _invert(values, reference: np.ndarray):
    """Mirror values within the reference's range (MONOCHROME1 -> MONOCHROME2)."""
    return reference.min() + reference.max() - values


def _dicom_window(ds, pixels: np.ndarray, voi: tuple[float, float] | None = None) -> Window | None:
    """The file's display window (``voi``: an enhanced image's frame window), moved along with the
    pixels when they were inverted."""
    center, width = voi or (_first(ds.get("WindowCenter")), _first(ds.get("WindowWidth")))
    if center is None or width is None or width <= 0:
        return None
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        center = float(_invert(center, pixels))
    return Window(center, width, "From file")


def _body_part(ds) -> str:
    return str(ds.get("BodyPartExamined", "") or "").strip()


def _description(ds) -> str:
    return " · ".join(str(ds.get(t)) for t in ("StudyDescription", "SeriesDescription") if ds.get(t))


def _stated_pixel_spacing(ds, info) -> tuple[float, float] | None:
    """(row, column) mm as the file states it: an enhanced image's Pixel Measures, else PixelSpacing or
    ImagerPixelSpacing; None when it states none."""
    if info is not None and info.pixel_spacing is not None:
        return info.pixel_spacing
    spacing_tag = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
    if spacing_tag is not None and len(spacing_tag) == 2 and float(spacing_tag[0]) > 0:
        return float(spacing_tag[0]), float(spacing_tag[1])
    return None


def _pixel_spacing(ds, info, name: str, warnings: list[str]) -> tuple[float, float]:
    """(row, column) mm: :func:`_stated_pixel_spacing`, else 1 mm (with a warning)."""
    stated = _stated_pixel_spacing(ds, info)
    if stated is not None:
        return stated
    warnings.append(f"{name} has no pixel spacing; 1 mm pixels are assumed")
    return 1.0, 1.0


def _frame_stack(info, row_mm: float, col_mm: float, name: str, warnings: list[str]):
    """The frames of an enhanced image that has a position for each: their order along the slice normal
    and the RAS affine of the frames stacked ``[row, column, frame]`` in that order; None otherwise."""
    if info is None or info.positions is None or info.orientation is None or len(info.positions) < 2:
        return None
    order = stack_order(info.positions, info.orientation, name, warnings, "frames")
    first, last = info.positions[order[0]], info.positions[order[-1]]
    return order, stack_affine(info.orientation, row_mm, col_mm, first, last, len(order))


def _canonical(stack: np.ndarray, ras: np.ndarray) -> tuple[np.ndarray, tuple[float, ...], np.ndarray]:
    """A ``[row, column, slice]`` stack reoriented to RAS+: its array, spacing and affine."""
    canonical = nib.as_closest_canonical(nib.Nifti1Image(stack, ras))
    spacing = tuple(float(z) for z in canonical.header.get_zooms()[:3])
    return np.asarray(canonical.dataobj, dtype=np.float32), spacing, canonical.affine.astype(float)


def _load_dicom_file(path: Path, modality: Modality | None, limits: SizeLimits) -> Volume:
    """One DICOM file: a 2-D image, or a multi-frame file stacked as a volume.

    An enhanced image's frames are placed by their positions and read with their own pixel spacing,
    rescale and window (see :mod:`core.dicom`); other multi-frame files are stacked in stored order.
    """
    ds = _read_dicom(path)
    _check_is_image(ds, path.name)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    _check_voxels((int(ds.get("Rows", 0)), int(ds.get("Columns", 0)), frames), limits, path.name)
    warnings: list[str] = []
    info = read_frames(ds, frames, path.name)
    values = _dicom_pixels(ds, path.name, warnings, info.rescale if info else None)
    window = _dicom_window(ds, np.asarray(ds.pixel_array), info.window if info else None)
    row_mm, col_mm = _pixel_spacing(ds, info, path.name, warnings)
    stack = _frame_stack(info, row_mm, col_mm, path.name, warnings) if values.ndim == 3 and frames > 1 else None
    if stack is not None:
        order, ras = stack
        array, spacing, affine = _canonical(np.moveaxis(values[order], 0, 2), ras)
    elif values.ndim == 3 and frames > 1:
        # Multi-frame without per-frame positions: frames stacked along the slice axis in stored order.
        thickness = (_first(ds.get("SpacingBetweenSlices")) or _first(ds.get("SliceThickness"))
                     or (info and info.slice_thickness) or 1.0)
        array = np.stack([from_display(frame) for frame in values], axis=2).astype(np.float32)
        warnings.append(f"{path.name} is a multi-frame image; frames are shown in stored order")
        spacing = (col_mm, row_mm, float(thickness))
        affine = np.diag([*spacing, 1.0])
    else:
        array = values.astype(np.float32)
        spacing = (row_mm, col_mm)
        affine = np.diag([row_mm, col_mm, 1.0, 1.0])
    validate_array(array, str(path))
    return Volume(array, spacing, affine, modality or _dicom_modality(ds), str(path), window, warnings,
                  _description(ds), body_part=_body_part(ds),
                  spacing_known=_stated_pixel_spacing(ds, info) is not None)


def _slice_geometry(ds):
    iop = np.array([float(v) for v in ds.ImageOrientationPatient], dtype=float)
    ipp = np.array([float(v) for v in ds.ImagePositionPatient], dtype=float)
    return iop, ipp


def _load_dicom_folder(folder: Path, modality: Modality | None, limits: SizeLimits, source: str | None = None) -> Volume:
    """One series from a folder: checked for consistency, sorted along the slice normal, RAS+."""
    name = Path(source).name if source else folder.name
    files = [p for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.startswith(".") and p.name.upper() != "DICOMDIR"]
    headers, skipped = [], 0
    for path in files:
        try:
            ds = pydicom.dcmread(str(path), stop_before_pixels=True)
        except Exception:
            skipped += 1
            continue
        if "SOPClassUID" in ds and str(ds.SOPClassUID) in NON_IMAGE_SOP_CLASSES:
            skipped += 1
            continue
        if "Rows" not in ds:
            skipped += 1
            continue
        headers.append((path, ds))
    if not headers:
        raise UnsupportedFormatError(f"{name} holds no DICOM images ({len(files)} files looked at)")
    series: dict[str, list] = {}
    for path, ds in headers:
        series.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append((path, ds))
    if len(series) > 1:
        listing = "; ".join(
            f"{(items[0][1].get('SeriesDescription') or 'no description')} ({len(items)} files)"
            for items in series.values()
        )
        raise SeriesMismatchError(f"{name} holds {len(series)} different series: {listing}. Load one series at a time.")
    items = next(iter(series.values()))
    warnings = [f"{skipped} non-image or non-DICOM files in {name} were skipped"] if skipped else []
    if len(items) == 1:
        volume = _load_dicom_file(items[0][0], modality, limits)
        volume.warnings[:0] = warnings
        volume.source = source or str(folder)
        return volume
    first = items[0][1]
    for attr in ("Rows", "Columns", "PixelSpacing", "ImageOrientationPatient"):
        values = {str(ds.get(attr)) for _, ds in items}
        if len(values) > 1:
            raise SeriesMismatchError(f"the images in {name} do not match: they differ in {attr} ({', '.join(sorted(values))})")
    if "ImagePositionPatient" not in first or "ImageOrientationPatient" not in first:
        raise SeriesMismatchError(f"{name}: the images carry no position/orientation, so they cannot be stacked into a volume")
    _check_voxels((int(first.Rows), int(first.Columns), len(items)), limits, name)
    iop, _ = _slice_geometry(first)
    positions = np.array([_slice_geometry(ds)[1] for _, ds in items])
    order = stack_order(positions, iop, name, warnings)
    slices, window, description = [], None, _description(first)
    for k in order:
        path, _ = items[k]
        ds = _read_dicom(path)
        _check_is_image(ds, path.name)
        slice_warnings: list[str] = []
        slices.append(_dicom_pixels(ds, path.name, slice_warnings))
        window = window or _dicom_window(ds, np.asarray(ds.pixel_array))
    if any(s.ndim != 2 for s in slices):
        raise SeriesMismatchError(f"{name}: a series of multi-frame or colour files is not supported")
    stack = np.stack(slices, axis=2).astype(np.float32)  # [row, column, slice]
    validate_array(stack, name)
    row_mm, col_mm = (float(v) for v in first.PixelSpacing)
    ras = stack_affine(iop, row_mm, col_mm, positions[order[0]], positions[order[-1]], len(items))
    array, spacing, affine = _canonical(stack, ras)
    return Volume(array, spacing, affine, modality or _dicom_modality(first), source or str(folder), window,
                  warnings, description, body_part=_body_part(first))


def _load_picture(path: Path, modality: Modality | None, limits: SizeLimits) -> Volume:
    try:
        with Image.open(path) as image:
            _check_voxels((image.height, image.width), limits, path.name)
            image.load()
            warnings = []
            if image.mode in ("RGB", "RGBA", "P", "LA", "CMYK", "YCbCr"):
                warnings.append(f"{path.name} is a colour image ({image.mode}); it was converted to grayscale")
                image = image.convert("L")
            array = np.asarray(image, dtype=np.float32)
    except InputError:
        raise
    except Exception as error:
        raise CorruptFileError(f"{path.name}: the picture is cut short or damaged ({error})") from None
    if array.ndim != 2:
        raise DimensionError(f"{path.name} has shape {array.shape}; expected a 2-D grayscale picture")
    validate_array(array, str(path))
    return Volume(array, (1.0, 1.0), np.eye(4), modality or Modality.OTHER, str(path), warnings=warnings,
                  spacing_known=False)


def _load_zip(path: Path, modality: Modality | None, limits: SizeLimits) -> Volume:
    """A zipped DICOM series; the uncompressed size is checked before anything is unpacked.

    Members are copied in chunks: zipfile stops each one at the size its header declares (and then
    fails its CRC check), so a member that under-reports its size never inflates past that size.
    Only stored and deflated members are unpacked (bzip2 and LZMA inflate whole blocks at a time).
    """
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise CorruptFileError(f"{path.name} is a damaged zip archive") from None
    with archive, tempfile.TemporaryDirectory(prefix="safegen-zip-") as tmp:
        members = [m for m in archive.infolist() if not m.is_dir()]
        total = sum(m.file_size for m in members)
        if total > limits.max_file_bytes:
            raise TooLargeError(f"{path.name} unpacks to {_human(total)}; the limit is {_human(limits.max_file_bytes)}")
        root = Path(tmp).resolve()
        unpacked = 0
        for member in members:
            target = (root / member.filename).resolve()
            if root not in target.parents:
                raise UnsupportedFormatError(f"{path.name} contains an unsafe path ({member.filename!r}); refused")
            if member.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise UnsupportedFormatError(f"{path.name}: member {member.filename!r} uses a compression SAFEGEN "
                                             "does not unpack (only stored or deflated zip members)")
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with archive.open(member) as source, target.open("wb") as copy:
                    while chunk := source.read(_CHUNK):  # never a whole member in memory
                        unpacked += len(chunk)
                        if unpacked > limits.max_file_bytes:
                            raise TooLargeError(f"{path.name} unpacks to more than {_human(limits.max_file_bytes)}, "
                                                "the limit")
                        copy.write(chunk)
            except InputError:
                raise
            except Exception as error:
                raise CorruptFileError(f"{path.name}: member {member.filename!r} cannot be unpacked ({error})") from None
        return _load_dicom_folder(root, modality, limits, source=str(path))


def _inv3_members(path: Path, limits: SizeLimits) -> tuple[dict, bytes]:
    """``main.plist`` (as a dict) and the raw bytes of the volume matrix of an InVesalius project."""
    stream = _CappedGzipFile(path, limits.max_decoded_bytes)  # getmembers() walks the whole stream
    try:
        archive = tarfile.open(fileobj=stream, mode="r:")
        members = {Path(m.name).name: m for m in archive.getmembers() if m.isfile()}
    except (tarfile.TarError, OSError, EOFError, zlib.error):
        stream.close()
        raise CorruptFileError(f"{path.name} is a damaged InVesalius project (its archive cannot be read)") from None
    except InputError:
        stream.close()
        raise
    with stream, archive:
        if "main.plist" not in members:
            raise UnsupportedFormatError(f"{path.name} is a gzipped tar archive but not an InVesalius project "
                                         "(no main.plist inside)")
        main = plistlib.loads(archive.extractfile(members["main.plist"]).read())
        matrix = main.get("matrix", {})
        name = matrix.get("filename", "")
        if name not in members:
            raise CorruptFileError(f"{path.name}: the volume file {name!r} named in main.plist is missing")
        limit = min(limits.max_file_bytes, limits.max_decoded_bytes)
        if members[name].size > limit:
            raise TooLargeError(f"{path.name} holds a volume of {_human(members[name].size)}; "
                                f"the limit is {_human(limit)}")
        return main, archive.extractfile(members[name]).read()


def _load_inv3(path: Path, modality: Modality | None, limits: SizeLimits) -> Volume:
    """The volume of an InVesalius 3 project (``.inv3``: a gzipped tar of plists and a raw matrix).

    ``matrix.dat`` is C-ordered ``(slices, rows, columns)``, axial. InVesalius flips every slice
    upside down on import (VTK's origin is bottom-left), so rows run posterior to anterior; columns
    are taken to run right to left as in the DICOM files it was made from (the project stores no
    direction cosines, so left-right cannot be checked: a warning says so); slices run inferior to
    superior. The result is RAS+ like every :class:`Volume`.
    """
    main, raw = _inv3_members(path, limits)
    matrix = main["matrix"]
    shape = tuple(int(n) for n in matrix.get("shape", ()))
    if len(shape) != 3:
        raise DimensionError(f"{path.name}: its volume has shape {shape}; SAFEGEN reads 3-D volumes")
    _check_voxels(shape, limits, path.name)
    dtype = np.dtype(matrix.get("dtype", "int16"))
    if len(raw) != int(np.prod(shape)) * dtype.itemsize:
        raise CorruptFileError(f"{path.name}: its volume holds {len(raw):,} bytes, not the {np.prod(shape):,} "
                               f"{dtype} voxels of shape {shape} that main.plist declares")
    data = np.frombuffer(raw, dtype=dtype).reshape(shape).astype(np.float32)
    validate_array(data, str(path))
    array = np.ascontiguousarray(data.transpose(2, 1, 0)[::-1])  # (columns R<-L, rows P->A, slices I->S)
    sz = float(main.get("spacing", (1.0, 1.0, 1.0))[2])
    sx, sy = (float(v) for v in main.get("spacing", (1.0, 1.0, 1.0))[:2])
    stored = {"CT": Modality.CT, "MR": Modality.MR}.get(str(main.get("modality", "")).upper())
    window = None
    if "window_level" in main and "window_width" in main and float(main["window_width"]) > 0:
        window = Window(float(main["window_level"]), float(main["window_width"]), "InVesalius")
    return Volume(
        array=array, spacing=(sx, sy, sz), affine=np.diag([sx, sy, sz, 1.0]),
        modality=modality or stored or _guess_modality(array), source=str(path), window=window,
        description=str(main.get("name", "")),
        warnings=["InVesalius projects store no patient orientation: left and right are assumed as in DICOM"],
    )


_LOADERS = {"nifti": _load_nifti, "nifti-gz": _load_nifti, "inv3": _load_inv3, "dicom": _load_dicom_file,
            "png": _load_picture, "jpeg": _load_picture, "zip": _load_zip}


def load_volume(
    source: str | Path, *, modality: Modality | None = None, limits: SizeLimits = DEFAULT_LIMITS
) -> Volume:
    """Read a file, a DICOM series folder or a zipped series.

    Args:
        source: the path.
        modality: overrides the modality found in (or guessed from) the file.
        limits: size limits checked before decoding.

    Raises:
        FileNotFoundError: the path does not exist.
        InputError: a subclass saying what is wrong with the file; :class:`NotAFileError` for a named
            pipe, a device, a socket, a symbolic link loop or a broken link, none of which is opened.
    """
    path = Path(source)
    info = stat_input(path)  # pipes, devices, sockets, link loops and broken links are refused unopened
    if stat.S_ISDIR(info.st_mode):
        return _load_dicom_folder(path, modality, limits)
    size = info.st_size
    if size > limits.max_file_bytes:
        raise TooLargeError(f"{path.name} is {_human(size)}; the limit is {_human(limits.max_file_bytes)}")
    kind = detect_format(path)
    try:
        return _LOADERS[kind](path, modality, limits)
    except InputError:
        raise
    except Exception as error:
        raise CorruptFileError(f"{path.name} cannot be read ({type(error).__name__}: {error})") from None


def load_upload(
    filename: str, data: bytes, *, modality: Modality | None = None, limits: SizeLimits = DEFAULT_LIMITS
) -> Volume:
    """Read uploaded bytes (from the dashboard); ``Volume.source`` is the uploaded file name."""
    if len(data) > limits.max_file_bytes:
        raise TooLargeError(f"{filename} is {_human(len(data))}; the limit is {_human(limits.max_file_bytes)}")
    safe = Path(filename).name or "upload"
    with tempfile.TemporaryDirectory(prefix="safegen-upload-") as tmp:
        path = Path(tmp) / safe
        path.write_bytes(data)
        volume = load_volume(path, modality=modality, limits=limits)
    volume.source = filename
    return volume


def _uncanonical(array: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Undo ``nib.as_closest_canonical``: a RAS+ array back to the voxel order that ``affine`` describes."""
    back = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt(("R", "A", "S")),
                                           nib.orientations.io_orientation(affine))
    return nib.orientations.apply_orientation(array, back)


def to_file_layout(array: np.ndarray, source: str | Path) -> np.ndarray:
    """Undo the loader's reorientation: a map in :class:`Volume` layout -> the file's own array layout.

    The result is indexed like the array a user's tools read from the file: ``nibabel``'s
    ``get_fdata()`` for NIfTI (the original voxel order and shape, 2-D files included),
    ``numpy.asarray(PIL.Image.open(f))`` for PNG/JPEG (colour pictures give ``(rows, columns)``),
    and pydicom's ``pixel_array`` for DICOM files (``(frames, rows, columns)`` for multi-frame).

    Args:
        array: a map with the shape of ``load_volume(source).array``.
        source: the file it was loaded from.
    """
    path = Path(source)
    kind = detect_format(path)
    if kind in ("nifti", "nifti-gz"):
        img = nib.load(str(path))
        file_ornt = nib.orientations.io_orientation(img.affine)
        data = array
        if array.ndim == 2:
            grid = _nifti_grid(img.shape, path.name)
            ras_shape = [0, 0, 0]
            for axis, (ras_axis, _) in enumerate(file_ornt):
                ras_shape[int(ras_axis)] = grid[axis]
            plane = _single_plane(ras_shape)
            # one sagittal / coronal slice read as a 2-D image (see _load_nifti), or a plain 2-D map
            data = array[:, :, None] if plane is None else np.expand_dims(np.asarray(array)[::-1, ::-1].T, plane)
        native = _uncanonical(data, img.affine)
        return np.ascontiguousarray(native.reshape(img.shape))
    if kind == "dicom" and array.ndim == 3:
        ds = _read_dicom(path, pixels=False)
        info = read_frames(ds, int(ds.get("NumberOfFrames", 1) or 1), path.name)
        stack = _frame_stack(info, *_pixel_spacing(ds, info, path.name, []), path.name, [])
        if stack is None:  # frames stacked in stored order
            return np.stack([to_display(array[:, :, k]) for k in range(array.shape[2])], axis=0)
        order, ras = stack
        sorted_frames = _uncanonical(array, ras)  # [row, column, frame in `order`]
        frames = np.empty_like(sorted_frames)
        frames[:, :, order] = sorted_frames
        return np.ascontiguousarray(np.moveaxis(frames, 2, 0))
    if kind == "inv3":
        return np.ascontiguousarray(array[::-1].transpose(2, 1, 0))  # back to (slices, rows, columns)
    if array.ndim != 2:
        raise ValueError(f"{path.name}: a {kind} file gives 2-D images, got a map of shape {array.shape}")
    return np.ascontiguousarray(array)
