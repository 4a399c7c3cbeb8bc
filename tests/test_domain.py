"""The out-of-domain checks (core/domain.py): known answers on tiny inputs, and the committed check
on real pictures that are not brain MRI."""

from pathlib import Path

import numpy as np
import pytest
import torch

from core.detectors.head import HeadConfig, HeadDetector, build_head
from core.domain import (
    HEAD_PARTS,
    AppearanceModel,
    DomainSpec,
    HeadFeatures,
    domain_warnings,
    field_of_view_warning,
    metadata_warnings,
)
from core.types import Modality, Volume

ROOT = Path(__file__).resolve().parent.parent
BRAIN = DomainSpec(Modality.MR, HEAD_PARTS, (120.0, 320.0), "brain MRI T1")


def _image(shape=(200, 180), spacing=(1.0, 1.0), modality=Modality.MR, description="") -> Volume:
    return Volume(np.zeros(shape, np.float32), spacing, np.eye(4), modality, description=description)


def test_the_modality_and_the_body_part_the_file_names_are_checked():
    assert metadata_warnings(_image(), BRAIN) == []
    assert metadata_warnings(_image(), BRAIN, body_part="HEAD") == []
    assert metadata_warnings(_image(modality=Modality.OTHER), BRAIN) == []  # unknown: nothing said
    [cr] = metadata_warnings(_image(modality=Modality.XRAY), BRAIN)
    assert cr == f"the file's modality is {Modality.XRAY.value}; the models were made for brain MRI T1"
    [knee] = metadata_warnings(_image(), BRAIN, body_part="KNEE")
    assert "knee" in knee and "brain MRI T1" in knee
    [pancreas] = metadata_warnings(_image(description="CT Pancreas arterial"), BRAIN)
    assert "pancreas" in pancreas
    assert metadata_warnings(_image(description="T1 MPRAGE sagittal"), BRAIN) == []


def test_every_check_of_a_scan_says_out_of_domain_first():
    assert domain_warnings(_image(), BRAIN) == []
    picture = Volume(np.zeros((8000, 8000), np.float32), (1.0, 1.0), np.eye(4), Modality.XRAY, spacing_known=False)
    found = domain_warnings(picture, BRAIN)
    assert len(found) == 2 and all(w.startswith("Out of domain: ") for w in found)
    assert "1 mm pixels were assumed" in found[1]
    knee = Volume(np.zeros((200, 200), np.float32), (1.0, 1.0), np.eye(4), Modality.MR, body_part="KNEE")
    assert domain_warnings(knee, BRAIN) == ["Out of domain: the file says it shows knee; the models were made for "
                                            "brain MRI T1"]


def test_the_field_of_view_must_be_a_heads():
    assert field_of_view_warning(_image((200, 180)), BRAIN) is None
    small = field_of_view_warning(_image((64, 64), (0.3125, 0.3125)), BRAIN)
    assert small.startswith("the image covers 20 x 20 mm") and "smaller than the 120-320 mm" in small
    huge = field_of_view_warning(_image((8000, 8000)), BRAIN, spacing_assumed=True)
    assert "8000 x 8000 mm (the file gives no pixel size" in huge and "larger" in huge


def test_the_appearance_model_measures_mahalanobis_distance_with_a_known_answer():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(4000, 2)) * [1.0, 3.0] + [5.0, -2.0]
    model = AppearanceModel.fit(features, quantile=0.99, what="toy")
    assert np.allclose(model.mean, [5.0, -2.0], atol=0.15)
    # a point 2 standard deviations out along the second axis is at distance 2
    assert model.distances(np.array([[5.0, -2.0 + 6.0]]))[0] == pytest.approx(2.0, rel=0.05)
    # the 99th percentile of the distances of a 2-D Gaussian: sqrt(chi2_2(0.99)) = 3.03
    assert model.threshold == pytest.approx(3.03, rel=0.05)
    assert model.warning(np.array([1.0, 2.0, 9.0])) is None  # one slice of three beyond: in domain
    assert model.warning(np.array([9.0, 9.0, 1.0])) == (
        "Unlike the training slices: 2 of 3 slices do not look like the toy slices the detector was trained on")
    assert model.warning(np.array([9.0])) == (
        "Unlike the training slices: the image does not look like the toy slices the detector was trained on")


def test_the_appearance_model_round_trips_through_its_files(tmp_path):
    rng = np.random.default_rng(1)
    model = AppearanceModel.fit(rng.normal(size=(100, 3)), what="toy")
    model.save(tmp_path / "domain.npz", seed=1)
    again = AppearanceModel.load(tmp_path / "domain.npz")
    assert again.threshold == model.threshold and again.what == "toy" and again.n_slices == 100
    assert np.allclose(again.distances(np.ones((1, 3))), model.distances(np.ones((1, 3))), rtol=1e-5)


def test_with_too_few_slices_for_a_covariance_the_fit_says_so():
    with pytest.raises(ValueError, match="twice as many slices as features"):
        AppearanceModel.fit(np.zeros((5, 4)))


def test_head_features_are_the_mean_and_spread_of_the_deepest_channels_of_any_slice_size():
    config = HeadConfig(inputs=("image",), channels=(4, 8), strides=(2,), num_res_units=1)
    head = HeadDetector(build_head(config), config)
    features = HeadFeatures(head)
    a = features(np.zeros((40, 36), np.float32))
    b = features(np.random.default_rng(0).random((57, 33)).astype(np.float32))
    assert a.shape == b.shape == (16,)  # the bottleneck has 8 channels: 8 means, 8 spreads
    # For one stride MONAI's UNet is Sequential(down, SkipConnection(bottleneck), up): read it by hand.
    seen = {}
    head.model.model[1].submodule.register_forward_hook(lambda _m, _i, out: seen.__setitem__("out", out))
    image = np.random.default_rng(0).random((57, 33)).astype(np.float32)
    mine = features(image)
    bottom = seen["out"][0]
    assert bottom.shape == (8, 29, 17)  # 57 x 33 padded to 58 x 34 (mirrored), then halved
    assert np.allclose(mine[:8], bottom.mean(dim=(1, 2)).numpy(), atol=1e-6)
    assert np.allclose(mine[8:], bottom.std(dim=(1, 2)).numpy(), atol=1e-6)
    assert not np.allclose(a, b)
    with torch.no_grad():
        assert head.logits(torch.zeros(1, 1, 40, 36)).shape == (1, 1, 40, 36)  # the head is unchanged


@pytest.fixture(scope="module")
def committed_head():
    from core.head_scoring import HeadScorer

    scorer = HeadScorer.load()
    assert scorer.appearance is not None, "models/domain_mri_t1.npz is missing: python -m workflows.cli calibrate-domain"
    return scorer


def _unlike(scorer, volume) -> str | None:
    from core.head_scoring import HeadScan

    return scorer.unlike_training(HeadScan.of(volume, scorer.profile).slices)


@pytest.mark.parametrize("picture", ["camera.png", "coins.png", "moon.png", "page.png", "cell.png"])
def test_the_committed_check_finds_pictures_that_are_not_brain_mri(committed_head, picture):
    from core.io import load_volume
    from core.resources import package_file

    warning = _unlike(committed_head, load_volume(package_file("skimage", "data", picture)))
    assert warning == ("Unlike the training slices: the image does not look like the Brain MRI T1 slices the detector "
                       "was trained on")


def test_the_committed_check_finds_a_chest_radiograph_and_a_knee_sized_mr(committed_head):
    from pydicom.data import get_testdata_file

    from core.demo import get_case
    from core.io import load_volume

    chest = get_case("chest_cr")
    if not chest.available:
        pytest.skip("pydicom-data is not installed")
    assert _unlike(committed_head, load_volume(chest.path, modality=chest.modality)) is not None
    assert _unlike(committed_head, load_volume(get_testdata_file("MR_small.dcm"))) is not None


@pytest.mark.parametrize("key", ["mni152_t1", "colin27_t1"])
def test_the_committed_check_passes_the_training_subjects_as_they_install(committed_head, key):
    from core.demo import get_case
    from core.io import load_volume

    case = get_case(key)
    if not case.available:
        pytest.skip(f"{case.path} is not installed")
    assert _unlike(committed_head, load_volume(case.path, modality=case.modality)) is None
