"""The generator report card's science: KID / FID / precision-recall against direct computations and
toy point clouds with known answers, MS-SSIM, and the copy detector on planted copies of real slices."""
from itertools import product

import numpy as np
import pytest
from scipy import linalg, ndimage

from core import generator_report as gr
from core.profiles import get_profile
from core.reference import load_split


def _direct_mmd2(x, y):
    """Unbiased MMD^2 with KID's kernel by explicit double loops (the O(n^2) reference)."""
    def k(a, b):
        return (np.dot(a, b) / len(a) + 1.0) ** 3
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i, j in product(range(m), range(m)) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i, j in product(range(n), range(n)) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i, j in product(range(m), range(n))) / (m * n)
    return xx + yy - 2 * xy


def test_kid_equals_the_direct_unbiased_mmd_when_subsets_are_the_whole_sets():
    rng = np.random.default_rng(0)
    real, gen = rng.normal(size=(10, 5)), rng.normal(0.5, 1.2, size=(10, 5))
    value, _ = gr.kid(real, gen, subsets=3, subset_size=100, seed=1)  # subsets of 10 = the whole sets
    assert value == pytest.approx(_direct_mmd2(real, gen), rel=1e-10)
    real, gen = rng.normal(size=(12, 5)), rng.normal(0.5, 1.2, size=(9, 5))
    _, se = gr.kid(real, gen, subsets=1, subset_size=9, seed=1)
    # the jackknife SE against leave-one-out by brute force
    loo_r = np.array([_direct_mmd2(np.delete(real, i, 0), gen) for i in range(len(real))])
    loo_g = np.array([_direct_mmd2(real, np.delete(gen, j, 0)) for j in range(len(gen))])
    var = 11 / 12 * ((loo_r - loo_r.mean()) ** 2).sum() + 8 / 9 * ((loo_g - loo_g.mean()) ** 2).sum()
    assert se == pytest.approx(np.sqrt(var), rel=1e-10)


def test_kid_on_subsets_averages_the_direct_estimate_of_each_subset():
    rng = np.random.default_rng(1)
    real, gen = rng.normal(size=(15, 4)), rng.normal(1.0, 1.0, size=(11, 4))
    value, _ = gr.kid(real, gen, subsets=4, subset_size=6, seed=7)
    draw = np.random.default_rng(7)
    expected = np.mean([_direct_mmd2(real[draw.choice(15, 6, replace=False)], gen[draw.choice(11, 6, replace=False)])
                        for _ in range(4)])
    assert value == pytest.approx(expected, rel=1e-10)
    same, same_se = gr.kid(real, rng.normal(size=(11, 4)), subsets=4, subset_size=6)
    assert abs(same) < 2 * same_se < value


def test_fid_matches_the_frechet_formula():
    rng = np.random.default_rng(2)
    real, gen = rng.normal(size=(200, 3)), rng.normal(0.5, 2.0, size=(150, 3))
    mu1, mu2 = real.mean(0), gen.mean(0)
    c1, c2 = np.cov(real, rowvar=False), np.cov(gen, rowvar=False)
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(c1 + c2 - 2 * linalg.sqrtm(c1 @ c2).real)
    assert gr.fid(real, gen) == pytest.approx(expected, rel=1e-6)
    assert gr.fid(real, real) == pytest.approx(0.0, abs=1e-6)


def test_precision_recall_on_toy_point_clouds():
    real = np.random.default_rng(3).normal(size=(60, 2))
    assert gr.precision_recall(real, real.copy(), k=3) == (1.0, 1.0)
    collapsed = np.repeat(real[:1], 20, axis=0)  # every sample is one real point
    precision, recall = gr.precision_recall(real, collapsed, k=3)
    assert precision == 1.0 and recall == pytest.approx(1 / 60)
    assert gr.precision_recall(real, real + 100.0, k=3) == (0.0, 0.0)


def _disc_image(size=64, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    image = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 3) ** 2) * 0.6
    return np.clip(ndimage.gaussian_filter(image + 0.2 * rng.random((size, size)), 1.0), 0, 1).astype(np.float32)


def test_ms_ssim_is_one_for_an_image_with_itself_and_less_with_noise():
    image = np.stack([_disc_image(128)])
    noisy = np.clip(image + np.random.default_rng(4).normal(0, 0.1, image.shape), 0, 1)
    assert gr.ms_ssim(image, image)[0] == pytest.approx(1.0, abs=1e-5)
    assert gr.ms_ssim(image, noisy)[0] < 0.95


def test_mode_collapse_warns_for_identical_samples_only():
    diverse = np.stack([_disc_image(128, seed=s) * (0.5 + 0.1 * s) for s in range(6)])
    real = gr.mean_pairwise_ms_ssim(diverse)
    assert real.pairs == 15
    collapsed = gr.mean_pairwise_ms_ssim(np.repeat(diverse[:1], 6, axis=0))
    assert collapsed.mean == pytest.approx(1.0, abs=1e-5)
    assert gr.mode_collapse_warning(collapsed, real)
    assert not gr.mode_collapse_warning(real, real)


def test_copy_threshold_ignores_same_volume_training_slices():
    training = np.stack([_disc_image(32, seed=s) for s in range(4)])
    heldout = training[:1] + 0.0  # a held-out slice identical to a training slice of its own volume
    similarity = gr.ncc_matrix(heldout, training, max_shift=0)
    excluded = gr.same_volume_pairs(np.array(["a"]), np.array(["a", "b", "b", "b"]))
    assert similarity.max() == pytest.approx(1.0)
    assert gr.copy_threshold(similarity, excluded) == pytest.approx(similarity[0, 1:].max())
    neighbours = gr.same_volume_pairs(np.array(["a"]), np.array(["a", "a", "b", "b"]), heldout_slices=np.array([10]),
                                      training_slices=np.array([11, 20, 10, 10]), neighbour_slices=2)
    assert neighbours.tolist() == [[True, False, False, False]]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The brain-MRI reference as `make reference` builds it (data/reference; a clean checkout has none:
    then it is built here the same way, seed 0, from the installed MNI152 and Colin27)."""
    from core.reference import build_reference

    directory = get_profile("mri_t1").reference_dir
    if not (directory / "train.npz").is_file():
        directory = tmp_path_factory.mktemp("reference")
        build_reference(directory, seed=0, profile="mri_t1")
    return {split: load_split(directory, split) for split in ("train", "val", "calib", "test")}


def test_planted_copies_are_flagged_and_real_slices_of_another_volume_are_not(reference):
    """Training: MNI152's training slices. Calibration: Colin27's held-out (val and calib) slices, augmented
    ones included (the threshold is their maximum; a new independent image exceeds the maximum of n with
    probability ~1/(n+1), so n must be large against the images checked). Planted copies of
    MNI152 training slices (exact, Rician-like mild noise, a 2 px shift) must be flagged; Colin27's test
    slices, never seen, must not."""
    train, test = reference["train"], reference["test"]
    val = reference["val"]
    calib_split = reference["calib"]
    in_train = train.subject == "mni152"
    train_images, train_ids = train.images[in_train], train.subject[in_train]
    held = np.concatenate([val.images[val.subject == "colin27"], calib_split.images[calib_split.subject == "colin27"]])
    held_ids = np.full(len(held), "colin27")
    negatives = test.images[(test.subject == "colin27") & (test.augmentation == 0)]
    plain = np.flatnonzero(train.augmentation[in_train] == 0)[::6][:4]
    rng = np.random.default_rng(5)
    originals = train_images[plain]
    planted = np.concatenate([
        originals,
        np.clip(originals + rng.normal(0, 0.02, originals.shape) * (originals > 0), 0, 1),
        np.roll(originals, shift=(2, -2), axis=(1, 2)),
    ]).astype(np.float32)

    encoder = gr.load_feature_encoder("mri_t1").standardised_on(train_images)
    feats = lambda x: gr.image_features(x, encoder=encoder)  # noqa: E731
    calibration = gr.calibrate_copies(held, feats(held), held_ids,
                                      train_images, feats(train_images), train_ids)
    planted_check = gr.likely_copies(planted, feats(planted), train_images, feats(train_images),
                                     pixel_threshold=calibration.pixel_threshold)
    negative_check = gr.likely_copies(negatives, feats(negatives), train_images, feats(train_images),
                                      pixel_threshold=calibration.pixel_threshold)
    print(f"\ncopy threshold (pixel NCC, max of {len(held)}) {calibration.pixel_threshold:.4f}; planted margins "
          f"{np.round(planted_check.margin, 4).tolist()}; held-out Colin27 margins min/max "
          f"{negative_check.margin.min():.4f}/{negative_check.margin.max():.4f}")
    assert planted_check.flagged.all()
    # the twin found is the slice that was planted (or an augmentation of the same slice index)
    twin_slices = train.slice_index[in_train][planted_check.pixel.index]
    assert (twin_slices == np.tile(train.slice_index[in_train][plain], 3)).all()
    assert not negative_check.flagged.any()
    # margins measured 2026-12-07: planted >= +0.071 (NCC ~0.9999 against a threshold of 0.928),
    # held-out Colin27 <= -0.010: the negatives sit close to the threshold, the copies far above it
    assert planted_check.margin.min() > 0.05


def test_feature_encoder_pools_each_stage_and_stops_after_the_last():
    """A toy network with known weights: a 1 -> 2 channel 1x1 convolution (x 1 and x -2), then a 2x2 average pool,
    then a module that must never run. Features: each stage's channel means, then their standard deviations."""
    import torch

    conv = torch.nn.Conv2d(1, 2, 1, bias=False)
    with torch.no_grad():
        conv.weight[:] = torch.tensor([1.0, -2.0]).reshape(2, 1, 1, 1)

    class Never(torch.nn.Module):
        def forward(self, x):
            raise AssertionError("the pass should have stopped at the last stage")

    pool = torch.nn.AvgPool2d(2)
    encoder = gr.FeatureEncoder(torch.nn.Sequential(conv, pool, Never()), (conv, pool), "toy")
    image = np.zeros((1, 128, 128), np.float32)
    image[0, :64] = 1.0  # top half 1: mean 0.5, standard deviation (unbiased) just over 0.5
    feats = gr.image_features(image, encoder=encoder)
    sd = float(torch.tensor(image).std())  # over 128 x 128 pixels, then over the pooled 64 x 64
    sd_pooled = float(torch.tensor(image[:, ::2, ::2]).std())
    np.testing.assert_allclose(feats[0], [0.5, -1.0, 0.5, -1.0, sd, 2 * sd, sd_pooled, 2 * sd_pooled], rtol=1e-5)
    fitted = encoder.standardised_on(np.concatenate([image, np.zeros_like(image)]))
    # (x - mean) / sd over the image and a blank one: +1 where the image's feature is the larger, -1 where smaller
    np.testing.assert_allclose(fitted(image)[0], [1, -1, 1, -1, 1, 1, 1, 1], atol=1e-4)
    # the set it was fitted on: its features are kept, equal to a fresh pass, and the network does not run again
    real = np.concatenate([image, np.zeros_like(image)])
    fitted = encoder.standardised_on(real)
    calls = []
    conv.register_forward_hook(lambda *_: calls.append(1))
    kept = fitted(real)
    assert not calls
    np.testing.assert_array_equal(kept, fitted(real.copy()))  # a copy is not the fitted set: the network runs
    assert len(calls) == 1 and kept.dtype == np.float32


def test_the_brain_mri_report_uses_the_heads_encoder_and_real_controls_come_out_closest():
    """The chosen layer (scripts/measure_report_features.py, on a validation set of another seed) on the demo
    set: 480 features, and the two real control groups have the two lowest KIDs (1.4 and 4.5 against 13.5 for
    the VAE and thousands for the DDPM sampler with the head of 2026-12-07's switch; 1.4 and 3.9 against 64 and
    more with part 5's head)."""
    import pandas as pd

    from core.resources import PROJECT_ROOT
    from workflows.report import reference_real_set

    encoder = gr.load_feature_encoder("mri_t1")
    assert encoder.layer == gr.HEAD_FEATURES and len(encoder.stages) == 4
    real = reference_real_set("mri_t1").images
    encoder = encoder.standardised_on(real)
    demo = PROJECT_ROOT / "demo" / "generated_mri_t1"
    manifest = pd.read_csv(demo / "manifest.csv")
    feats = gr.image_features(gr.prepare_image_files([demo / f for f in manifest["file"]]), encoder=encoder)
    assert feats.shape == (len(manifest), 480)
    real_feats = encoder(real)
    np.testing.assert_allclose(real_feats.mean(0), 0, atol=1e-3)
    kids = {g: gr.kid(real_feats, feats[(manifest["group"] == g).to_numpy()])[0] for g in manifest["group"].unique()}
    assert sorted(kids, key=kids.get)[:2] in (["real-128", "real-64"], ["real-64", "real-128"]), kids
