import json

import numpy as np
import pytest

from core.augment import AugmentParams, augment
from core.profiles import MRI_T1
from core.reference import SPLITS, assign_splits, build_reference, load_split, subject_slices


def test_assign_splits_deals_blocks_round_robin_with_gaps():
    labels = assign_splits(20, block=5, gap=2)
    # Block 0 (0-4) -> train, keep 1..3; block 1 (5-9) -> val keep 6..8; block 2 -> calib; block 3 -> test.
    expected = ["", "train", "train", "train", "", "", "val", "val", "val", "",
                "", "calib", "calib", "calib", "", "", "test", "test", "test", ""]
    assert labels.tolist() == expected


def test_no_two_splits_hold_neighbouring_slices():
    labels = assign_splits(189, block=8, gap=2)
    positions = {s: np.flatnonzero(labels == s) for s in SPLITS}
    for a in SPLITS:
        for b in SPLITS:
            if a < b:
                distance = np.abs(positions[a][:, None] - positions[b][None, :]).min()
                assert distance >= 3, (a, b, distance)  # >= gap + 1 slices apart


def test_augment_is_seeded_bounded_and_keeps_the_background_empty():
    image = np.zeros((64, 64), np.float32)
    yy, xx = np.mgrid[:64, :64]
    image[(yy - 32) ** 2 + (xx - 32) ** 2 < 20**2] = 0.6
    a = augment(image, np.random.default_rng(1))
    b = augment(image, np.random.default_rng(1))
    c = augment(image, np.random.default_rng(2))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.dtype == np.float32 and a.min() >= 0.0 and a.max() <= 1.0
    assert np.all(a[:4, :4] == 0.0)  # corners stay background under +-10 deg, +-8 px
    # No augmentation at all reproduces the input (the parameters are really what is applied).
    identity = AugmentParams(rotation_deg=0, scale=(1, 1), translate_px=0, gamma=(1, 1),
                             bias_amplitude=0, noise_sigma=(0, 0))
    assert np.allclose(augment(image, np.random.default_rng(0), identity), image, atol=1e-6)


@pytest.fixture(scope="module")
def mni_only():
    subjects = [s for s in MRI_T1.available_subjects() if s.name == "mni152"]
    assert subjects, "nilearn's MNI152 template must be installed (it ships in the nilearn wheel)"
    return subjects


def test_subject_slices_are_real_normalised_brain_slices(mni_only):
    slices = subject_slices(mni_only[0])
    assert slices.images.shape[1:] == (128, 128)
    assert 100 < len(slices.images) < 189  # top/bottom partial slices dropped
    assert slices.images.min() >= 0.0 and slices.images.max() <= 1.0
    middle = slices.images[len(slices.images) // 2]
    assert 0.2 < (middle > 0.05).mean() < 0.8  # a brain, not an empty or full frame
    assert np.all(np.diff(slices.slice_index) == 1)


def test_build_reference_writes_consistent_splits(tmp_path, mni_only):
    manifest = build_reference(tmp_path, seed=0, augment_per_slice=1, subjects=mni_only)
    written = json.loads((tmp_path / "manifest.json").read_text())
    assert written["counts"] == manifest.counts
    seen = {}
    for split in SPLITS:
        data = load_split(tmp_path, split)
        assert len(data.images) == manifest.counts[split] > 0
        assert set(np.unique(data.augmentation)) == {0, 1}
        assert (data.augmentation == 0).sum() == (data.augmentation == 1).sum()
        seen[split] = set(data.slice_index.tolist())
    for a in SPLITS:
        for b in SPLITS:
            if a < b:
                assert not seen[a] & seen[b]
    # Same seed, same bytes of images.
    again = tmp_path / "again"
    build_reference(again, seed=0, augment_per_slice=1, subjects=mni_only)
    assert np.array_equal(load_split(again, "calib").images, load_split(tmp_path, "calib").images)
