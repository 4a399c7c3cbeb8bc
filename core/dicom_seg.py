"""Unsafe-region masks as DICOM Segmentation objects (DICOM-SEG), which PACS viewers (OHIF, 3D Slicer) open.

A mask (SAFEGEN's, or one a reader drew) on a :class:`~core.types.Volume`'s grid becomes a BINARY
``Segmentation`` (highdicom) with one segment:

* category SCT 49755003 "Morphologically Abnormal Structure" (CID 7150), type DCM 111207 "Image
  artifact(s)" (the DICOM code for an image artifact; CID 7151 is extensible), no private codes;
* SAFEGEN's mask: algorithm type AUTOMATIC, an Algorithm Identification Sequence naming SAFEGEN (or
  the baseline that made it), the profile as its version, family DCM 123110 "Artificial
  Intelligence", and the method, profile, explainer and tau as its parameters;
* a reader's mask: algorithm type MANUAL, the reader as Content Creator's Name;
* Content Qualification RESEARCH; only frames that hold mask pixels are stored (highdicom's
  default; an all-empty mask keeps every frame, as highdicom requires).

**What the SEG references.** A SEG is only readable beside the images it segments:

* a DICOM scan (a file, a series folder or a zipped series): the source images themselves. The SEG
  takes their study, patient, Frame of Reference UID, pixel spacing and plane positions, and each
  frame's Derivation Image Sequence names its source image's SOP Instance UID. The headers are
  re-read from the files (:func:`dicom_sources`); the mask is put onto each source image's pixel
  grid from its own position and orientation, so a series sorted and reoriented on load still
  lands on the right pixels.
* anything else (NIfTI, PNG / JPEG, InVesalius): first a *derived* Secondary Capture series of the
  scan itself (one image per axial display slice, ImageType DERIVED\\SECONDARY, intensities stored
  as 16 bits with a rescale slope and intercept, and for 3-D volumes a new Frame of Reference with
  Image Position / Orientation (Patient) from the volume's affine, so viewers stack it as a
  volume); the SEG references that series. The two are written together.

Nothing here imports Streamlit or the database: the CLI (``score --dicom-seg``), the Scan review
page and the reader-study export call :func:`seg_reference`, :func:`segmentation` and the writers.
"""

from __future__ import annotations

import csv
import io
import shutil
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.valuerep import DS

from core.io import NON_IMAGE_SOP_CLASSES, detect_format, load_volume, output_stem, to_file_layout
from core.types import SAFEGEN_METHOD, Modality, Volume

ARTIFACT_CATEGORY = codes.SCT.MorphologicallyAbnormalStructure  # SCT 49755003, CID 7150
ARTIFACT_TYPE = codes.DCM.ImageArtifacts  # DCM 111207 "Image artifact(s)"
ALGORITHM_FAMILY = codes.DCM.ArtificialIntelligence  # DCM 123110, CID 7162
MANUFACTURER = "SAFEGEN"
SOFTWARE_VERSIONS = ["SAFEGEN", f"highdicom {hd.__version__}", f"pydicom {pydicom.__version__}"]  # LO, multi-valued
IMAGE_SERIES_NUMBER = 1  # the derived copy of a non-DICOM scan
SEG_SERIES_NUMBER = 100  # SAFEGEN's SEG; a study's reader SEGs count on from 101
SEG_FOLDER = "dicom_seg"  # beside score's masks/ and heatmaps/, and in a study export
_COLOURS = {True: (255, 64, 0), False: (255, 215, 0)}  # SAFEGEN orange-red, readers yellow (recommended display)


class DicomSegError(ValueError):
    """A mask that cannot be written as a SEG of its scan (say, a source series that does not match it)."""


@dataclass(frozen=True)
class MaskAuthor:
    """Who made a mask, as the SEG's segment says.

    Attributes:
        label: the Segment Label (at most 64 characters).
        algorithm_version: the algorithm's version (SAFEGEN: its profile); None for a mask a person drew (MANUAL).
        parameters: the algorithm's parameters, as (name, value) pairs.
        creator: Content Creator's Name (a reader).
        algorithm_name: Algorithm Name of an AUTOMATIC mask.
    """

    label: str
    algorithm_version: str | None = None
    parameters: tuple[tuple[str, str], ...] = ()
    creator: str | None = None
    algorithm_name: str = "SAFEGEN"

    @property
    def automatic(self) -> bool:
        return self.algorithm_version is not None


def safegen_author(*, method: str, profile: str, explainer: str, tau: float, head: bool = False) -> MaskAuthor:
    """SAFEGEN's mask (or a baseline's, ``method`` other than ``safegen``) at ``tau``: AUTOMATIC, the
    profile (a baseline: its name) as the algorithm's version. ``head``: the segmentation head scored it."""
    if method == SAFEGEN_METHOD:
        name, version = "SAFEGEN", profile
        detector = (("detector", "segmentation head" if head else "reconstruction scores"),)
    else:
        name, version, detector = f"SAFEGEN baseline {method}", method, ()
    parameters = (("method", method), ("profile", profile), *detector, ("explainer", explainer), ("tau", f"{tau:.4g}"))
    return MaskAuthor(f"{name} unsafe region", version, parameters)


def safegen_author_of(result, tau: float | None = None) -> MaskAuthor:
    """:func:`safegen_author` of a :class:`~core.types.ScanResult` (its own tau unless ``tau`` is given)."""
    return safegen_author(method=result.method, profile=result.profile, explainer=result.explainer,
                          tau=result.tau if tau is None else tau, head=result.head)


def reader_author(reader: str | None, arm: str | None = None) -> MaskAuthor:
    """A mask a reader drew: MANUAL; ``reader`` (a study's user name) is the label and the content creator."""
    who = reader or "a reader"
    label = f"Artifact drawn by {who}" + (f" ({arm} arm)" if arm else "")
    return MaskAuthor(label[:64], creator=reader)


def segment_description(author: MaskAuthor, number: int = 1) -> hd.seg.SegmentDescription:
    """The Segment Description of ``author``'s mask (codes and algorithm as the module docstring says)."""
    algorithm = None
    if author.automatic:
        algorithm = hd.AlgorithmIdentificationSequence(
            name=author.algorithm_name, family=ALGORITHM_FAMILY, version=author.algorithm_version,
            source=MANUFACTURER, parameters=dict(author.parameters) or None)
    kind = hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC if author.automatic else hd.seg.SegmentAlgorithmTypeValues.MANUAL
    return hd.seg.SegmentDescription(
        segment_number=number, segment_label=author.label, segmented_property_category=ARTIFACT_CATEGORY,
        segmented_property_type=ARTIFACT_TYPE, algorithm_type=kind, algorithm_identification=algorithm,
        display_color=hd.color.CIELabColor.from_rgb(*(v / 255 for v in _COLOURS[author.automatic])))


# --- What a SEG references -------------------------------------------------------------------------------------

_TYPE_2 = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID", "StudyDate",
           "StudyTime", "ReferringPhysicianName")


def _image_header(ds: Dataset) -> Dataset | None:
    """``ds`` if it is an image a SEG can reference, with the type-2 attributes highdicom reads filled in empty."""
    if "Rows" not in ds or str(ds.get("SOPClassUID", "")) in NON_IMAGE_SOP_CLASSES or "SOPInstanceUID" not in ds:
        return None
    for keyword in _TYPE_2:
        if keyword not in ds:
            setattr(ds, keyword, None)
    if "FrameOfReferenceUID" in ds and "ImagePositionPatient" in ds and "SliceThickness" not in ds:
        ds.SliceThickness = None  # highdicom reads it for the pixel measures; empty is allowed
    return ds


def _read_header(stream, name: str) -> tuple[str, Dataset] | None:
    try:
        ds = pydicom.dcmread(stream, stop_before_pixels=True)
    except Exception:  # not DICOM: the loader skipped it too
        return None
    ds = _image_header(ds)
    return None if ds is None else (name, ds)


def dicom_sources(source: str | Path | None) -> list[tuple[Path | None, Dataset]]:
    """The DICOM images a volume was read from (a file, a series folder or a zipped series), headers only.

    Returns ``(file, header)`` pairs (file None for a zip member); an empty list for a non-DICOM
    source, or none at all.
    """
    if source is None or not str(source):
        return []
    path = Path(source)
    if path.is_dir():
        found = [_read_header(str(p), p) for p in sorted(path.rglob("*"))
                 if p.is_file() and not p.name.startswith(".") and p.name.upper() != "DICOMDIR"]
        return [(Path(name), ds) for name, ds in (f for f in found if f)]
    if not path.is_file():
        return []
    kind = detect_format(path)
    if kind == "dicom":
        ds = _image_header(pydicom.dcmread(str(path), stop_before_pixels=True, force=True))
        return [] if ds is None else [(path, ds)]
    if kind == "zip":
        with zipfile.ZipFile(path) as archive:
            found = [_read_header(io.BytesIO(archive.read(member)), member.filename)
                     for member in archive.infolist() if not member.is_dir()]
        return [(None, ds) for _, ds in sorted((f for f in found if f), key=lambda f: f[0])]
    return []


def _referencable(headers: list[Dataset]) -> bool:
    """highdicom can reference these source images: one single-frame image, or a geometry to place frames by."""
    first = headers[0]
    frames = int(first.get("NumberOfFrames", 1) or 1)
    if len(headers) == 1 and frames == 1:
        return True
    if "FrameOfReferenceUID" not in first:
        return False
    if len(headers) > 1:
        return all("ImagePositionPatient" in ds and "ImageOrientationPatient" in ds and "PixelSpacing" in ds
                   for ds in headers)
    return "PerFrameFunctionalGroupsSequence" in first  # an enhanced multi-frame image


@dataclass
class SegReference:
    """The images a SEG of ``volume`` references, and how a mask on the volume's grid lands on their frames.

    Attributes:
        volume: the scan.
        images: the source images' headers (a DICOM scan), or the derived Secondary Capture images.
        derived: True when ``images`` were made here: they must be written with the SEG.
        files: the DICOM files of ``images`` (None for zip members, and for derived images).
        note: why a DICOM scan got a derived copy instead, if it did.
    """

    volume: Volume
    images: list[Dataset]
    derived: bool
    files: list[Path | None] = field(default_factory=list)
    note: str = ""

    def frames(self, mask: np.ndarray) -> np.ndarray:
        """``mask`` (the volume's array shape) as ``(frames, rows, columns)`` bool, frame i on ``images``' i-th
        frame: one per image of a series, one per frame of a single (multi-frame) image."""
        mask = np.asarray(mask)
        if mask.shape != self.volume.array.shape:
            raise DicomSegError(f"the mask's shape {mask.shape} is not the scan's {self.volume.array.shape}")
        if self.derived or len(self.images) == 1:
            if self.derived or not self.volume.is_3d:
                frames = self.volume.display_slices_of(mask > 0)  # the derived slices; a 2-D image as it is
            else:  # a multi-frame file: its frames in stored order, as the loader undoes its own reordering
                frames = to_file_layout(mask > 0, self.files[0])
            expected = len(self.images) if self.derived else int(self.images[0].get("NumberOfFrames", 1) or 1)
            if len(frames) != expected or frames.shape[1:] != (int(self.images[0].Rows), int(self.images[0].Columns)):
                raise DicomSegError(f"the scan's {len(frames)} slices of {frames.shape[1:]} do not match its DICOM "
                                    f"image ({expected} frames of {self.images[0].Rows}x{self.images[0].Columns})")
            return frames
        return _series_frames(mask > 0, self.volume, self.images)


def _series_frames(mask: np.ndarray, volume: Volume, headers: list[Dataset]) -> np.ndarray:
    """Each source image's pixels looked up in ``mask`` through its position, orientation and spacing.

    The in-plane indices come from the geometry (they are whole numbers up to rounding); along the
    slice axis the images take their rank, as the loader stacks them.
    """
    rows, columns = int(headers[0].Rows), int(headers[0].Columns)
    r, c = np.mgrid[:rows, :columns].reshape(2, -1).astype(float)
    to_index = np.linalg.inv(volume.affine)
    coords = []
    for ds in headers:
        iop = np.array([float(v) for v in ds.ImageOrientationPatient])
        ipp = np.array([float(v) for v in ds.ImagePositionPatient])
        row_mm, col_mm = (float(v) for v in ds.PixelSpacing)
        lps = ipp[:, None] + iop[:3, None] * (c * col_mm) + iop[3:, None] * (r * row_mm)
        ras = lps * np.array([-1.0, -1.0, 1.0])[:, None]
        coords.append(to_index[:3, :3] @ ras + to_index[:3, 3:])
    coords = np.stack(coords)  # (images, 3, pixels) continuous voxel indices
    spread = np.ptp(coords, axis=2).max(axis=0)
    axis = int(np.argmin(spread))
    plane = [a for a in range(3) if a != axis]
    rounded = np.rint(coords)
    if spread[axis] > 0.05 or np.abs(coords[:, plane] - rounded[:, plane]).max() > 0.25:
        raise DicomSegError("the DICOM images' positions do not match the scan's voxel grid")
    if len(headers) != volume.array.shape[axis]:
        raise DicomSegError(f"{len(headers)} DICOM images for a scan of {volume.array.shape[axis]} slices")
    rank = np.empty(len(headers), int)
    rank[np.argsort(coords[:, axis, 0])] = np.arange(len(headers))
    rounded[:, axis, :] = rank[:, None]
    index = rounded.astype(int)
    shape = np.array(volume.array.shape)[None, :, None]
    if (index < 0).any() or (index >= shape).any():
        raise DicomSegError("the DICOM images reach outside the scan's voxel grid")
    return mask[index[:, 0], index[:, 1], index[:, 2]].reshape(len(headers), rows, columns)


def _person(name: str) -> str:
    """A user or file name as a one-component Person Name (the trailing caret says it is one on purpose)."""
    return name if "^" in name else f"{name}^"


def _ds(value: float) -> DS:
    return DS(float(value) + 0.0, auto_format=True)  # + 0.0: no "-0.0"


def _quantise(array: np.ndarray) -> tuple[np.ndarray, float, float]:
    """``array`` as uint16 ``stored`` with ``array ≈ stored * slope + intercept`` (exact for integer data
    spanning at most 65536 values, such as HU)."""
    low, high = float(array.min()), float(array.max())
    integral = bool(np.all(array == np.round(array))) and high - low <= 65535
    slope = 1.0 if integral or high == low else float(_ds((high - low) / 65535))
    intercept = float(_ds(low))
    stored = np.clip(np.rint((array.astype(np.float64) - intercept) / slope), 0, 65535).astype(np.uint16)
    return stored, slope, intercept


def _direction_letter(vector: np.ndarray) -> str:
    """The patient direction (LPS) a unit vector mostly points to: L/R, P/A or H/F."""
    axis = int(np.argmax(np.abs(vector)))
    return ("LR", "PA", "HF")[axis][0 if vector[axis] > 0 else 1]


def _display_geometry(volume: Volume) -> tuple[list[float], np.ndarray]:
    """Image Orientation (Patient) of the display slices and each slice's Image Position (Patient), in LPS mm.

    Display pixel (r, c) of slice k is voxel (X-1-c, Y-1-r, k) (:func:`core.types.to_display`).
    """
    x, y, n = volume.array.shape
    affine = volume.affine
    flip = np.array([-1.0, -1.0, 1.0])  # RAS -> LPS
    along_row = -affine[:3, 0] * flip  # increasing column: decreasing X
    along_column = -affine[:3, 1] * flip  # increasing row: decreasing Y
    orientation = np.concatenate([along_row / np.linalg.norm(along_row), along_column / np.linalg.norm(along_column)])
    corners = np.stack([affine @ np.array([x - 1, y - 1, k, 1.0]) for k in range(n)])[:, :3] * flip
    return orientation.tolist(), corners


def derived_images(volume: Volume, *, patient_id: str, patient_name: str | None = None,
                   description: str = "") -> list[Dataset]:
    """A derived Secondary Capture copy of ``volume``: one image per axial display slice.

    Intensities are stored as 16 bits with Rescale Slope / Intercept (type HU for CT, US otherwise)
    and the volume's display window; a 3-D volume also gets a new Frame of Reference and each
    slice its Image Position / Orientation (Patient), Pixel Spacing and Slice Thickness, so viewers
    stack the series as the volume. A 2-D image gets no patient geometry: no Frame of Reference, an
    empty Patient Orientation and no Pixel Spacing (a picture's 1 mm is the loader's assumption, and a
    SEG of an image with spacing but neither a frame of reference nor a slice thickness is one that
    highdicom 0.28 writes but cannot read back).
    """
    study, series = hd.UID(), hd.UID()
    frame_of_reference = hd.UID()
    stored, slope, intercept = _quantise(volume.array)
    slices = volume.display_slices_of(stored)
    geometry = _display_geometry(volume) if volume.is_3d else None
    orientation = ("L", "P")
    if geometry is not None:
        iop = np.array(geometry[0])
        orientation = (_direction_letter(iop[:3]), _direction_letter(iop[3:]))
    name = volume.name
    images = []
    for k, pixels in enumerate(slices):
        image = hd.sc.SCImage(
            pixel_array=np.ascontiguousarray(pixels), photometric_interpretation="MONOCHROME2", bits_allocated=16,
            coordinate_system="PATIENT", study_instance_uid=study, series_instance_uid=series,
            series_number=IMAGE_SERIES_NUMBER, sop_instance_uid=hd.UID(), instance_number=k + 1,
            manufacturer=MANUFACTURER, patient_id=patient_id, patient_name=_person(patient_name or patient_id),
            pixel_spacing=volume.display_spacing() if volume.is_3d else None, patient_orientation=orientation,
            series_description=f"SAFEGEN copy of {name}"[:64], content_qualification="RESEARCH",
        )
        image.StudyDescription = (description or f"SAFEGEN review of {name}")[:64]
        image.DerivationDescription = f"Converted by SAFEGEN from {name}; intensities stored as 16 bits with a rescale"
        image.BurnedInAnnotation = "NO"
        image.RescaleIntercept, image.RescaleSlope = _ds(intercept), _ds(slope)
        image.RescaleType = "HU" if volume.modality is Modality.CT else "US"
        if volume.window is not None:
            image.WindowCenter, image.WindowWidth = _ds(volume.window.center), _ds(volume.window.width)
        if geometry is None:
            image.PatientOrientation = None  # a picture's orientation is not known
        else:
            image.FrameOfReferenceUID = frame_of_reference
            image.PositionReferenceIndicator = None
            image.ImageOrientationPatient = [_ds(v) for v in geometry[0]]
            image.ImagePositionPatient = [_ds(v) for v in geometry[1][k]]
            image.SliceThickness = image.SpacingBetweenSlices = _ds(volume.spacing[2])
        images.append(image)
    return images


def seg_reference(volume: Volume, source: str | Path | None = None, *, patient_id: str | None = None,
                  patient_name: str | None = None) -> SegReference:
    """What a SEG of ``volume`` references: the DICOM images at ``source`` (the file, folder or zip the
    volume was read from), or, for any other source or none, a new derived series of the volume.

    ``patient_id`` / ``patient_name`` name the patient of a derived series (default: the scan's file stem).
    """
    sources = dicom_sources(source)
    note = ""
    if sources:
        headers = [ds for _, ds in sources]
        if _referencable(headers) and (len(sources) > 1 or not volume.is_3d or sources[0][0] is not None):
            return SegReference(volume, headers, derived=False, files=[path for path, _ in sources])
        note = ("its DICOM frames cannot be referenced one by one (no per-frame geometry, or a multi-frame file "
                "inside a zip), so the SEG references a derived copy of the scan")
    stem = patient_id or (volume.name.split(".")[0] or "scan")
    return SegReference(volume, derived_images(volume, patient_id=stem, patient_name=patient_name), derived=True,
                        note=note)


def segmentation(reference: SegReference, mask: np.ndarray, author: MaskAuthor, *,
                 series_number: int = SEG_SERIES_NUMBER) -> hd.seg.Segmentation:
    """A BINARY SEG of ``mask`` (the volume's array shape) with one segment by ``author``, referencing
    ``reference.images`` (same study, patient and frame of reference)."""
    frames = reference.frames(mask)
    what = "SAFEGEN unsafe-region mask" if author.automatic else "a reader's artifact mask"
    try:
        with warnings.catch_warnings():
            # the source's patient name is copied as it is (a study's "case-001" is one component on purpose)
            warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person name")
            return hd.seg.Segmentation(
                source_images=reference.images, pixel_array=frames.astype(np.uint8),
                segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
                segment_descriptions=[segment_description(author)], series_instance_uid=hd.UID(),
                series_number=series_number, sop_instance_uid=hd.UID(), instance_number=1,
                manufacturer=MANUFACTURER, manufacturer_model_name="SAFEGEN", software_versions=SOFTWARE_VERSIONS,
                device_serial_number="none", content_label="SAFEGEN" if author.automatic else "READER",
                content_description=f"{what} of {reference.volume.name}"[:64],
                content_creator_name=author.creator and _person(author.creator),
                series_description=(author.label if author.automatic else f"Reader mask: {author.label}")[:64],
                content_qualification="RESEARCH",
            )
    except (ValueError, TypeError, AttributeError) as error:
        raise DicomSegError(f"no DICOM-SEG of {reference.volume.name}: {error}") from None


# --- Writing -------------------------------------------------------------------------------------------------


def image_files(reference: SegReference, *, copy_sources: bool = False) -> dict[str, Dataset | Path]:
    """The image files to store with a SEG: ``{name: dataset}`` of a derived series (``0001.dcm`` ...), or,
    with ``copy_sources``, ``{name: file}`` of the source DICOM files (zip members cannot be copied)."""
    if reference.derived:
        return {f"{k:04d}.dcm": image for k, image in enumerate(reference.images, 1)}
    if not copy_sources:
        return {}
    return {path.name: path for path in reference.files if path is not None}


def write_images(reference: SegReference, folder: Path, *, copy_sources: bool = False) -> list[Path]:
    """Write :func:`image_files` into ``folder``; returns the files written."""
    files = image_files(reference, copy_sources=copy_sources)
    if files:
        Path(folder).mkdir(parents=True, exist_ok=True)
    written = []
    for name, item in files.items():
        target = Path(folder) / name
        if isinstance(item, Path):
            shutil.copyfile(item, target)
        else:
            item.save_as(target, enforce_file_format=True)
        written.append(target)
    return written


def write_segmentation(seg: hd.seg.Segmentation, target: Path) -> Path:
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(target, enforce_file_format=True)
    return Path(target)


def write_dicom_seg(mask: np.ndarray, volume: Volume, author: MaskAuthor, target: Path, *,
                    source: str | Path | None = None, patient_id: str | None = None) -> SegReference:
    """Write the SEG of ``mask`` (the volume's array shape) to ``target`` (``<stem>.seg.dcm``) and, when it
    references a derived copy of the scan (``source`` is not DICOM), that copy to ``<stem>_images/``
    beside it. ``patient_id`` names a derived copy's patient (default ``<stem>``). Returns what the SEG references."""
    target = Path(target)
    stem = target.name.removesuffix(".dcm").removesuffix(".seg")
    reference = seg_reference(volume, source, patient_id=patient_id or stem)
    seg = segmentation(reference, mask, author)
    write_images(reference, target.parent / f"{stem}_images")
    write_segmentation(seg, target)
    return reference


def _dicom_bytes(dataset: Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def seg_zip(mask: np.ndarray, volume: Volume, author: MaskAuthor, *, source: str | Path | None = None,
            stem: str = "scan") -> bytes:
    """A zip of ``<stem>.seg.dcm`` and, for a non-DICOM scan, the derived series it references in
    ``<stem>_images/`` (a DICOM scan's SEG references the user's own files, which are not copied)."""
    reference = seg_reference(volume, source, patient_id=stem)
    seg = segmentation(reference, mask, author)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{stem}.seg.dcm", _dicom_bytes(seg))
        for name, image in image_files(reference).items():
            archive.writestr(f"{stem}_images/{name}", _dicom_bytes(image))
    return buffer.getvalue()


def write_case_segs(volume: Volume, source: Path, masks: list[tuple[str, np.ndarray, MaskAuthor]], folder: Path, *,
                    patient_id: str, images_name: str) -> tuple[list[Path], list[Path]]:
    """Several masks of one scan (a study case's readings): one SEG each, ``<folder>/<stem>.seg.dcm``, all
    referencing the same images, written once to ``<folder>/<images_name>/`` (the derived series, or a
    copy of the case's DICOM files, so the export opens without the original scan).

    Args:
        masks: ``(stem, mask on the volume's grid, author)`` per SEG.

    Returns:
        the SEG files (in the order of ``masks``) and the image files.
    """
    reference = seg_reference(volume, source, patient_id=patient_id)
    images = write_images(reference, Path(folder) / images_name, copy_sources=True)
    segs = [write_segmentation(segmentation(reference, mask, author, series_number=number),
                               Path(folder) / f"{stem}.seg.dcm")
            for number, (stem, mask, author) in enumerate(masks, SEG_SERIES_NUMBER + 1)]
    return segs, images


def from_file_layout(file_mask: np.ndarray, volume: Volume, source: str | Path) -> np.ndarray:
    """Exact inverse of :func:`core.io.to_file_layout`: a map in the file's own index order back onto
    ``volume``'s array (which :func:`core.io.load_volume` read from ``source``)."""
    positions = to_file_layout(np.arange(volume.array.size).reshape(volume.array.shape), source)
    file_mask = np.asarray(file_mask)
    if file_mask.size != positions.size:
        raise DicomSegError(f"a map of {file_mask.size} values does not fit a scan of {positions.size} voxels")
    out = np.empty(volume.array.size, dtype=file_mask.dtype)
    out[positions.ravel()] = file_mask.reshape(positions.shape).ravel()  # singleton axes may differ, not the order
    return out.reshape(volume.array.shape)


def _scored_name(cell: str, input_dir: Path) -> str:
    """A ``file`` cell of scores.csv back to the file name (a formula-like name was written with a leading quote)."""
    if cell.startswith("'") and not (input_dir / cell).exists() and (input_dir / cell[1:]).exists():
        return cell[1:]
    return cell


def write_score_segs(input_dir: Path, out_dir: Path) -> tuple[dict[str, Path], list[str]]:
    """After ``score``: a SEG of SAFEGEN's mask for every scored file whose mask is not empty.

    Reads ``OUT_DIR/scores.csv`` and ``OUT_DIR/masks/<stem>.nii.gz``; writes
    ``OUT_DIR/dicom_seg/<stem>.seg.dcm`` (AUTOMATIC, the row's method, profile, explainer and tau) and,
    for an input that is not DICOM, the derived series it references in ``OUT_DIR/dicom_seg/<stem>_images/``.
    A DICOM input's SEG references the input file itself. Files with an empty mask get no SEG (a
    SEG without a segment pixel says nothing; their row says flag 0 or unsafe area 0).

    Returns ``({file: seg path}, [one line per file whose SEG failed, or references a derived copy of a
    DICOM input])``.
    """
    input_dir, out_dir = Path(input_dir), Path(out_dir)
    with (out_dir / "scores.csv").open(newline="") as stream:
        rows = [row for row in csv.DictReader(stream) if not row["error"] and row["score"]]
    written, messages = {}, []
    for row in rows:
        name = _scored_name(row["file"], input_dir)
        stem = output_stem(name)
        try:
            file_mask = np.asarray(nib.load(str(out_dir / "masks" / f"{stem}.nii.gz")).dataobj)
            if not file_mask.any():
                continue
            path = input_dir / name
            volume = load_volume(path)
            mask = from_file_layout(file_mask, volume, path)
            author = safegen_author(method=row["method"], profile=row["profile"] or "-", explainer=row["explainer"],
                                    tau=float(row["tau"]), head=row["method"] == SAFEGEN_METHOD and not row["alpha"])
            target = out_dir / SEG_FOLDER / f"{stem}.seg.dcm"
            reference = write_dicom_seg(mask, volume, author, target, source=path)
            written[name] = target
            if reference.note:
                messages.append(f"{name}: {reference.note}")
        except Exception as error:  # one file's SEG must not stop the others
            messages.append(f"{name}: no DICOM-SEG ({error})")
    return written, messages
