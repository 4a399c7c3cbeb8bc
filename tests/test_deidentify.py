"""De-identification before a study stores a case: PHI gone, pixels and geometry kept.

The planted-PHI files carry every element that an audit (issue 22, finding 10) found surviving the
earlier hand-written list; each test searches the raw bytes of the written file for every string.
"""

import gzip
import io
import zipfile

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID_dictionary, CTImageStorage, ExplicitVRLittleEndian

from core.deidentify import BurnedInAnnotationError, deidentify_file
from core.errors import InputError
from core.io import load_volume

# Every planted value is unique, so finding its bytes anywhere in the output means it leaked.
DICOM_PHI = {
    "PatientName": "DOE^JANE^Q",
    "PatientID": "MRN-4417",
    "PatientBirthDate": "19640302",
    "IssuerOfPatientID": "STMARYS-ISSUER",
    "MedicalRecordLocator": "MRLOC-8812",
    "SeriesDescription": "SERDESC-DOE-HEAD",
    "ProtocolName": "PROTO-DOE-STROKE",
    "ReasonForStudy": "REASON-FELL-AT-HOME",
    "ReasonForTheRequestedProcedure": "REQREASON-HEADACHE",
    "RequestedProcedureDescription": "REQPROC-CT-HEAD-DOE",
    "PerformedProcedureStepDescription": "PPSDESC-DOE",
    "PerformedProcedureStepStartDate": "20230417",
    "PerformedProcedureStepStartTime": "101112",
    "AdmittingDiagnosesDescription": "ADMITDX-SUBDURAL",
    "InstitutionName": "ST MARYS HOSPITAL",
    "AccessionNumber": "ACC-9988",
    "StudyDate": "20230418",
}
NESTED_PHI = {
    "RequestAttributesSequence": {"ScheduledProcedureStepDescription": "SPSDESC-NESTED-DOE",
                                  "RequestedProcedureDescription": "REQPROC-NESTED-DOE",
                                  "ScheduledProcedureStepStartDate": "20230416"},
    "ReferencedPatientSequence": {"PatientName": "ROE^RICHARD^NESTED"},
    "ContributingEquipmentSequence": {"InstitutionName": "NESTED GENERAL INFIRMARY"},
    # A sequence the profile keeps ("K"): only cleaning every item removes the name inside it.
    "AnatomicRegionSequence": {"PatientName": "DEEP^NESTED^PERSON"},
}
OVERLAY_AND_PRIVATE_PHI = {
    "OverlayDescription": "OVL-DOE-LABEL",
    "OverlayData": "OVLDATA-DOE^JANE^Q",
    "CurveDescription": "CURVE-DOE-ECG",
    "CurveData": "CURVEDATA-DOE",
    "private tag": "PRIVATE-DOE-MRN",
}
STUDY_UID = "1.2.999.19640302.1"  # a UID that embeds the birth date
SERIES_UID = "1.2.999.55.2"
FRAME_UID = "1.2.999.55.3"
ALL_PHI = {**DICOM_PHI, **{f"{seq}.{k}": v for seq, item in NESTED_PHI.items() for k, v in item.items()},
           **OVERLAY_AND_PRIVATE_PHI, "StudyInstanceUID": STUDY_UID}


def planted_dicom(path, number=1, burned_in=False):
    """A CT slice of series SERIES_UID whose header holds every planted string; returns its pixels."""
    sop_uid = f"1.2.999.55.4.{number}"
    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.MediaStorageSOPClassUID = CTImageStorage
    dataset.file_meta.MediaStorageSOPInstanceUID = sop_uid
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.SOPClassUID, dataset.SOPInstanceUID = CTImageStorage, sop_uid
    dataset.StudyInstanceUID, dataset.SeriesInstanceUID, dataset.FrameOfReferenceUID = STUDY_UID, SERIES_UID, FRAME_UID
    dataset.Modality, dataset.PatientSex = "CT", "F"
    dataset.BurnedInAnnotation = "YES" if burned_in else "NO"
    for keyword, value in DICOM_PHI.items():
        setattr(dataset, keyword, value)
    for sequence, values in NESTED_PHI.items():
        item = Dataset()
        for keyword, value in values.items():
            setattr(item, keyword, value)
        setattr(dataset, sequence, [item])
    region = dataset.AnatomicRegionSequence[0]
    region.CodeValue, region.CodingSchemeDesignator, region.CodeMeaning = "T-D1100", "SRT", "Head"
    dataset.ReferencedPatientSequence[0].ReferencedSOPClassUID = "1.2.840.10008.3.1.2.1.4"
    dataset.ReferencedPatientSequence[0].ReferencedSOPInstanceUID = "1.2.999.55.9"
    dataset.Rows = dataset.Columns = 8
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, "MONOCHROME2"
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = 16, 12, 11, 0
    dataset.PixelSpacing, dataset.SliceThickness = [0.5, 0.5], 2.0
    pixels = np.random.default_rng(number).integers(0, 4000, (8, 8), dtype=np.uint16)
    dataset.PixelData = pixels.tobytes()
    overlay = {0x0010: ("US", 8), 0x0011: ("US", 8), 0x0022: ("LO", OVERLAY_AND_PRIVATE_PHI["OverlayDescription"]),
               0x0040: ("CS", "G"), 0x0050: ("SS", [1, 1]), 0x0100: ("US", 1), 0x0102: ("US", 0),
               0x3000: ("OW", OVERLAY_AND_PRIVATE_PHI["OverlayData"].encode())}
    for element, (vr, value) in overlay.items():
        dataset.add_new((0x6000, element), vr, value)
    dataset.add_new((0x5000, 0x0005), "US", 1)
    dataset.add_new((0x5000, 0x0022), "LO", OVERLAY_AND_PRIVATE_PHI["CurveDescription"])
    dataset.add_new((0x5000, 0x3000), "OW", OVERLAY_AND_PRIVATE_PHI["CurveData"].encode() + b"\0")
    dataset.private_block(0x0009, "ACME PHI", create=True).add_new(0x01, "LO", OVERLAY_AND_PRIVATE_PHI["private tag"])
    dataset.save_as(path, enforce_file_format=True)
    return pixels


def leaked(raw: bytes, planted: dict) -> list[str]:
    """The names of the planted values whose bytes occur in ``raw``."""
    return [name for name, value in planted.items() if value.encode() in raw]


def file_bytes(path) -> bytes:
    """A file's bytes, decompressed when it is gzipped (a .nii.gz)."""
    return gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()


def instance_uids(dataset) -> set[str]:
    """Every UID value in the dataset (file meta and nested items included) that is not a registered DICOM UID."""
    found = set()

    def collect(_, element):
        if element.VR == "UI" and element.value and element.keyword != "ImplementationClassUID":  # the writer's
            found.update(v for v in np.atleast_1d(element.value) if v not in UID_dictionary)

    dataset.file_meta.walk(collect)
    dataset.walk(collect)
    return found


def test_planted_dicom_holds_every_string_before_cleaning(tmp_path):
    planted_dicom(tmp_path / "in.dcm")
    assert leaked((tmp_path / "in.dcm").read_bytes(), ALL_PHI) == list(ALL_PHI)  # the search can see them


def test_no_planted_phi_string_survives_anywhere_in_the_written_dicom(tmp_path):
    planted_dicom(tmp_path / "in.dcm")
    target = deidentify_file(tmp_path / "in.dcm", tmp_path / "out", "case-001")
    assert leaked(target.read_bytes(), ALL_PHI) == []
    cleaned = pydicom.dcmread(target)
    assert not [e for e in cleaned if e.tag.group & 0xFF00 in (0x5000, 0x6000)], "overlays and curves are dropped"
    assert not any(e.tag.is_private for e in cleaned)
    assert str(cleaned.PatientName) == "case-001" and cleaned.PatientID == "case-001"
    assert cleaned.PatientIdentityRemoved == "YES" and "Basic Application" in cleaned.DeidentificationMethod[0]


def test_dicom_pixels_and_geometry_are_kept(tmp_path):
    pixels = planted_dicom(tmp_path / "in.dcm")
    cleaned = pydicom.dcmread(deidentify_file(tmp_path / "in.dcm", tmp_path / "out", "case-001"))
    assert np.array_equal(cleaned.pixel_array, pixels)
    assert cleaned.PixelSpacing == [0.5, 0.5] and cleaned.Modality == "CT"


def test_every_uid_is_replaced_and_one_series_stays_together(tmp_path):
    planted_dicom(tmp_path / "a.dcm", number=1)
    planted_dicom(tmp_path / "b.dcm", number=2)
    originals = instance_uids(pydicom.dcmread(tmp_path / "a.dcm")) | instance_uids(pydicom.dcmread(tmp_path / "b.dcm"))
    a = deidentify_file(tmp_path / "a.dcm", tmp_path / "out", "case-001")
    b = deidentify_file(tmp_path / "b.dcm", tmp_path / "out", "case-002")
    for target in (a, b):
        assert not [uid for uid in originals if uid.encode() in target.read_bytes()]
    first, second = pydicom.dcmread(a), pydicom.dcmread(b)
    assert first.StudyInstanceUID == second.StudyInstanceUID
    assert first.SeriesInstanceUID == second.SeriesInstanceUID
    assert first.FrameOfReferenceUID == second.FrameOfReferenceUID
    assert first.SOPInstanceUID != second.SOPInstanceUID
    assert first.file_meta.MediaStorageSOPInstanceUID == first.SOPInstanceUID


def test_burned_in_annotation_is_refused_with_a_clear_error(tmp_path):
    planted_dicom(tmp_path / "in.dcm", burned_in=True)
    with pytest.raises(BurnedInAnnotationError, match="BurnedInAnnotation = YES") as refused:
        deidentify_file(tmp_path / "in.dcm", tmp_path / "out", "case-001")
    assert isinstance(refused.value, InputError)  # the study admin page shows InputErrors as messages
    assert not (tmp_path / "out").exists()


def test_a_library_dicom_loses_its_phi_and_private_tags_but_keeps_pixels_and_geometry(tmp_path):
    source = get_testdata_file("CT_small.dcm")
    original = pydicom.dcmread(source)
    assert str(original.PatientName) and any(e.tag.is_private for e in original)  # there is something to remove
    target = deidentify_file(source, tmp_path, "case-001")
    cleaned = pydicom.dcmread(target)
    assert target.name == "case-001.dcm"
    assert not any(e.tag.is_private for e in cleaned)
    assert str(original.PatientName).encode() not in target.read_bytes()
    assert np.array_equal(cleaned.pixel_array, original.pixel_array)
    assert load_volume(target).spacing == load_volume(source).spacing


NIFTI_PHI = {
    "descrip": "Jane Doe 1964-03-02",
    "aux_file": "doe_jane.lut",
    "db_name": "STMARYS-DB",
    "intent_name": "DOE-INTENT",
    "comment extension": "COMMENT: scanned for Jane Doe",
    "DICOM extension name": "DOE^JANE^NIFTI",
    "DICOM extension ID": "MRN-NIFTI-5521",
    "AFNI history": "3dcalc by jdoe on st-marys-ws7",
}


def planted_nifti(path):
    data = (np.arange(24, dtype=np.int16) * 7 - 50).reshape(2, 3, 4)
    image = nib.Nifti1Image(data, np.array([[2.0, 0, 0, -10], [0, 2.0, 0, 5], [0, 0, 3.0, 1], [0, 0, 0, 1]]))
    image.header.set_slope_inter(0.5, 10.0)
    for field in ("descrip", "aux_file", "db_name", "intent_name"):
        image.header[field] = NIFTI_PHI[field].encode()
    embedded = Dataset()
    embedded.PatientName, embedded.PatientID = NIFTI_PHI["DICOM extension name"], NIFTI_PHI["DICOM extension ID"]
    image.header.extensions += [
        nib.nifti1.Nifti1Extension("comment", NIFTI_PHI["comment extension"].encode()),
        nib.nifti1.Nifti1DicomExtension(2, embedded),
        nib.nifti1.Nifti1Extension("afni", f"<AFNI_attributes HISTORY_NOTE='{NIFTI_PHI['AFNI history']}'/>".encode()),
    ]
    nib.save(image, path)
    return nib.load(path)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti_extensions_and_text_fields_are_dropped_and_data_kept(tmp_path, suffix):
    original = planted_nifti(tmp_path / f"in{suffix}")
    assert [e.get_code() for e in original.header.extensions] == [6, 2, 4]
    target = deidentify_file(tmp_path / f"in{suffix}", tmp_path / "out", "case-002")
    assert target.name == f"case-002{suffix}"
    assert leaked(file_bytes(tmp_path / f"in{suffix}"), NIFTI_PHI) == list(NIFTI_PHI)  # the search can see them
    assert leaked(file_bytes(target), NIFTI_PHI) == []
    cleaned = nib.load(target)
    assert len(cleaned.header.extensions) == 0
    assert np.array_equal(np.asanyarray(cleaned.dataobj), np.asanyarray(original.dataobj))
    assert cleaned.get_data_dtype() == original.get_data_dtype()
    assert (cleaned.dataobj.slope, cleaned.dataobj.inter) == (0.5, 10.0)  # stored values not rescaled
    assert np.array_equal(cleaned.affine, original.affine)


def test_a_zip_is_refused_rather_than_stored_with_phi(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.dcm", b"x")
    (tmp_path / "series.zip").write_bytes(buffer.getvalue())
    with pytest.raises(InputError, match="one NIfTI, DICOM, PNG or JPEG"):
        deidentify_file(tmp_path / "series.zip", tmp_path / "out", "case-003")
