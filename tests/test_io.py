"""Loaders: real files give known values; a corpus of malformed files gives typed, readable errors."""

from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from core.errors import (
    CorruptFileError,
    DimensionError,
    EmptyImageError,
    NonFiniteError,
    SeriesMismatchError,
    TooLargeError,
    UnsupportedFormatError,
)
from core.io import SizeLimits, detect_format, load_upload, load_volume
from core.resources import package_file
from core.types import Modality

CT_UID = "1.2.840.10008.5.1.4.1.1.2"


def nifti(path: Path, data: np.ndarray, affine=None) -> Path:
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))
    return path


def ct_slice(z: float, value: int, *, series_uid: str, rows: int = 8, cols: int = 6, description: str = "axial") -> FileDataset:
    """A minimal valid CT slice at height z (mm), every pixel = value (raw); rescale -1024."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_UID
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = CT_UID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesDescription = description
    ds.Rows, ds.Columns = rows, cols
    ds.PixelSpacing = [0.5, 0.7]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [-10.0, -20.0, z]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    pixels = np.full((rows, cols), value, dtype=np.uint16)
    pixels[0, 0] = value + 1  # not constant, so the image passes validation
    ds.PixelData = pixels.tobytes()
    return ds


def write_series(folder: Path, zs, values, **kw) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    uid = kw.pop("series_uid", generate_uid())
    for i, (z, v) in enumerate(zip(zs, values, strict=True)):
        ct_slice(z, v, series_uid=uid, **kw).save_as(folder / f"im{i}.dcm", enforce_file_format=True)
    return folder


def png_bytes(array: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, format="PNG")
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------
# The malformed corpus: (id, builder(tmp) -> path, limits, expected error, phrase in the message)

def _truncated_gz(tmp):
    good = nifti(tmp / "good.nii.gz", np.random.default_rng(0).random((20, 20, 20)).astype(np.float32))
    bad = tmp / "cut.nii.gz"
    bad.write_bytes(good.read_bytes()[:300])
    return bad


def _truncated_nii(tmp):
    good = nifti(tmp / "good.nii", np.random.default_rng(0).random((20, 20, 20)).astype(np.float32))
    bad = tmp / "cut.nii"
    bad.write_bytes(good.read_bytes()[:2000])
    return bad


def _with_value(value):
    def build(tmp):
        data = np.random.default_rng(0).random((6, 6, 4)).astype(np.float32)
        data[2, 3, 1] = value
        return nifti(tmp / "bad.nii.gz", data)
    return build


def _two_series(tmp):
    folder = write_series(tmp / "mixed", [0, 1], [100, 200], description="T1")
    write_series(folder / "other", [0], [300], description="scout")
    return folder


def _mismatched_rows(tmp):
    uid = generate_uid()
    folder = write_series(tmp / "rows", [0, 1], [100, 200], series_uid=uid)
    ct_slice(2, 300, series_uid=uid, rows=9).save_as(folder / "odd.dcm", enforce_file_format=True)
    return folder


def _segmentation(tmp):
    ds = ct_slice(0, 100, series_uid=generate_uid())
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.66.4"
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.save_as(tmp / "seg.dcm", enforce_file_format=True)
    return tmp / "seg.dcm"


def _no_pixels(tmp):
    ds = ct_slice(0, 100, series_uid=generate_uid())
    del ds.PixelData
    ds.save_as(tmp / "header_only.dcm", enforce_file_format=True)
    return tmp / "header_only.dcm"


def _truncated_dicom(tmp):
    ds = ct_slice(0, 100, series_uid=generate_uid(), rows=64, cols=64)
    ds.save_as(tmp / "full.dcm", enforce_file_format=True)
    data = (tmp / "full.dcm").read_bytes()
    (tmp / "cut.dcm").write_bytes(data[: len(data) - 4000])
    return tmp / "cut.dcm"


def _truncated_picture(fmt, suffix):
    def build(tmp):
        buffer = io.BytesIO()
        Image.fromarray((np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8)).save(buffer, format=fmt)
        path = tmp / f"cut.{suffix}"
        path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        return path
    return build


def _zip_traversal(tmp):
    path = tmp / "evil.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("../../escape.dcm", b"x" * 10)
    return path


def _zip_bomb(tmp):
    path = tmp / "bomb.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("big.dcm", b"\0" * 5_000_000)
    return path


def _write(name, data):
    def build(tmp):
        (tmp / name).write_bytes(data)
        return tmp / name
    return build


def _empty_folder(tmp):
    (tmp / "empty").mkdir()
    return tmp / "empty"


def _folder_without_dicom(tmp):
    folder = tmp / "notes"
    folder.mkdir()
    (folder / "readme.txt").write_text("hello")
    return folder


SMALL = SizeLimits(max_file_bytes=1_000_000, max_voxels=1_000)

CORPUS = [
    ("zero-byte", _write("empty.nii", b""), None, UnsupportedFormatError, "empty file"),
    ("random-bytes.nii", _write("noise.nii", np.random.default_rng(1).bytes(4000)), None, UnsupportedFormatError, "not a NIfTI"),
    ("truncated.nii.gz", _truncated_gz, None, CorruptFileError, "cut short"),
    ("truncated.nii", _truncated_nii, None, CorruptFileError, "cut short"),
    ("text-as.png", _write("notes.png", b"patient notes\n" * 20), None, UnsupportedFormatError, "plain text"),
    ("text-as.dcm", _write("notes.dcm", b"patient notes\n" * 20), None, UnsupportedFormatError, "plain text"),
    ("random-as.dcm", _write("noise.dcm", np.random.default_rng(2).bytes(3000)), None, UnsupportedFormatError, "unrecognised binary"),
    ("pdf-as.png", _write("report.png", b"%PDF-1.7\n" + b"\x00\x01" * 100), None, UnsupportedFormatError, "PDF"),
    ("html-as.nii", _write("page.nii", b"<html><body>404</body></html>" * 20), None, UnsupportedFormatError, "HTML"),
    ("nan-voxel", _with_value(np.nan), None, NonFiniteError, "NaN or infinite"),
    ("inf-voxel", _with_value(np.inf), None, NonFiniteError, "1 voxels"),
    ("4d-series", lambda t: nifti(t / "fmri.nii.gz", np.random.default_rng(0).random((4, 4, 3, 5)).astype(np.float32)), None, DimensionError, "4-D image with 5 volumes"),
    ("constant", lambda t: nifti(t / "flat.nii.gz", np.full((5, 5, 5), 7.0, np.float32)), None, EmptyImageError, "value 7"),
    ("all-zero", lambda t: nifti(t / "zero.nii.gz", np.zeros((5, 5, 5), np.float32)), None, EmptyImageError, "value 0"),
    ("too-big-file", lambda t: nifti(t / "big.nii", np.random.default_rng(0).random((80, 80, 80)).astype(np.float32)), SMALL, TooLargeError, "the limit is"),
    ("too-many-voxels", lambda t: nifti(t / "vox.nii.gz", np.random.default_rng(0).random((20, 20, 20)).astype(np.float32)), SMALL, TooLargeError, "8,000 voxels"),
    ("truncated-dicom", _truncated_dicom, None, CorruptFileError, "cut short"),
    ("dicom-seg", _segmentation, None, UnsupportedFormatError, "segmentation"),
    ("dicom-no-pixels", _no_pixels, None, UnsupportedFormatError, "no pixel data"),
    ("two-series-folder", _two_series, None, SeriesMismatchError, "2 different series"),
    ("mismatched-rows", _mismatched_rows, None, SeriesMismatchError, "Rows"),
    ("duplicate-positions", lambda t: write_series(t / "dup", [0, 1, 1], [100, 200, 300]), None, SeriesMismatchError, "same slice position"),
    ("truncated-png", _truncated_picture("PNG", "png"), None, CorruptFileError, "cut short"),
    ("truncated-jpeg", _truncated_picture("JPEG", "jpg"), None, CorruptFileError, "cut short"),
    ("zip-traversal", _zip_traversal, None, UnsupportedFormatError, "unsafe path"),
    ("zip-bomb", _zip_bomb, SMALL, TooLargeError, "unpacks to"),
    ("damaged-zip", _write("series.zip", b"PK\x03\x04" + b"\x00" * 50), None, CorruptFileError, "damaged zip"),
    ("empty-folder", _empty_folder, None, UnsupportedFormatError, "no DICOM images"),
    ("folder-without-dicom", _folder_without_dicom, None, UnsupportedFormatError, "no DICOM images"),
]


@pytest.mark.parametrize(("builder", "limits", "error", "phrase"), [c[1:] for c in CORPUS], ids=[c[0] for c in CORPUS])
def test_malformed_input_gets_a_typed_error_with_a_clear_message(tmp_path, builder, limits, error, phrase):
    path = builder(tmp_path)
    with pytest.raises(error) as caught:
        load_volume(path, limits=limits or SizeLimits())
    assert phrase in str(caught.value)
    assert "Traceback" not in str(caught.value)


def test_the_corpus_is_big_enough():
    assert len(CORPUS) >= 15


# --------------------------------------------------------------------------------------------
# Real files with known answers


def test_ct_small_is_in_hounsfield_units():
    path = get_testdata_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    volume = load_volume(path)
    assert volume.modality is Modality.CT and volume.array.shape == (128, 128)
    raw = ds.pixel_array.astype(np.float64)
    expected = raw * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    for r, c in [(0, 0), (64, 64), (100, 17)]:
        assert volume.array[r, c] == pytest.approx(expected[r, c])
    assert volume.spacing == pytest.approx((0.661468, 0.661468))


def test_mr_small_loads_as_a_2d_mr_image():
    volume = load_volume(get_testdata_file("MR_small.dcm"))
    assert volume.modality is Modality.MR and volume.array.shape == (64, 64) and not volume.is_3d


def test_monochrome1_radiograph_is_inverted():
    path = package_file("data_store", "data", "RG1_UNCR.dcm")
    raw = pydicom.dcmread(path).pixel_array.astype(np.float32)
    volume = load_volume(path)
    assert volume.modality is Modality.XRAY
    low, high = raw.min(), raw.max()
    for r, c in [(0, 0), (900, 900), (1500, 300)]:
        assert volume.array[r, c] == pytest.approx(low + high - raw[r, c])
    assert any("MONOCHROME1" in w for w in volume.warnings)
    assert any("pixel spacing" in w for w in volume.warnings)  # the file's PixelSpacing is 0\0


def test_nifti_in_las_order_is_reoriented_without_moving_anatomy(tmp_path):
    data = np.zeros((5, 6, 7), np.float32)
    data[1, 2, 3] = 10.0
    data[4, 0, 0] = 5.0
    las = np.diag([-2.0, 1.5, 3.0, 1.0])
    las[:3, 3] = [20, -5, 7]
    volume = load_volume(nifti(tmp_path / "las.nii.gz", data, las))
    assert volume.array.shape == (5, 6, 7) and volume.spacing == (2.0, 1.5, 3.0)
    assert np.all(np.diag(volume.affine)[:3] > 0)  # RAS+
    for value, index in [(10.0, (1, 2, 3)), (5.0, (4, 0, 0))]:
        world = las @ [*index, 1]
        new_index = np.argwhere(volume.array == value)[0]
        assert np.allclose(volume.affine @ [*new_index, 1], world)


def test_2d_nifti_becomes_a_one_slice_volume(tmp_path):
    data = np.arange(12, dtype=np.float32).reshape(3, 4)
    volume = load_volume(nifti(tmp_path / "flat.nii", data))
    assert volume.array.shape == (3, 4, 1) and volume.n_slices == 1


def test_dicom_series_is_sorted_by_position_with_the_right_geometry(tmp_path):
    zs = [4.0, 0.0, 8.0, 2.0, 6.0]  # written shuffled; raw value encodes the height
    folder = write_series(tmp_path / "series", zs, [1024 + int(z) * 10 for z in zs])
    volume = load_volume(folder)
    assert volume.modality is Modality.CT and volume.array.shape == (6, 8, 5)  # RAS: (cols, rows, slices)
    assert volume.spacing == pytest.approx((0.7, 0.5, 2.0))
    centre_values = [volume.array[3, 4, k] for k in range(5)]
    assert centre_values == [0.0, 20.0, 40.0, 60.0, 80.0]  # HU, inferior to superior
    # The first stored pixel (row 0, column 0) of the lowest slice sits at IPP (-10, -20, 0) LPS.
    corner = np.argwhere(volume.array[:, :, 0] == 1.0)  # the marked pixel: raw value + 1 -> HU 1
    world = volume.affine @ [*corner[0], 0, 1]
    assert np.allclose(world[:3], [10.0, 20.0, 0.0])  # LPS (-10, -20, 0) is RAS (10, 20, 0)


def test_zipped_series_loads_like_the_folder(tmp_path):
    folder = write_series(tmp_path / "series", [0, 2, 4], [1100, 1200, 1300])
    archive = tmp_path / "series.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in folder.iterdir():
            z.write(f, f"series/{f.name}")
    from_zip, from_folder = load_volume(archive), load_volume(folder)
    assert np.array_equal(from_zip.array, from_folder.array)
    assert from_zip.source == str(archive)


def test_pictures_8bit_16bit_and_rgb(tmp_path):
    gray = (np.arange(48).reshape(6, 8) * 5).astype(np.uint8)
    path = tmp_path / "g.png"
    path.write_bytes(png_bytes(gray))
    volume = load_volume(path)
    assert volume.array.shape == (6, 8) and np.array_equal(volume.array, gray.astype(np.float32))

    deep = (np.arange(48).reshape(6, 8) * 1000).astype(np.uint16)
    path16 = tmp_path / "d.png"
    path16.write_bytes(png_bytes(deep))
    assert load_volume(path16).array.max() == 47000

    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[..., 0] = 200
    rgb[2:4, 2:4, 1] = 100
    path_rgb = tmp_path / "c.png"
    path_rgb.write_bytes(png_bytes(rgb))
    colour = load_volume(path_rgb)
    assert colour.array.shape == (6, 8)
    assert any("converted to grayscale" in w for w in colour.warnings)


def test_load_upload_uses_the_uploaded_name_and_the_same_checks():
    gray = (np.arange(48).reshape(6, 8) * 5).astype(np.uint8)
    volume = load_upload("scan.png", png_bytes(gray))
    assert volume.source == "scan.png" and volume.array.shape == (6, 8)
    with pytest.raises(TooLargeError):
        load_upload("scan.png", png_bytes(gray), limits=SizeLimits(max_file_bytes=10))
    with pytest.raises(CorruptFileError):
        load_upload("broken.nii.gz", gzip.compress(b"\x5c\x01" + b"\0" * 600)[:40])


def test_dicom_without_preamble_is_still_read(tmp_path):
    ds = ct_slice(0, 1100, series_uid=generate_uid())
    ds.preamble = None
    path = tmp_path / "old.dcm"
    pydicom.dcmwrite(path, ds, enforce_file_format=False)
    assert path.read_bytes()[128:132] != b"DICM"
    assert detect_format(path) == "dicom"
    assert load_volume(path).array[3, 3] == 1100 - 1024


def test_detect_format_reads_bytes_not_names(tmp_path):
    gray = (np.arange(48).reshape(6, 8) * 5).astype(np.uint8)
    misnamed = tmp_path / "scan.dcm"
    misnamed.write_bytes(png_bytes(gray))
    assert detect_format(misnamed) == "png"
    assert load_volume(misnamed).array.shape == (6, 8)
