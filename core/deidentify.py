"""Remove patient-identifying information from a scan before a study stores it.

DICOM: the DICOM PS3.15 Annex E *Basic Application Level Confidentiality Profile*, with no options,
as tabulated by ``dicom-anonymizer`` (Kitware; its 2026c tables): every attribute of the profile's
table is removed (X), emptied (Z) or replaced by a dummy (D), dates become ``00010101``, and every
instance UID is replaced by a new ``2.25.`` UID. Three things the library does not do are added
here, as the profile requires:

* sequences are cleaned recursively, so a name or an institution nested in any item goes too;
* overlays (groups 60xx, including their description, label and bitmap) and curves (groups 50xx)
  are dropped whole;
* an object flagged ``BurnedInAnnotation = YES`` is refused (:class:`BurnedInAnnotationError`).

Private tags are removed. The new UIDs come from a table the library keeps for the life of the
process: the same input UID always gets the same new UID, so the files of one series and study
stay together (the table is in memory only, never written). PatientName and PatientID become the
case's pseudonym; ``PatientIdentityRemoved`` and ``DeidentificationMethod`` record what was done.
Pixel data, geometry (spacing, orientation, position) and the modality stay. Text burned into the
pixels is *not* detected: only the ``BurnedInAnnotation`` flag is checked, so an admin must not
add images with unflagged burned-in text.

NIfTI: every header extension (comments, embedded DICOM headers, AFNI / FreeSurfer history ...) is
dropped and the free-text fields ``descrip``, ``aux_file``, ``db_name`` and ``intent_name`` are
cleared; the data and the affine are kept as they are. PNG/JPEG metadata is dropped by re-encoding
the pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.errors import InputError
from core.io import detect_format

PROFILE_TABLES = "dicomfields_2026c"  # dicom-anonymizer's copy of PS3.15 Annex E table E.1-1
NIFTI_TEXT_FIELDS = ("descrip", "aux_file", "db_name", "intent_name")


class BurnedInAnnotationError(InputError):
    """The DICOM header says identifying text is burned into the pixels; de-identification cannot remove it."""


def deidentify_dicom(source: Path, target: Path, pseudonym: str) -> None:
    """Write a de-identified copy of a DICOM file (see the module docstring).

    Args:
        source, target: file paths (``target``'s folder is created).
        pseudonym: written as PatientName and PatientID (e.g. ``"case-003"``) so viewers still
            have something to show.

    Raises:
        BurnedInAnnotationError: the file is flagged ``BurnedInAnnotation = YES``.
    """
    import pydicom
    from dicomanonymizer.simpledicomanonymizer import anonymize_dataset, initialize_actions

    dataset = pydicom.dcmread(str(source))
    if str(dataset.get("BurnedInAnnotation", "")).strip().upper() == "YES":
        raise BurnedInAnnotationError(
            f"{Path(source).name}: the DICOM header says text is burned into the pixels (BurnedInAnnotation = YES), "
            "which de-identification cannot remove; this image was not added, ask the study admin to blank the "
            "text or choose another image")
    actions = initialize_actions(PROFILE_TABLES)

    def clean(item: pydicom.Dataset) -> None:
        # The library applies the table to the top level only; Annex E requires every item cleaned too.
        for element in list(item):
            if element.VR == "SQ":
                for nested in element.value:
                    clean(nested)
        # Only the rules for elements present (ranges and file-meta rules always): 3x faster on multi-frame files.
        present = {tag: action for tag, action in actions.items() if len(tag) > 2 or tag[0] == 0x0002 or tag in item}
        anonymize_dataset(item, delete_private_tags=True, base_rules_gen=lambda: present)
        for element in list(item):
            if element.tag.group & 0xFF00 in (0x5000, 0x6000):  # curves, overlays
                del item[element.tag]

    clean(dataset)
    dataset.PatientName = pseudonym
    dataset.PatientID = pseudonym
    dataset.PatientIdentityRemoved = "YES"
    dataset.DeidentificationMethod = [  # LO: at most 64 characters per value
        "PS3.15 E.1 Basic Application Level Confidentiality Profile",
        f"SAFEGEN, dicom-anonymizer {PROFILE_TABLES}, sequences cleaned",
        "overlays, curves and private tags removed"]
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    dataset.save_as(str(target), enforce_file_format=False)


def deidentify_nifti(source: Path, target: Path) -> None:
    """Write a copy of a NIfTI file without header extensions or free-text header fields."""
    import nibabel as nib

    image = nib.load(str(source))
    header = image.header.copy()
    header.extensions.clear()
    for field in NIFTI_TEXT_FIELDS:
        header[field] = b""
    # The stored values and their scaling are written back as they were, never rescaled.
    out = type(image)(image.dataobj.get_unscaled(), image.affine, header)
    out.header.set_slope_inter(image.dataobj.slope, image.dataobj.inter)  # loading moved them to the proxy
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    nib.save(out, str(target))


def deidentify_file(source: Path, target_dir: Path, pseudonym: str) -> Path:
    """De-identify ``source`` into ``target_dir/<pseudonym><suffix>``; returns the new path.

    Raises:
        InputError: the file cannot be de-identified safely (a zip, an unknown format, or a DICOM
            flagged with burned-in annotation: :class:`BurnedInAnnotationError`).
    """
    kind = detect_format(Path(source))
    target_dir = Path(target_dir)
    if kind == "dicom":
        target = target_dir / f"{pseudonym}.dcm"
        deidentify_dicom(source, target, pseudonym)
    elif kind in ("nifti", "nifti-gz"):
        target = target_dir / f"{pseudonym}{'.nii.gz' if kind == 'nifti-gz' else '.nii'}"
        deidentify_nifti(source, target)
    elif kind in ("png", "jpeg"):
        from PIL import Image

        target = target_dir / f"{pseudonym}.png"
        target_dir.mkdir(parents=True, exist_ok=True)
        with Image.open(source) as picture:
            Image.fromarray(np.asarray(picture)).save(target)  # pixels only: no text chunks, no EXIF
    else:
        # A zip (a DICOM series) would need every member cleaned; refuse rather than store PHI.
        raise InputError(f"{Path(source).name}: a study case must be one NIfTI, DICOM, PNG or JPEG file "
                         f"(got {kind or 'an unknown format'})")
    return target
