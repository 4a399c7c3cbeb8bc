"""Modality profiles (core/profiles.py), the InVesalius loader behind the head-CT profile, and the
profile choice of the scorer and the score command.

Known answers: a synthetic InVesalius project whose voxels are numbered, so orientation is checked
voxel by voxel; HU values that the brain window maps to known grey levels; a real head CT slice
from the committed head-CT models without an out-of-domain warning, and the same slice with a
warning from the brain-MRI models.
"""

from __future__ import annotations

import io
import plistlib
import tarfile
from pathlib import Path

import numpy as np
import pytest

from core.errors import CorruptFileError, UnsupportedFormatError
from core.io import detect_format, load_volume, to_file_layout
from core.profiles import CT_HEAD, MRI_T1, PROFILES, ReferenceSubject, auto_profile, get_profile, profile_for
from core.reference import build_reference, load_split
from core.types import Modality


def write_inv3(path: Path, matrix: np.ndarray, spacing=(0.5, 0.5, 2.0), *, plist_name="main.plist",
               declared_shape=None, modality="CT") -> Path:
    """An InVesalius 3 project as the program writes it: a gzipped tar of main.plist and matrix.dat."""
    main = {"modality": modality, "name": "phantom", "spacing": list(spacing), "window_level": 40.0,
            "window_width": 80.0, "matrix": {"dtype": "int16", "filename": "matrix.dat",
                                             "shape": list(declared_shape or matrix.shape)}}
    with tarfile.open(path, "w:gz") as archive:
        for name, data in ((plist_name, plistlib.dumps(main)), ("matrix.dat", matrix.astype(np.int16).tobytes())):
            info = tarfile.TarInfo(f"tmpproject/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_an_inv3_project_loads_as_a_ras_volume_voxel_by_voxel(tmp_path):
    slices, rows, cols = 3, 4, 5
    matrix = np.arange(slices * rows * cols, dtype=np.int16).reshape(slices, rows, cols)
    path = write_inv3(tmp_path / "phantom.inv3", matrix)
    assert detect_format(path) == "inv3"  # gzip, but not a NIfTI
    volume = load_volume(path)
    assert volume.modality is Modality.CT and volume.array.shape == (cols, rows, slices)
    assert volume.spacing == (0.5, 0.5, 2.0) and volume.window.center == 40.0
    # RAS: axis 0 runs to the patient's right (columns run right to left), axis 1 to anterior
    # (InVesalius stores rows posterior to anterior), axis 2 to superior (slice order).
    for k, r, c in [(0, 0, 0), (2, 3, 4), (1, 2, 0), (0, 1, 3)]:
        assert volume.array[cols - 1 - c, r, k] == matrix[k, r, c]
    assert np.array_equal(to_file_layout(volume.array, path), matrix)
    assert any("left and right" in w for w in volume.warnings)


def test_damaged_inv3_projects_get_clear_errors(tmp_path):
    matrix = np.zeros((2, 4, 4), np.int16)
    matrix[0, 0, 0] = 1
    with pytest.raises(UnsupportedFormatError, match="not an InVesalius project"):
        load_volume(write_inv3(tmp_path / "a.inv3", matrix, plist_name="other.plist"))
    with pytest.raises(CorruptFileError, match="declares"):
        load_volume(write_inv3(tmp_path / "b.inv3", matrix, declared_shape=(3, 4, 4)))


def test_profiles_are_matched_by_modality_and_keep_the_brain_mri_file_names():
    assert profile_for(Modality.CT) is CT_HEAD and profile_for(Modality.MR) is MRI_T1
    assert profile_for(Modality.XRAY) is None  # no X-ray profile: one real radiograph offline
    assert get_profile("ct_head") is CT_HEAD and set(PROFILES) == {"mri_t1", "ct_head"}
    with pytest.raises(ValueError, match="unknown profile"):
        get_profile("chest_xray")
    assert MRI_T1.model_file("diffusion").name == "diffusion_mri_t1.pt"
    assert MRI_T1.reference_dir == Path("data/reference") and CT_HEAD.reference_dir == Path("data/reference_ct_head")
    assert CT_HEAD.calibration_file().name == "calibration_ct_head.json"
    assert MRI_T1.is_trained() and CT_HEAD.is_trained()  # both committed



def test_auto_takes_the_modalitys_trained_profile_and_falls_back_to_brain_mri(tmp_path):
    assert auto_profile(Modality.CT) is CT_HEAD and auto_profile(Modality.MR) is MRI_T1
    assert auto_profile(Modality.XRAY) is MRI_T1 and auto_profile(Modality.OTHER) is MRI_T1
    assert auto_profile(Modality.CT, tmp_path) is MRI_T1  # no head-CT models in an empty folder


def test_a_ct_reference_is_windowed_to_the_brain_window(tmp_path):
    # A "head": a 20 x 20 block of 40 HU (brain) inside air, with a 1000 HU rim (bone), 40 slices
    # (5 blocks of 8: every split gets one).
    matrix = np.full((40, 64, 64), -1000, np.int16)
    matrix[:, 20:44, 20:44] = 1000
    matrix[:, 22:42, 22:42] = 40
    subject = ReferenceSubject("phantom", write_inv3(tmp_path / "p.inv3", matrix, spacing=(1.0, 1.0, 1.0)),
                               "a phantom", "test")
    manifest = build_reference(tmp_path / "ref", seed=0, augment_per_slice=1, subjects=[subject], profile="ct_head")
    assert manifest.profile == "ct_head" and manifest.augment_params["noise"] == "gaussian"
    real = load_split(tmp_path / "ref", "train")
    image = real.images[real.augmentation == 0][0]
    values = np.unique(np.round(image, 2))
    # brain window 0..80 HU: air -> 0, 40 HU -> 0.5, bone -> 1 (resampled edges aside)
    assert {0.0, 0.5, 1.0} <= set(values.tolist())
    assert (np.abs(image - 0.5) < 0.01).sum() > 0.5 * (20 * 128 / 64) ** 2


@pytest.fixture(scope="module")
def head_ct_slice():
    if not CT_HEAD.subjects[0].path.is_file():
        pytest.skip("Debian invesalius-examples is not installed (make setup installs it where apt works)")
    volume = load_volume(CT_HEAD.subjects[0].path)
    k = 70  # a mid-brain axial slice (lateral ventricles)
    from core.types import Volume

    return Volume(volume.array[:, :, k : k + 1], volume.spacing, volume.affine, Modality.CT, source="head_ct")


def test_the_head_ct_models_score_a_head_ct_without_an_out_of_domain_warning(head_ct_slice):
    from core.scoring import Scorer

    ct = Scorer.load(profile="ct_head").score_volume(head_ct_slice)
    mri = Scorer.load().score_volume(head_ct_slice)
    assert ct.profile == "ct_head" and mri.profile == "mri_t1"
    assert not any("Out of domain" in w for w in ct.warnings)
    assert any("Out of domain" in w for w in mri.warnings)
    # a real clean head CT slice of the profile's own subject is not flagged by its models
    assert not ct.flag and ct.p_value > 0.05


def test_score_with_a_named_profile_and_a_baseline_refusing_a_profile(tmp_path, capsys):
    import csv
    import shutil

    from core.resources import package_file
    from workflows.score_folder import score_folder

    (tmp_path / "in").mkdir()
    shutil.copy(package_file("pydicom", "data", "test_files", "CT_small.dcm"), tmp_path / "in" / "ct.dcm")
    assert score_folder(tmp_path / "in", tmp_path / "mri", profile="mri_t1") == 0
    with open(tmp_path / "mri" / "scores.csv") as stream:
        row = next(csv.DictReader(stream))
    assert row["profile"] == "mri_t1" and "Out of domain" in row["warnings"]
    assert score_folder(tmp_path / "in", tmp_path / "padim", method="padim", profile="ct_head") == 2
    assert "Brain MRI T1 reference only" in capsys.readouterr().err
    assert not (tmp_path / "padim").exists()  # refused before anything was written


def test_training_batches_use_the_profiles_augmentation_ranges():
    """An identity augmentation (no rotation, scale, shift, gamma, bias or noise) returns the slices as
    they are; the default (brain MRI) ranges change them. The committed head-CT models record theirs."""
    import json

    import numpy as np

    from core.augment import AugmentParams
    from core.detectors.training import sample_batch

    images = np.random.default_rng(0).uniform(0.1, 1.0, size=(3, 16, 16)).astype(np.float32)
    identity = AugmentParams(rotation_deg=0.0, scale=(1.0, 1.0), translate_px=0.0, gamma=(1.0, 1.0),
                             bias_amplitude=0.0, noise_sigma=(0.0, 0.0))
    same = sample_batch(images, np.random.default_rng(1), 4, True, identity)
    picks = np.random.default_rng(1).integers(0, 3, size=4)
    np.testing.assert_allclose(same[:, 0].numpy(), images[picks], atol=1e-6)
    changed = sample_batch(images, np.random.default_rng(1), 4, True)
    assert np.abs(changed[:, 0].numpy() - images[picks]).max() > 0.05
    for kind in ("autoencoder", "diffusion", "vae"):
        sidecar = json.loads(CT_HEAD.model_file(kind).with_suffix(".json").read_text())
        assert sidecar["augment_params"]["noise"] == "gaussian" and sidecar["augment_params"]["bias_amplitude"] == 0.0
