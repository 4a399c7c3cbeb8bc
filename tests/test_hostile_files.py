"""Hostile files (issue 22, finding 11): nothing hangs, nothing inflates past the limits, every entry gets a row.

Named pipes, devices, link loops and folders under image names; headers that declare or hide huge
sizes; images too small to score; a volume that is one sagittal slice; header extensions that would
shift the image; complex voxels. Every file here is a few kilobytes: the size limits are set tiny
where a case needs a big file.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import plistlib
import struct
import tarfile
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel.nifti1 import Nifti1Extension
from PIL import Image

from core import errors
from core.io import SizeLimits, detect_format, load_volume, to_file_layout
from workflows.cli import EXIT_BAD_INPUT, main

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need a POSIX system")


def nifti(path: Path, data: np.ndarray, affine=None) -> Path:
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))
    return path


def declared_only(path: Path, shape, dtype=np.float32) -> Path:
    """A gzipped NIfTI header that declares ``shape`` voxels, followed by a few bytes of data only."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    header["vox_offset"] = 352
    path.write_bytes(gzip.compress(header.binaryblock + b"\0" * 4 + b"\0" * 4096))
    return path


def with_extension(path: Path, esize: int, vox_offset: int, trailing: bytes = b"") -> tuple[Path, np.ndarray]:
    """A NIfTI whose one header extension declares ``esize`` bytes, with the image data written right after it."""
    header = nib.Nifti1Header()
    header.set_data_shape((4, 4, 4))
    header.set_data_dtype(np.float32)
    header["vox_offset"] = vox_offset
    header.set_sform(np.eye(4), code=1)  # RAS already: the loader does not reorient it
    data = np.arange(1, 65, dtype=np.float32).reshape(4, 4, 4)
    extension = struct.pack("<ii", esize, 0) + b"\x07" * (esize - 8)
    path.write_bytes(header.binaryblock + b"\x01\0\0\0" + extension + data.tobytes(order="F") + trailing)
    return path, data


def lying_zip(path: Path, claimed: int, inflated: int) -> Path:
    """A zip whose one member's headers claim ``claimed`` bytes while its deflate stream inflates to ``inflated``."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    payload = compressor.compress(b"\0" * inflated) + compressor.flush()
    name = b"a.dcm"
    local = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, 0, 0, 0, len(payload), claimed, len(name), 0)
    central = struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, 0, len(payload), claimed,
                          len(name), 0, 0, 0, 0, 0, 0)
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, len(central + name), len(local + name + payload), 0)
    path.write_bytes(local + name + payload + central + name + end)
    return path


def peak_bytes(action) -> tuple[int, BaseException | None]:
    """Peak Python and numpy heap use while ``action()`` runs, and what it raised."""
    tracemalloc.start()
    raised = None
    try:
        action()
    except Exception as error:  # noqa: BLE001 - the caller checks what was raised
        raised = error
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak, raised


# --------------------------------------------------------------------------------------------
# The hostile folder: (name, builder(folder) -> None, phrase of the error in info and in score's row)

def _fifo(d: Path) -> None:
    os.mkfifo(d / "a.nii")


def _folder(d: Path) -> None:
    (d / "x.nii").mkdir()


def _loop(d: Path) -> None:
    os.symlink("loop2.nii", d / "loop1.nii")
    os.symlink("loop1.nii", d / "loop2.nii")


def _zipped_series(d: Path) -> None:
    with zipfile.ZipFile(d / "series.zip", "w") as archive:
        archive.writestr("series/a.dcm", b"\0" * 200)


def _tiny_png(d: Path) -> None:
    Image.fromarray(np.array([[0, 255]], np.uint8)).save(d / "tiny.png")


def _complex(d: Path) -> None:
    rng = np.random.default_rng(0)
    nifti(d / "complex.nii.gz", (rng.random((16, 16, 2)) + 1j * rng.random((16, 16, 2))).astype(np.complex64))


HOSTILE = [
    ("a.nii", _fifo, "a.nii is not a regular file but a named pipe (FIFO)"),
    ("dangling.nii", lambda d: os.symlink("missing.nii", d / "dangling.nii"),
     "dangling.nii is a broken symbolic link: it points to missing.nii, which does not exist"),
    ("loop1.nii", _loop, "loop1.nii is a symbolic link loop"),
    ("z.nii", lambda d: os.symlink("/dev/zero", d / "z.nii"),
     "not a regular file but a character device (a link to /dev/zero)"),
    ("u.png", lambda d: os.symlink("/dev/urandom", d / "u.png"), "character device (a link to /dev/urandom)"),
    ("huge.nii.gz", lambda d: declared_only(d / "huge.nii.gz", (2000, 2000, 100)),
     "huge.nii.gz has 400,000,000 voxels (2000, 2000, 100), 1.5 GB as 32-bit floats; the limit is 512.0 MB"),
    ("tiny.png", _tiny_png, "tiny.png cannot be scored: it is 1x2 pixels, and SAFEGEN scores images of at least 16x16"),
    ("complex.nii.gz", _complex, "complex.nii.gz holds complex-valued voxels (complex64)"),
]


@pytest.mark.timeout(20)
@pytest.mark.parametrize(("name", "builder", "phrase"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_info_refuses_promptly_with_a_clear_error(tmp_path, capsys, name, builder, phrase):
    builder(tmp_path)
    assert main(["info", str(tmp_path / name)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("error: ") and phrase in err and "Traceback" not in err


@pytest.mark.timeout(120)
def test_score_gives_every_entry_a_row_and_scores_a_single_slice_once(tmp_path, capsys):
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    for _, builder, _ in HOSTILE:
        builder(inputs)
    _folder(inputs)
    _zipped_series(inputs)
    rng = np.random.default_rng(1)
    sagittal = np.zeros((1, 128, 128), np.float32)
    sagittal[0, 24:104, 20:110] = 0.5 + 0.1 * rng.random((80, 90), dtype=np.float32)
    nifti(inputs / "sagittal.nii.gz", sagittal)
    (inputs / "readme.txt").write_text("not an image name: no row")
    (inputs / "=cmd.png").write_bytes((inputs / "tiny.png").read_bytes())  # a name a spreadsheet would run
    assert main(["score", str(inputs), "--out", str(out)]) == 0
    with (out / "scores.csv").open(newline="") as stream:
        rows = {row["file"]: row for row in csv.DictReader(stream)}
    expected = {"a.nii", "complex.nii.gz", "dangling.nii", "huge.nii.gz", "loop1.nii", "loop2.nii", "sagittal.nii.gz",
                "series.zip", "tiny.png", "u.png", "x.nii", "z.nii", "'=cmd.png"}  # written as text (OWASP)
    assert set(rows) == expected and len(rows) == len(expected)
    assert "scored 1 of 13 files" in capsys.readouterr().err
    assert rows["'=cmd.png"]["error"].startswith("'=cmd.png cannot be scored: it is")
    for name, _, phrase in HOSTILE:
        assert phrase in rows[name]["error"] and rows[name]["score"] == "", name
    assert "loop2.nii is a symbolic link loop" in rows["loop2.nii"]["error"]
    assert rows["x.nii"]["error"] == "x.nii is a folder, not an image file; --recursive scores the image files inside it"
    assert rows["series.zip"]["error"].startswith("series.zip is a zip archive; score reads single image files")
    scored = rows["sagittal.nii.gz"]
    assert scored["error"] == "" and scored["scored_slices"] == "1" and scored["flag"] in ("0", "1")
    assert "one sagittal slice" in scored["warnings"]
    for folder in ("heatmaps", "masks"):
        assert nib.load(str(out / folder / "sagittal.nii.gz")).shape == (1, 128, 128)


def test_find_entries_lists_every_image_named_entry_and_find_inputs_only_files(tmp_path):
    from workflows.score_folder import find_entries, find_inputs

    _fifo(tmp_path)
    _loop(tmp_path)
    _folder(tmp_path)
    _tiny_png(tmp_path / "x.nii")  # a file inside the folder named like an image
    _zipped_series(tmp_path)
    _tiny_png(tmp_path)
    names = lambda paths: [str(p.relative_to(tmp_path)) for p in paths]  # noqa: E731
    assert names(find_entries(tmp_path)) == ["a.nii", "loop1.nii", "loop2.nii", "series.zip", "tiny.png", "x.nii"]
    # --recursive walks into x.nii/ instead of giving the folder a row
    assert names(find_entries(tmp_path, recursive=True)) == [
        "a.nii", "loop1.nii", "loop2.nii", "series.zip", "tiny.png", "x.nii/tiny.png"]
    assert names(find_inputs(tmp_path)) == ["tiny.png"]  # the dashboard's batch list: regular files only


# --------------------------------------------------------------------------------------------
# Special files are never opened


@pytest.mark.timeout(20)
def test_a_fifo_is_refused_by_every_reader_without_blocking(tmp_path):
    _fifo(tmp_path)
    for read in (load_volume, detect_format, lambda p: to_file_layout(np.zeros((2, 2)), p)):
        with pytest.raises(errors.NotAFileError, match=r"a\.nii is not a regular file but a named pipe \(FIFO\)"):
            read(tmp_path / "a.nii")


def test_a_missing_path_is_still_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_volume(tmp_path / "missing.nii")


# --------------------------------------------------------------------------------------------
# Decoded size: declared sizes checked before reading, streams capped while decompressing


def test_a_declared_huge_image_is_refused_before_anything_is_allocated(tmp_path):
    path = declared_only(tmp_path / "huge.nii.gz", (2000, 2000, 100))
    assert path.stat().st_size < 10_000
    peak, raised = peak_bytes(lambda: load_volume(path))
    assert isinstance(raised, errors.TooLargeError)
    assert str(raised) == ("huge.nii.gz has 400,000,000 voxels (2000, 2000, 100), 1.5 GB as 32-bit floats; "
                           "the limit is 512.0 MB")
    assert peak < 2_000_000


@pytest.mark.parametrize(("shape", "dtype", "message"), [
    ((64, 64, 64), np.float32, "262,144 voxels (64, 64, 64), 1.0 MB as 32-bit floats; the limit is 292.0 KB"),
    ((40, 40, 40), np.float64, "declares 500.3 KB of header and image data ((40, 40, 40) float64 voxels from byte 352); "
                               "the limit is 292.0 KB"),
])
def test_the_decoded_size_limit_is_configurable(tmp_path, shape, dtype, message):
    path = nifti(tmp_path / "scan.nii.gz", np.random.default_rng(0).random(shape).astype(dtype))
    limits = SizeLimits(max_decoded_bytes=299_000)
    with pytest.raises(errors.TooLargeError) as caught:
        load_volume(path, limits=limits)
    assert message in str(caught.value)
    assert load_volume(path, limits=SizeLimits(max_decoded_bytes=8 * 2**20)).array.shape == shape


def test_a_huge_header_extension_is_refused_before_it_is_read(tmp_path):
    data = np.random.default_rng(0).random((6, 6, 6)).astype(np.float32)
    image = nib.Nifti1Image(data, np.eye(4))
    image.header.extensions.append(Nifti1Extension(0, b"\1" * 12_000_000))
    path = tmp_path / "ext.nii.gz"
    nib.save(image, str(path))
    assert path.stat().st_size < 100_000
    peak, raised = peak_bytes(lambda: load_volume(path, limits=SizeLimits(max_decoded_bytes=2**20)))
    assert isinstance(raised, errors.TooLargeError) and "declares 11.4 MB of header and image data" in str(raised)
    assert peak < 500_000
    # within the limit the same file loads voxel for voxel, and the extension is skipped, never held
    peak, raised = peak_bytes(lambda: np.testing.assert_array_equal(load_volume(path).array, data))
    assert raised is None and peak < 6_000_000  # a few 1 MB read chunks: the 12 MB extension is never whole


def test_a_zip_member_that_under_reports_its_size_never_inflates(tmp_path):
    path = lying_zip(tmp_path / "bomb.zip", claimed=1_000, inflated=20_000_000)
    assert path.stat().st_size < 30_000
    peak, raised = peak_bytes(lambda: load_volume(path))
    assert isinstance(raised, errors.CorruptFileError) and "Bad CRC-32" in str(raised)
    assert peak < 4_000_000  # the member stops at its declared 1,000 bytes; all 20 MB used to be inflated at once


def test_a_gzip_stream_is_capped_while_it_is_decompressed(tmp_path):
    """An InVesalius project (a gzipped tar) whose tar holds 3 MB of zeros ahead of its main.plist."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in (("filler", b"\0" * 3_000_000), ("main.plist", plistlib.dumps({"matrix": {}}))):
            member = tarfile.TarInfo(name)
            member.size = len(content)
            archive.addfile(member, io.BytesIO(content))
    path = tmp_path / "project.inv3"
    path.write_bytes(buffer.getvalue())
    with pytest.raises(errors.TooLargeError, match=r"project\.inv3 unpacks to more than 1\.0 MB, the limit"):
        load_volume(path, limits=SizeLimits(max_decoded_bytes=2**20))
    with pytest.raises(errors.CorruptFileError, match="named in main.plist is missing"):
        load_volume(path)  # under the default limit it is read to the end


def test_zip_members_in_other_compressions_are_refused(tmp_path):
    path = tmp_path / "series.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_BZIP2) as archive:
        archive.writestr("a.dcm", b"\0" * 1000)
    with pytest.raises(errors.UnsupportedFormatError, match="only stored or deflated zip members"):
        load_volume(path)


# --------------------------------------------------------------------------------------------
# What can and cannot be scored


def test_images_too_small_to_score_are_refused(tmp_path):
    from core.io import MIN_SCORABLE_SIDE, check_scorable

    assert MIN_SCORABLE_SIDE == 16
    _tiny_png(tmp_path)
    with pytest.raises(errors.TooSmallError, match="it is 1x2 pixels, and SAFEGEN scores images of at least 16x16"):
        check_scorable(load_volume(tmp_path / "tiny.png"))
    gradient = np.add.outer(np.arange(16), np.arange(16)).astype(np.uint8)
    Image.fromarray(gradient).save(tmp_path / "ok.png")
    check_scorable(load_volume(tmp_path / "ok.png"))  # 16 x 16: scored
    thin = nifti(tmp_path / "thin.nii", np.random.default_rng(0).random((4, 128, 20)).astype(np.float32))
    with pytest.raises(errors.TooSmallError, match="its axial slices are 128x4 pixels"):
        check_scorable(load_volume(thin))


@pytest.mark.parametrize(("shape", "view", "spacing"), [((1, 40, 30), "sagittal", (3.0, 2.0)),
                                                        ((40, 1, 30), "coronal", (3.0, 1.0))])
def test_a_volume_that_is_one_sagittal_or_coronal_slice_is_one_2d_image(tmp_path, shape, view, spacing):
    data = np.random.default_rng(0).random(shape).astype(np.float32)
    path = nifti(tmp_path / "slice.nii.gz", data, np.diag([1.0, 2.0, 3.0, 1.0]))
    volume = load_volume(path)
    assert volume.array.shape == (30, 40) and volume.n_slices == 1 and not volume.is_3d
    assert volume.spacing == spacing
    axis = 0 if view == "sagittal" else 1
    # as the viewer shows that plane: superior at the top, anterior (sagittal) or the patient's right (coronal) left
    np.testing.assert_array_equal(volume.array, np.take(data, 0, axis=axis).T[::-1, ::-1])
    assert any(f"one {view} slice stored as a volume of shape {shape}" in w for w in volume.warnings)
    # maps come back in the file's own layout
    np.testing.assert_array_equal(to_file_layout(volume.array, path), data)


def test_a_single_sagittal_slice_in_a_flipped_file_comes_back_in_file_order(tmp_path):
    data = np.random.default_rng(2).random((1, 24, 20)).astype(np.float32)
    affine = np.diag([1.0, -1.0, 1.0, 1.0])  # rows of the file run anterior to posterior
    path = nifti(tmp_path / "lpi.nii", data, affine)
    volume = load_volume(path)
    assert volume.array.shape == (20, 24)
    np.testing.assert_array_equal(volume.array, data[0, ::-1].T[::-1, ::-1])  # RAS first, then the sagittal view
    np.testing.assert_array_equal(to_file_layout(volume.array, path), data)


@pytest.mark.parametrize(("dtype", "phrase"), [(np.complex64, "holds complex-valued voxels (complex64)"),
                                               (np.complex128, "holds complex-valued voxels (complex128)")])
def test_complex_voxels_are_refused_not_cut_to_their_real_part(tmp_path, dtype, phrase):
    rng = np.random.default_rng(0)
    path = nifti(tmp_path / "c.nii.gz", (rng.random((8, 8, 2)) + 1j * rng.random((8, 8, 2))).astype(dtype))
    with pytest.raises(errors.UnsupportedDataError, match=r"numpy\.abs") as caught:
        load_volume(path)
    assert phrase in str(caught.value)


def test_rgb_voxels_are_refused(tmp_path):
    rgb = np.zeros((8, 8, 2), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    path = nifti(tmp_path / "rgb.nii", rgb)
    with pytest.raises(errors.UnsupportedDataError, match="RGB colour voxels"):
        load_volume(path)


# --------------------------------------------------------------------------------------------
# Header extensions and the data offset


def test_extensions_running_past_the_data_offset_are_refused(tmp_path):
    path, _ = with_extension(tmp_path / "shift.nii", esize=32, vox_offset=352 + 32 - 8)
    with pytest.raises(errors.CorruptFileError, match="would be read shifted by 8 bytes"):
        load_volume(path)


def test_an_extension_size_off_the_16_byte_grid_is_refused_rather_than_read_shifted(tmp_path):
    # The data sit right after a 40-byte extension (byte 392) while vox_offset says 400; with 8 bytes
    # after the data, the old loader read the image two voxels off.
    path, _ = with_extension(tmp_path / "shift.nii", esize=40, vox_offset=400, trailing=b"\0" * 8)
    with pytest.raises(errors.CorruptFileError, match="declares 40 bytes, not a positive multiple of 16"):
        load_volume(path)


def test_consistent_extensions_load_voxel_for_voxel(tmp_path):
    path, data = with_extension(tmp_path / "ok.nii", esize=32, vox_offset=352 + 32)
    np.testing.assert_array_equal(load_volume(path).array, data)
    gz = tmp_path / "ok.nii.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    np.testing.assert_array_equal(load_volume(gz).array, data)


def test_a_data_offset_inside_the_header_is_refused(tmp_path):
    header = nib.Nifti1Header()
    header.set_data_shape((4, 4, 4))
    header.set_data_dtype(np.float32)
    header["vox_offset"] = 0  # the old loader read the header's own bytes as the image
    path = tmp_path / "zero.nii"
    path.write_bytes(header.binaryblock + b"\0" * 4 + np.arange(64, dtype=np.float32).tobytes())
    with pytest.raises(errors.CorruptFileError, match="declared to start at byte 0, inside its 352-byte header"):
        load_volume(path)
