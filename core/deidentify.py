"""Remove patient-identifying information from a scan before a study stores it.

DICOM: the identifying attributes of the DICOM Basic Application Level Confidentiality Profile
(PS3.15 Annex E) that SAFEGEN's inputs carry in practice are emptied or removed (names, IDs,
birth date, addresses, institution and physician names, accession and study IDs, free-text
comments, dates and times of the study, series and acquisition), every private tag is removed, and
``PatientIdentityRemoved`` / ``DeidentificationMethod`` record it. Pixel data, geometry (spacing,
orientation, position) and the modality stay, so the scan displays and exports as before.
Burned-in text in the pixels is not detected: a study admin must not add such images.

NIfTI: the free-text header fields (``descrip``, ``aux_file``, ``db_name``, ``intent_name``) are
cleared; PNG/JPEG metadata is dropped by re-encoding the pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.errors import InputError
from core.io import detect_format

# Attributes removed outright (keywords, pydicom spelling).
DICOM_REMOVE = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientBirthTime", "PatientAddress", "PatientTelephoneNumbers",
    "OtherPatientIDs", "OtherPatientNames", "OtherPatientIDsSequence", "PatientMotherBirthName", "MilitaryRank",
    "EthnicGroup", "Occupation", "AdditionalPatientHistory", "PatientComments", "InstitutionName",
    "InstitutionAddress", "InstitutionalDepartmentName", "ReferringPhysicianName", "ReferringPhysicianAddress",
    "PerformingPhysicianName", "NameOfPhysiciansReadingStudy", "OperatorsName", "PhysiciansOfRecord",
    "RequestingPhysician", "AccessionNumber", "StudyID", "StationName", "DeviceSerialNumber", "StudyDescription",
    "ImageComments", "RequestAttributesSequence", "StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate",
    "StudyTime", "SeriesTime", "AcquisitionTime", "ContentTime", "AcquisitionDateTime", "InstanceCreationDate",
    "InstanceCreationTime", "PatientAge", "PatientWeight", "PatientSize",
)
NIFTI_TEXT_FIELDS = ("descrip", "aux_file", "db_name", "intent_name")


def deidentify_dicom(source: Path, target: Path, pseudonym: str) -> None:
    """Write a de-identified copy of a DICOM file (see the module docstring).

    Args:
        source, target: file paths (``target``'s folder is created).
        pseudonym: written as PatientName and PatientID (e.g. ``"case-003"``) so viewers still
            have something to show.
    """
    import pydicom

    dataset = pydicom.dcmread(str(source))
    dataset.remove_private_tags()
    for keyword in DICOM_REMOVE:
        if keyword in dataset:
            delattr(dataset, keyword)
    dataset.PatientName = pseudonym
    dataset.PatientID = pseudonym
    dataset.PatientIdentityRemoved = "YES"
    dataset.DeidentificationMethod = "SAFEGEN: PS3.15 Annex E subset; private tags removed"
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    dataset.save_as(str(target), enforce_file_format=False)


def deidentify_nifti(source: Path, target: Path) -> None:
    """Write a copy of a NIfTI file with its free-text header fields cleared."""
    import nibabel as nib

    image = nib.load(str(source))
    header = image.header.copy()
    for field in NIFTI_TEXT_FIELDS:
        if field in header:
            header[field] = b""
    out = nib.Nifti1Image(np.asanyarray(image.dataobj), image.affine, header)
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    nib.save(out, str(target))


def deidentify_file(source: Path, target_dir: Path, pseudonym: str) -> Path:
    """De-identify ``source`` into ``target_dir/<pseudonym><suffix>``; returns the new path."""
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
