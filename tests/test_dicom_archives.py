"""DICOM as archives hold it (issue 24): compressed transfer syntaxes and enhanced multi-frame images.

Real files only, shipped with pydicom and pydicom-data, with known answers: a compressed file decodes to
the pixels of its uncompressed twin (within a small difference where the compression is lossy), the
JPEG-Lossless neck CT of pydicom-data loads in HU, the enhanced CT keeps the spacing, rescale, window and
frame positions of its functional groups, and a transfer syntax nothing installed decodes is refused
with a message naming it and what to install or do.
"""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.pixels import get_decoder
from pydicom.uid import MPEG2MPML, JPEGLosslessSV1, JPEGLSLossless

from core.errors import UnsupportedFormatError
from core.io import load_volume, to_file_layout
from core.resources import package_file
from core.types import Modality, Window


def shipped_file(name: str) -> str:
    """A test file of pydicom-data (where pip installed it: no download) or of pydicom itself."""
    shipped = package_file("data_store", "data", name)
    return str(shipped) if shipped is not None and shipped.exists() else get_testdata_file(name)


# --------------------------------------------------------------------------------------------
# Compressed transfer syntaxes: the same pixels as the uncompressed twin

LOSSLESS = [  # (uncompressed twin, compressed file, shape of the loaded image)
    ("MR_small.dcm", "MR_small_RLE.dcm", (64, 64)),
    ("MR_small.dcm", "MR_small_jp2klossless.dcm", (64, 64)),
    ("MR_small.dcm", "MR_small_jpeg_ls_lossless.dcm", (64, 64)),
    ("emri_small.dcm", "emri_small_RLE.dcm", (64, 64, 10)),  # multi-frame
    ("emri_small.dcm", "emri_small_jpeg_2k_lossless.dcm", (64, 64, 10)),
    ("emri_small.dcm", "emri_small_jpeg_ls_lossless.dcm", (64, 64, 10)),
    ("SC_rgb.dcm", "SC_rgb_rle.dcm", (100, 100)),  # colour
    ("SC_rgb.dcm", "SC_rgb_jpeg_gdcm.dcm", (100, 100)),  # JPEG Lossless SV1
    ("SC_rgb.dcm", "SC_rgb_gdcm_KY.dcm", (100, 100)),  # JPEG 2000
    ("693_UNCR.dcm", "693_J2KR.dcm", (512, 512)),  # CT, JPEG 2000 lossless (pydicom-data)
    ("693_UNCI.dcm", "693_J2KI.dcm", (512, 512)),  # lossy JPEG 2000; UNCI holds its decoded pixels
    ("US1_UNCR.dcm", "US1_J2KR.dcm", (480, 640)),  # colour JPEG 2000 (YBR_RCT)
]


@pytest.mark.parametrize("plain, compressed, shape", LOSSLESS, ids=[c for _, c, _ in LOSSLESS])
def test_a_losslessly_compressed_file_loads_as_its_uncompressed_twin(plain, compressed, shape):
    assert pydicom.dcmread(shipped_file(compressed), stop_before_pixels=True).file_meta.TransferSyntaxUID.is_compressed
    want, got = load_volume(shipped_file(plain)), load_volume(shipped_file(compressed))
    assert got.array.shape == want.array.shape == shape
    assert got.spacing == want.spacing and got.modality is want.modality
    np.testing.assert_array_equal(got.array, want.array)


LOSSY = [  # (uncompressed twin, lossy file, largest difference allowed, in the twin's units)
    ("SC_rgb.dcm", "SC_rgb_jpeg_dcmtk.dcm", 2.0),  # JPEG baseline, YBR_FULL (0..255 gray)
    ("SC_rgb.dcm", "SC_rgb_dcmtk_+eb+cy+s2.dcm", 2.0),  # JPEG baseline, YBR_FULL_422
    ("SC_rgb.dcm", "SC_rgb_jls_lossy_line.dcm", 2.0),  # JPEG-LS near-lossless
]


@pytest.mark.parametrize("plain, lossy, tolerance", LOSSY, ids=[c for _, c, _ in LOSSY])
def test_a_lossy_file_loads_close_to_its_uncompressed_twin(plain, lossy, tolerance):
    want, got = load_volume(shipped_file(plain)), load_volume(shipped_file(lossy))
    assert got.array.shape == want.array.shape and got.spacing == want.spacing
    difference = np.abs(got.array - want.array)
    assert difference.max() <= tolerance and difference.mean() < tolerance / 2


def test_lossy_jpeg_2000_ct_stays_close_to_the_original_scan():
    original, lossy = load_volume(shipped_file("693_UNCR.dcm")), load_volume(shipped_file("693_J2KI.dcm"))
    assert lossy.spacing == original.spacing == pytest.approx((0.478516, 0.478516))
    difference = np.abs(lossy.array - original.array)
    assert np.median(difference) < 60  # HU, in a scan spanning -3024..1468 HU
    assert np.corrcoef(lossy.array.ravel(), original.array.ravel())[0, 1] > 0.99


def test_jpeg_lossless_neck_ct_from_pydicom_data_loads_in_hounsfield_units():
    path = package_file("data_store", "data", "bad_sequence.dcm")  # a neck CT, JPEG Lossless (Process 14, SV1)
    assert pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID == JPEGLosslessSV1
    volume = load_volume(path)
    assert volume.modality is Modality.CT and volume.array.shape == (512, 512)
    assert volume.spacing == pytest.approx((0.287109375, 0.287109375))
    assert volume.window == Window(40.0, 350.0, "From file")
    for corner in (volume.array[-20:, :20], volume.array[-20:, -20:]):  # air behind the patient
        assert -1050 < np.median(corner) < -900
    assert 150 < np.median(volume.array[180:220, 190:250]) < 400  # the vertebral body: cancellous bone
    assert 20 < np.median(volume.array[40:80, 100:160]) < 80  # muscle
    assert volume.array.max() > 1000  # cortical bone
    assert not volume.warnings


# --------------------------------------------------------------------------------------------
# Enhanced (multi-frame) CT: its functional groups

ECT = "eCT_Supplemental.dcm"  # two frames; shared Pixel Measures 0.388672 mm, rescale -1024, window 49/102


def hounsfield_frames(path) -> np.ndarray:
    """The file's frames in stored order, rescaled by its shared Pixel Value Transformation (slope 1, -1024)."""
    return pydicom.dcmread(path).pixel_array.astype(np.float32) - 1024.0


def test_enhanced_ct_keeps_spacing_rescale_and_window_of_its_functional_groups():
    volume = load_volume(shipped_file(ECT))
    assert volume.modality is Modality.CT and volume.array.shape == (512, 512, 2)
    assert volume.spacing == pytest.approx((0.388672, 0.388672, 10.0))  # slices 10 mm apart
    assert volume.window == Window(49.0, 102.0, "From file")
    assert not any("pixel spacing" in w for w in volume.warnings)
    assert np.median(volume.array[:20, :20, 0]) == pytest.approx(-1024.0)  # air outside the head, in HU
    assert -1024.0 <= volume.array.min() and volume.array.max() < 1000


def test_enhanced_ct_frames_are_placed_by_their_plane_position_and_orientation():
    path = shipped_file(ECT)
    volume, frames = load_volume(path), hounsfield_frames(path)
    # Frame 0 lies at z = -159 mm, frame 1 at -149 mm: inferior first. Rows run posterior and columns
    # toward the patient's right (orientation -1,0,0 / 0,1,0), so a display slice is a frame mirrored.
    for k in range(2):
        np.testing.assert_array_equal(volume.display_slice(k), frames[k][:, ::-1])
    assert volume.affine[:3, 3] == pytest.approx((-99.5, 301.5 - 511 * 0.388672, -159.0), abs=1e-3)
    np.testing.assert_array_equal(to_file_layout(volume.array, path), frames)


def test_enhanced_ct_frames_stored_top_down_are_sorted_by_position(tmp_path):
    ds = pydicom.dcmread(shipped_file(ECT))
    first, second = (item.PlanePositionSequence[0] for item in ds.PerFrameFunctionalGroupsSequence)
    first.ImagePositionPatient, second.ImagePositionPatient = second.ImagePositionPatient, first.ImagePositionPatient
    path = tmp_path / "swapped.dcm"
    ds.save_as(path)
    volume, frames = load_volume(path), hounsfield_frames(path)
    np.testing.assert_array_equal(volume.display_slice(0), frames[1][:, ::-1])  # frame 1 is now inferior
    np.testing.assert_array_equal(to_file_layout(volume.array, path), frames)


def test_enhanced_ct_rescales_each_frame_by_its_own_transformation(tmp_path):
    ds = pydicom.dcmread(shipped_file(ECT))
    own = pydicom.Dataset()
    own.RescaleIntercept, own.RescaleSlope, own.RescaleType = "-1000", "2", "HU"
    ds.PerFrameFunctionalGroupsSequence[1].PixelValueTransformationSequence = [own]
    path = tmp_path / "per_frame_rescale.dcm"
    ds.save_as(path)
    raw = ds.pixel_array.astype(np.float32)
    volume = load_volume(path)
    np.testing.assert_array_equal(volume.display_slice(0), (raw[0] - 1024)[:, ::-1])  # the shared rescale
    np.testing.assert_array_equal(volume.display_slice(1), (2 * raw[1] - 1000)[:, ::-1])


# --------------------------------------------------------------------------------------------
# What cannot be decoded is refused in plain words


def test_a_transfer_syntax_no_decoder_reads_is_refused_by_name(tmp_path):
    ds = pydicom.dcmread(shipped_file("MR_small.dcm"))
    ds.file_meta.TransferSyntaxUID = MPEG2MPML
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + bytes(range(256)) * 16])  # not a real MPEG-2 stream
    ds["PixelData"].VR, ds["PixelData"].is_undefined_length = "OB", True
    path = tmp_path / "cine.dcm"
    ds.save_as(path)
    with pytest.raises(UnsupportedFormatError) as caught:
        load_volume(path)
    message = str(caught.value)
    assert message.startswith("cine.dcm is compressed as MPEG2 Main Profile / Main Level")
    assert "1.2.840.10008.1.2.4.100" in message and "uncompressed" in message
    assert "plugin" not in message and "Unable to" not in message


def test_a_missing_decoder_is_named_with_what_to_install(monkeypatch):
    monkeypatch.setattr(get_decoder(JPEGLSLossless), "_available", {})  # as if pyjpegls were not installed
    with pytest.raises(UnsupportedFormatError) as caught:
        load_volume(shipped_file("MR_small_jpeg_ls_lossless.dcm"))
    message = str(caught.value)
    assert "JPEG-LS Lossless Image Compression" in message and JPEGLSLossless in message
    assert "install pyjpegls" in message and "requirements.txt" in message
    assert "plugin" not in message and "Unable to" not in message
