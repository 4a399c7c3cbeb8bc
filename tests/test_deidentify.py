"""De-identification before a study stores a case: PHI gone, pixels and geometry kept."""

import io
import zipfile

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from core.deidentify import DICOM_REMOVE, deidentify_file
from core.errors import InputError
from core.io import load_volume


def test_a_dicom_loses_its_phi_and_private_tags_but_keeps_pixels_and_geometry(tmp_path):
    source = get_testdata_file("CT_small.dcm")
    original = pydicom.dcmread(source)
    assert str(original.PatientName) and any(e.tag.is_private for e in original)  # there is something to remove
    target = deidentify_file(source, tmp_path, "case-001")
    cleaned = pydicom.dcmread(target)
    assert target.name == "case-001.dcm"
    assert str(cleaned.PatientName) == "case-001" and cleaned.PatientID == "case-001"
    assert cleaned.PatientIdentityRemoved == "YES"
    assert not any(e.tag.is_private for e in cleaned)
    assert not [k for k in DICOM_REMOVE if k in cleaned and k not in ("PatientName", "PatientID")]
    assert str(original.PatientName) not in target.read_bytes().decode("latin-1")
    assert np.array_equal(cleaned.pixel_array, original.pixel_array)
    assert load_volume(target).spacing == load_volume(source).spacing


def test_nifti_text_fields_are_cleared_and_data_kept(tmp_path):
    data = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    image = nib.Nifti1Image(data, np.diag([2.0, 2.0, 3.0, 1.0]))
    image.header["descrip"] = b"Jane Doe 1970-01-01"
    nib.save(image, tmp_path / "in.nii.gz")
    target = deidentify_file(tmp_path / "in.nii.gz", tmp_path / "out", "case-002")
    cleaned = nib.load(target)
    assert target.name == "case-002.nii.gz" and cleaned.header["descrip"].tobytes().strip(b"\x00") == b""
    assert np.array_equal(np.asarray(cleaned.dataobj), data) and np.allclose(cleaned.affine, image.affine)


def test_a_zip_is_refused_rather_than_stored_with_phi(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.dcm", b"x")
    (tmp_path / "series.zip").write_bytes(buffer.getvalue())
    with pytest.raises(InputError, match="one NIfTI, DICOM, PNG or JPEG"):
        deidentify_file(tmp_path / "series.zip", tmp_path / "out", "case-003")
