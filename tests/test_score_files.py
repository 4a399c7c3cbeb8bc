"""score_files: the one per-file loop, on files with known answers; and the one list of accepted file names."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest

from core.errors import CorruptFileError, NotAFileError
from core.io import ACCEPTED_SUFFIXES
from workflows.score_files import FileResult, error_message, score_files

GOOD = np.arange(20 * 20 * 2, dtype=np.float32).reshape(20, 20, 2)  # mean 399.5


class MeanScorer:
    """Scores a volume by its mean voxel value (a known answer per file) and counts its calls."""

    def __init__(self):
        self.scored = []

    def score_volume(self, volume):
        self.scored.append(volume.name)
        return SimpleNamespace(score=float(volume.array.mean()))


def nifti(path: Path, data: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    return path


@pytest.fixture
def folder(tmp_path) -> list[Path]:
    """One good tiny NIfTI, one cut short after 300 bytes, one named pipe named like a NIfTI."""
    good = nifti(tmp_path / "a_good.nii", GOOD)
    cut = tmp_path / "b_cut.nii.gz"
    cut.write_bytes(nifti(tmp_path / "whole.nii.gz", GOOD).read_bytes()[:300])
    pipe = tmp_path / "c_pipe.nii"
    os.mkfifo(pipe)
    return [good, cut, pipe]


def test_one_result_per_file_in_order_the_good_one_scored_the_others_with_their_error(folder):
    scorer = MeanScorer()
    results = list(score_files(folder, scorer))

    assert [r.path for r in results] == folder
    good, cut, pipe = results
    assert good.error is None and good.result.score == pytest.approx(399.5)
    assert good.volume.array.shape == (20, 20, 2) and good.seconds >= 0
    assert scorer.scored == ["a_good.nii"]  # the bad files never reach the scorer
    assert (cut.volume, cut.result) == (None, None)
    assert cut.error.startswith("b_cut.nii.gz") and "cut short" in cut.error
    assert (pipe.volume, pipe.result) == (None, None)
    assert pipe.error == ("c_pipe.nii is not a regular file but a named pipe (FIFO); SAFEGEN reads image files "
                          "only and does not open it")


def test_a_folder_named_like_an_image_gets_an_error_too(tmp_path):
    (tmp_path / "x.nii").mkdir()
    (result,) = score_files([tmp_path / "x.nii"], MeanScorer())
    assert result.result is None and "x.nii" in result.error


def test_files_are_read_one_at_a_time_as_results_are_asked_for(folder):
    read = []

    def load(path):
        read.append(path.name)
        return SimpleNamespace(name=path.name, array=GOOD, is_3d=True)

    results = score_files(folder, None, load=load, require_scorable=False)
    assert read == []
    first = next(results)
    assert read == ["a_good.nii"] and first.result is None and first.error is None  # no scorer: loaded only
    assert len(list(results)) == 2 and len(read) == 3


def test_an_image_too_small_is_refused_unless_the_caller_says_otherwise(tmp_path):
    tiny = nifti(tmp_path / "tiny.nii", np.arange(6, dtype=np.float32).reshape(2, 3, 1))
    (refused,) = score_files([tiny], MeanScorer())
    assert refused.result is None and refused.volume is not None
    assert refused.error == ("tiny.nii cannot be scored: its axial slices are 3x2 pixels, and SAFEGEN scores images "
                             "of at least 16x16 pixels")
    (kept,) = score_files([tiny], MeanScorer(), require_scorable=False)
    assert kept.error is None and kept.result.score == pytest.approx(2.5)


def test_a_failure_after_scoring_keeps_the_score_and_says_why(folder):
    def after_scoring(path, volume, result):
        raise OSError("disk full")

    (good,) = score_files(folder[:1], MeanScorer(), after_scoring=after_scoring)
    assert good.result.score == pytest.approx(399.5) and good.error == "OSError: disk full"


def test_raise_errors_stops_at_the_first_bad_file(folder):
    results = score_files(folder, MeanScorer(), raise_errors=True)
    assert next(results).error is None
    with pytest.raises(CorruptFileError, match="cut short"):
        next(results)


def test_error_messages_name_foreign_error_types_only():
    assert error_message(NotAFileError("x is a folder")) == "x is a folder"
    assert error_message(ZeroDivisionError("division by zero")) == "ZeroDivisionError: division by zero"
    assert error_message(KeyError()) == "KeyError: KeyError"


def test_file_results_are_frozen():
    result = FileResult(Path("a.nii"), None, None, "no", 0.0)
    with pytest.raises(AttributeError):
        result.error = None


def test_every_list_of_accepted_files_is_derived_from_the_one_in_core_io(tmp_path):
    from core import reference
    from core.io import output_stem
    from workflows import score_folder
    from ui.resources import UPLOAD_TYPES

    assert ".jpg" in ACCEPTED_SUFFIXES and ".jpeg" in ACCEPTED_SUFFIXES  # load_volume reads JPEG
    assert reference.ACCEPTED_SUFFIXES is ACCEPTED_SUFFIXES  # image_files reads the one list
    assert score_folder.ROW_SUFFIXES == (*ACCEPTED_SUFFIXES, ".zip")
    assert set(UPLOAD_TYPES) == {s.rsplit(".", 1)[1] for s in ACCEPTED_SUFFIXES}
    assert len(UPLOAD_TYPES) == len(set(UPLOAD_TYPES))
    for suffix in ACCEPTED_SUFFIXES:  # the score command, Batch screening and study folders find every one
        (tmp_path / f"scan{suffix.upper()}").write_bytes(b"x")
        assert output_stem(f"scan{suffix}") == "scan"
    (tmp_path / "readme.txt").write_text("not an image")
    assert sorted(p.name for p in score_folder.find_inputs(tmp_path)) == sorted(
        f"scan{s.upper()}" for s in ACCEPTED_SUFFIXES)


def test_a_pixel_size_applies_to_pictures_that_state_none_and_only_to_them(tmp_path):
    from PIL import Image

    picture = tmp_path / "a.png"
    Image.fromarray(np.arange(24 * 32, dtype=np.uint16).reshape(24, 32)).save(picture)
    stated = nifti(tmp_path / "b.nii", GOOD[..., 0])  # a NIfTI states its own (1 mm) voxels
    as_read, at_size = (list(score_files([picture, stated], None, require_scorable=False, pixel_mm=mm))
                        for mm in (None, 1.8))

    assert as_read[0].volume.spacing == (1.0, 1.0) and not as_read[0].volume.spacing_known
    png = at_size[0].volume
    assert png.spacing == (1.8, 1.8) and png.spacing_known
    np.testing.assert_array_equal(png.affine, np.diag([1.8, 1.8, 1.0, 1.0]))
    assert png.warnings == ["a.png states no pixel size: read at 1.8 mm per pixel, as asked"]
    np.testing.assert_array_equal(png.array, as_read[0].volume.array)  # the pixels are not resampled here
    assert at_size[1].volume.spacing == as_read[1].volume.spacing == (1.0, 1.0, 1.0) and at_size[1].volume.warnings == []
