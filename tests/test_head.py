"""The segmentation head and what feeds it: training corruptions, normal variation, the head's
normalisation, native-resolution scoring, its calibration and the one mask rule."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
import torch
from scipy import ndimage

from core.detectors.head import HeadConfig, HeadDetector, build_head, image_logit, pad_to_multiple, slice_score
from core.head_scoring import HeadCalibration, HeadScorer, back_to_slice, to_head_resolution
from core.masks import unsafe_mask
from core.preprocess import TAIL_MAX, normalize_intensity, robust_normalize
from core.training_anomalies import LABEL_SMOOTHING_PX, AnomalyParams, TrainingKind, corrupt, irregular_mask
from core.types import Modality, Volume
from core.variation import VariationParams, quantise, vary


@cache
def mni_slice() -> np.ndarray:
    """A real mid-brain MNI152 axial slice at 1 mm (display view), tissue scaled to about [0, 1]."""
    from core.detectors.head_training import load_subject
    from core.profiles import KNOWN_SUBJECTS

    stack = load_subject(KNOWN_SUBJECTS[0])
    return stack.slices[len(stack.slices) // 2]


def disc(shape, centre, radius) -> np.ndarray:
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2


# -- training corruptions ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(TrainingKind))
def test_each_corruption_changes_only_its_label_and_the_label_is_exact(kind):
    image = mni_slice()
    other = np.roll(image, 17, axis=0)
    params = AnomalyParams()
    for seed in range(4):
        out = corrupt(image, kind, np.random.default_rng(seed), other=other, params=params)
        changed = out.image != image
        assert not (changed & ~out.label).any(), "a pixel outside the label changed"
        if out.kind:
            assert out.kind == kind.value
            change = ndimage.gaussian_filter(np.abs(out.image - image), LABEL_SMOOTHING_PX)
            # inside the label the change was above tolerance before the pixels outside were restored,
            # so most of the label still is; and the label is never empty when a kind is reported
            assert out.label.sum() >= 12
            assert np.mean(change[out.label] > params.tolerance / 2) > 0.8
        else:
            assert not out.label.any() and np.array_equal(out.image, image)


def test_irregular_mask_is_local_and_soft():
    mask = irregular_mask((100, 120), (50.0, 60.0), 10.0, np.random.default_rng(0))
    assert mask.max() == pytest.approx(1.0)
    rows, cols = np.nonzero(mask)
    assert np.hypot(rows - 50, cols - 60).max() <= 16.0 + 1e-6  # zero beyond 1.6 radius
    assert ((mask > 0) & (mask < 1)).any()  # a feathered edge


def test_corruptions_are_seeded():
    image = mni_slice()
    a = corrupt(image, "grating", np.random.default_rng(3))
    b = corrupt(image, "grating", np.random.default_rng(3))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.label, b.label)


# -- normal variation ----------------------------------------------------------------------------


def test_vary_draws_field_of_view_and_keeps_the_tail():
    params = VariationParams()
    shapes = {vary(mni_slice(), np.random.default_rng(s), params).shape for s in range(6)}
    for h, w in shapes:
        assert params.fov[0] <= h <= params.fov[1] and params.fov[0] <= w <= params.fov[1]
    assert len(shapes) > 1
    assert np.array_equal(vary(mni_slice(), np.random.default_rng(1)), vary(mni_slice(), np.random.default_rng(1)))


def test_elastic_displacement_moves_pixels_by_at_most_its_peak():
    """A ramp image (value = column index) through the same geometry with and without the elastic
    field: the difference is the horizontal displacement, nonzero and never above ``elastic_px``."""
    from dataclasses import replace

    from core.variation import reframe

    ramp = np.tile(np.arange(300, dtype=np.float32), (300, 1))
    plain_params = VariationParams(rotation_deg=0.0, scale=(1.0, 1.0), flip_probability=0.0, fov=(160, 160))
    plain = reframe(ramp, np.random.default_rng(4), plain_params)
    bent = reframe(ramp, np.random.default_rng(4), replace(plain_params, elastic_px=5.0))
    shift = np.abs(bent - plain)[10:-10, 10:-10]
    assert plain.shape == bent.shape == (160, 160)
    assert 1.0 < shift.max() <= 5.0 + 1e-3
    assert np.array_equal(reframe(ramp, np.random.default_rng(4), plain_params), plain)  # 0: the old path


def test_quantise_keeps_256_levels():
    x = np.linspace(0, 2.0, 1000, dtype=np.float32)
    q = quantise(x)
    assert len(np.unique(q)) == 256 and q.max() == pytest.approx(2.0)
    assert np.abs(q - x).max() <= 2.0 / 255 / 2 + 1e-6


# -- the head's normalisation ----------------------------------------------------------------------


def test_hyperintense_disc_survives_robust_normalisation_not_the_percentile_clip():
    image = mni_slice() * 800.0  # scanner units
    bright = disc(image.shape, (110, 90), 8)
    image = np.where(bright, 1.8 * np.percentile(image[image > 100], 99), image)
    clipped = normalize_intensity(image, Modality.MR)
    robust = robust_normalize(image, Modality.MR)
    assert clipped[bright].max() == pytest.approx(1.0)  # the old rule: the disc looks like white matter
    assert robust[bright].mean() > 1.5  # kept brighter than any normal tissue
    assert robust.max() <= TAIL_MAX and robust.min() >= 0.0
    assert np.percentile(robust[~bright & (robust > 0.1)], 50) < 1.0


# -- native resolution -----------------------------------------------------------------------------


def tiny_head() -> HeadDetector:
    config = HeadConfig(inputs=("image",), channels=(4, 8), strides=(2,), num_res_units=0)
    return HeadDetector(build_head(config), config)


@pytest.mark.parametrize("shape", [(131, 157), (97, 64), (33, 35)])
def test_head_maps_have_the_input_shape(shape):
    head = tiny_head()
    x = np.random.default_rng(0).uniform(size=(1, *shape)).astype(np.float32)
    (prob,) = head.probability([x])
    assert prob.shape == shape and ((prob >= 0) & (prob <= 1)).all()


def test_padding_to_the_stride_mirrors_the_edge_instead_of_adding_zeros():
    x = torch.arange(5 * 6, dtype=torch.float32).reshape(1, 1, 5, 6)
    padded, size = pad_to_multiple(x, 4)
    assert size == (5, 6) and padded.shape == (1, 1, 8, 8)
    assert torch.equal(padded[..., :5, :6], x)
    assert torch.equal(padded[0, 0, 5:, :6], x[0, 0, [3, 2, 1]])  # rows 4, 3, 2 mirrored about row 4
    assert torch.equal(padded[0, 0, :5, 6:], x[0, 0, :, [4, 3]])
    assert pad_to_multiple(x[..., :4, :4], 4)[0].shape == (1, 1, 4, 4)  # a multiple already: untouched
    # A constant slice stays constant, so no step at the padded edge can light up the map.
    flat, _ = pad_to_multiple(torch.full((1, 1, 131, 157), 0.7), 8)
    assert torch.all(flat == 0.7)


def test_the_image_logit_is_the_max_of_the_box_mean_of_the_logits_inside_the_crop():
    logits = torch.full((2, 1, 20, 20), -4.0)
    logits[0, 0, 5:8, 5:8] = 2.0  # a 3x3 hot square: its 3x3 box mean is 2
    logits[1, 0, 0, 0] = 5.0  # a corner pixel: the box counts only the 4 pixels inside, (5 - 12) / 4
    assert image_logit(logits, 3).tolist() == pytest.approx([2.0, -1.75])
    assert image_logit(logits, 1).tolist() == pytest.approx([2.0, 5.0])


def test_scoring_is_at_native_resolution_for_odd_sizes():
    scorer = HeadScorer(tiny_head(), None, HeadCalibration(np.linspace(0, 1, 99)))
    image = np.pad(mni_slice(), ((3, 4), (0, 1)))  # odd sizes
    volume = Volume(image * 500, (1.0, 1.0), np.eye(4), Modality.MR)
    result = scorer.score_volume(volume)
    assert result.heatmap.shape == image.shape and result.mask.shape == image.shape
    assert result.head and result.alpha is None and result.score_diffusion is None


def test_coarse_slices_are_resampled_to_1mm_and_back():
    image = np.random.default_rng(0).uniform(size=(64, 50)).astype(np.float32)
    fine = to_head_resolution(image, (2.0, 2.0))
    assert fine.shape == (128, 100)
    assert to_head_resolution(image, (1.1, 0.9)) is image  # within tolerance: untouched
    assert back_to_slice(fine, (64, 50)).shape == (64, 50)


def test_slice_score_is_the_max_of_the_box_mean():
    prob = np.zeros((40, 40), np.float32)
    prob[10:13, 10:13] = 1.0  # 9 pixels: a 3x3 box mean of 1, a 7x7 box mean of 9 / 49
    assert slice_score(prob, 3) == pytest.approx(1.0)
    assert slice_score(prob, 7) == pytest.approx(9 / 49, abs=1e-6)
    assert slice_score(np.stack([prob, 0 * prob]), 3).tolist() == pytest.approx([1.0, 0.0])


# -- calibration ---------------------------------------------------------------------------------------


def test_calibration_of_a_known_distribution_gives_the_configured_rate():
    scores = np.random.default_rng(0).uniform(size=4999)
    calibration = HeadCalibration(scores, 0.05)
    tau = calibration.slice_tau()
    assert tau == pytest.approx(0.95, abs=0.01)
    fresh = np.random.default_rng(1).uniform(size=200_000)
    assert np.mean(fresh > tau) == pytest.approx(0.05, abs=0.01)
    # a volume of 10 slices: Bonferroni, 0.5 % per slice
    assert calibration.volume_tau(10) == pytest.approx(0.995, abs=0.003)
    maxima = np.random.default_rng(2).uniform(size=(20_000, 10)).max(axis=1)
    assert np.mean(maxima > calibration.volume_tau(10)) <= 0.05 + 0.005


def test_calibration_round_trips(tmp_path):
    calibration = HeadCalibration(np.array([0.3, 0.1, 0.2]), 0.1, {"n": 3})
    calibration.save(tmp_path / "c.json")
    loaded = HeadCalibration.load(tmp_path / "c.json")
    assert loaded.slice_tau() == calibration.slice_tau() and loaded.metadata == {"n": 3}
    assert loaded.volume_scores is None
    with_volumes = HeadCalibration(np.array([0.3, 0.1, 0.2]), 0.1, {}, 1, np.array([0.9, 0.7, 0.8]))
    with_volumes.save(tmp_path / "v.json")
    assert HeadCalibration.load(tmp_path / "v.json").volume_scores.tolist() == [0.7, 0.8, 0.9]


def test_volume_calibration_counts_volumes_not_slices():
    # 999 clean volumes whose worst slice is uniform on [0, 1]: flagging above the conformal 95 %
    # quantile flags 5 % of fresh clean volumes, whatever their slice count (the count is unused)
    volume_scores = np.random.default_rng(0).uniform(size=999)
    calibration = HeadCalibration(np.linspace(0, 0.5, 101), 0.05, volume_scores=volume_scores)
    tau = calibration.volume_tau(10)
    assert tau == calibration.volume_tau(300) == pytest.approx(0.95, abs=0.02)
    fresh = np.random.default_rng(1).uniform(size=100_000)
    assert np.mean(fresh > tau) == pytest.approx(0.05, abs=0.01)
    # p: (1 + calibration volumes at least as high) / (n + 1); above them all, 1 / 1000
    assert calibration.volume_p_value(2.0, 10) == pytest.approx(1 / 1000)
    assert calibration.volume_p_value(-1.0, 10) == pytest.approx(1.0)
    # no volume scores: Bonferroni over the slices (the worst slice's p times the count, at most 1)
    slices_only = HeadCalibration(np.linspace(0, 1, 99), 0.05)
    assert slices_only.volume_p_value(0.995, 10) == pytest.approx(min(1.0, 10 * 2 / 100))


def test_calibration_judges_one_scored_slice_as_an_image_and_more_as_a_volume():
    # 9 calibration slices 0.1 .. 0.9 and 4 calibration volumes 0.96 .. 0.99, at rate 0.2
    calibration = HeadCalibration(np.linspace(0.1, 0.9, 9), 0.2, volume_scores=np.array([0.96, 0.97, 0.98, 0.99]))
    assert calibration.judged_as_image(0) and calibration.judged_as_image(1) and not calibration.judged_as_image(2)
    for n in (0, 1):  # one scored slice (or none): the slice threshold and the slice's p-value
        assert calibration.tau_for(n) == calibration.slice_tau() == calibration.calibrator.threshold(0.2)
        assert calibration.p_value_for(0.85, n) == pytest.approx((1 + 1) / (9 + 1))  # only 0.9 is as high
    for n in (2, 150):  # more: the calibration volumes' threshold and p-value, whatever the count
        assert calibration.tau_for(n) == calibration.volume_tau(n) == calibration.volume_calibrator.threshold(0.2)
        assert calibration.p_value_for(0.85, n) == pytest.approx(1.0)  # below every calibration volume
        assert calibration.p_value_for(0.975, n) == pytest.approx((1 + 2) / (4 + 1))
    assert calibration.tau_for(1) != calibration.tau_for(2)
    assert calibration.tau_for(1, rate=0.5) == calibration.slice_tau(0.5)


# -- one mask rule ---------------------------------------------------------------------------------------


def test_head_result_mask_is_the_one_mask_rule():
    head = tiny_head()
    with torch.no_grad():  # a head that outputs its input: probability = sigmoid(a * x + b)
        conv = [m for m in head.model.modules() if isinstance(m, torch.nn.Conv2d)]
        for m in head.model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                m.weight.zero_()
                if m.bias is not None:
                    m.bias.zero_()
    scorer = HeadScorer(head, None, HeadCalibration(np.linspace(0, 1, 99), score_window=1), tau=0.4)
    volume = Volume((mni_slice() * 500).astype(np.float32), (1.0, 1.0), np.eye(4), Modality.MR)
    result = scorer.score_volume(volume)
    assert conv  # the model has convolutions to silence
    assert np.allclose(result.heatmap, 0.5)  # sigmoid(0) everywhere
    assert result.flag and result.tau == 0.4
    expected = unsafe_mask(result.heatmap, 0.4, result.flags_at(0.4))
    assert np.array_equal(result.mask, expected) and np.array_equal(result.mask_at(0.4), expected)
    assert not result.mask_at(0.6).any()


# -- the head's explainers ------------------------------------------------------------------------------


def test_the_differentiable_score_equals_the_slice_score():
    from core.head_explain import HeadScoreModel

    head = tiny_head()
    x = torch.from_numpy(np.random.default_rng(0).uniform(size=(2, 1, 45, 51)).astype(np.float32))
    model = HeadScoreModel(head, window=5)
    probs = head.probability(list(x.numpy()))
    assert model(x).detach().numpy() == pytest.approx(slice_score(np.stack(probs), 5), abs=1e-5)


def test_head_explainers_give_maps_on_the_probability_scale():
    from core.head_explain import HeadExplainer, fit_head_explainer_calibration

    head = tiny_head()
    image = mni_slice()[60:140, 40:140]
    channels = [image[None].astype(np.float32), np.roll(image, 5, axis=1)[None].astype(np.float32)]
    from core.explain import ExplainerSettings

    settings = ExplainerSettings(gradcam_layer="head.model.1", shap_samples=24)  # the tiny U-Net's middle
    calibration = fit_head_explainer_calibration(head, channels, window=3, settings=settings)
    assert set(calibration.maps) == {"saliency", "gradcam", "shap"}
    for name in ("saliency", "gradcam"):
        maps = HeadExplainer(head, name, calibration, window=3).maps_of(np.stack(channels))
        assert maps.shape == (2, *image.shape)
        probs = np.stack(head.probability(channels))
        tissue = image > 0.1
        # quantile-matched: the explainer's median over tissue is the probability map's median
        assert np.median(maps[:, tissue]) == pytest.approx(np.median(probs[:, tissue]), abs=0.05)
    with pytest.raises(ValueError, match="not available for the segmentation head"):
        HeadExplainer(head, "latent_ig")


class CountingExplainer:
    """A toy head explainer with a known map (0.9 times the image channel) that counts the slices it explains."""

    name = "toy"

    def __init__(self) -> None:
        self.explained = 0

    def maps_of(self, channels: np.ndarray, *, progress=None) -> np.ndarray:
        self.explained += len(channels)
        return 0.9 * channels[:, 0]


def _silent_head_scorer_and_volume(batch_size: int = 3):
    """A head whose probability is 0.5 everywhere (all slices flagged at tau 0.45) and a 9-slice volume of
    real MNI152 tissue whose first and last slices are empty (unscored)."""
    from core.types import from_display

    head = tiny_head()
    with torch.no_grad():
        for m in head.model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                m.weight.zero_()
                if m.bias is not None:
                    m.bias.zero_()
    scorer = HeadScorer(head, None, HeadCalibration(np.linspace(0, 1, 99), score_window=1), tau=0.45,
                        batch_size=batch_size)
    crop = mni_slice()[50:130, 40:140]
    slices = [np.zeros_like(crop)] + [np.roll(crop, 3 * k, axis=1) for k in range(7)] + [np.zeros_like(crop)]
    display = np.stack(slices)  # (S, rows, columns), display view
    array = np.stack([from_display(s) for s in display], axis=2) * 500
    volume = Volume(array.astype(np.float32), (1.0, 1.0, 1.0), np.eye(4), Modality.MR)
    return scorer, volume


def test_outward_order_starts_at_the_shown_slice_and_alternates_outward():
    from core.head_scoring import outward_order

    assert outward_order(5, [3, 4, 5, 6, 7, 8]) == [5, 6, 4, 7, 3, 8]
    assert outward_order(0, [2, 1, 3]) == [1, 2, 3]  # an unscored shown slice: its nearest scored ones lead


def test_explain_slices_yields_the_shown_slice_first_and_skips_unscored_slices():
    from core.head_scoring import outward_order

    scorer, volume = _silent_head_scorer_and_volume()
    result = scorer.score_volume(volume)
    scored = np.flatnonzero(np.isfinite(result.slice_scores))
    assert scored.tolist() == list(range(1, 8))
    order = outward_order(4, range(volume.n_slices))  # unscored 0 and 8 among them
    done = [index for index, _ in scorer.explain_slices(volume, result, CountingExplainer(), order)]
    assert done == [4, 5, 3, 6, 2, 7, 1]
    with pytest.raises(ValueError, match="residual"):
        next(scorer.explain_slices(volume, result, type("Residual", (), {"name": "residual"})(), order))


def test_stopping_the_explainer_early_keeps_the_done_slices_and_the_residual_map_elsewhere():
    from itertools import islice

    from core.head_scoring import outward_order

    scorer, volume = _silent_head_scorer_and_volume()
    result = scorer.score_volume(volume)
    full_maps = dict(scorer.explain_slices(volume, result, CountingExplainer()))
    full = scorer.explained_from(volume, result, full_maps, "toy")
    assert full.explained_slices is None and full.explainer == "toy"
    blocking = scorer.explain(volume, result, CountingExplainer())  # the one-shot path gives the same result
    assert np.array_equal(full.heatmap, blocking.heatmap) and np.array_equal(full.mask, blocking.mask)

    explainer = CountingExplainer()
    running = scorer.explain_slices(volume, result, explainer, outward_order(6, range(volume.n_slices)))
    done = dict(islice(running, 3))
    running.close()  # stopped between slices: nothing more is explained
    assert explainer.explained == 3 and sorted(done) == [5, 6, 7]
    partial = scorer.explained_from(volume, result, done, "toy", seconds=1.5)
    assert partial.explained_slices == (5, 6, 7) and partial.seconds["explain"] == 1.5
    for k in range(volume.n_slices):
        shown = volume.display_slice_of(partial.heatmap, k)
        expected = full_maps[k] if k in done else volume.display_slice_of(result.heatmap, k)
        assert np.array_equal(shown, expected), k
    assert np.array_equal(volume.display_slice_of(partial.heatmap, 6), volume.display_slice_of(full.heatmap, 6))
    # the one mask rule on the mixed map: the whole silent slice (0.5 > 0.45), the bright tissue where explained
    assert np.array_equal(partial.mask, unsafe_mask(partial.heatmap, 0.45, result.flags_at(0.45)))
    assert volume.display_slice_of(partial.mask, 2).all()
    assert 0 < volume.display_slice_of(partial.mask, 6).mean() < 1
    with pytest.raises(ValueError, match="residual result"):
        scorer.explained_from(volume, partial, done, "toy")

    explainer = CountingExplainer()  # in chunks: the same maps, stopped between chunks
    running = scorer.explain_slices(volume, result, explainer, outward_order(6, range(volume.n_slices)), chunk=2)
    chunked = dict(islice(running, 3))
    running.close()
    assert explainer.explained == 4 and all(np.array_equal(chunked[k], full_maps[k]) for k in chunked)


# -- training -------------------------------------------------------------------------------------------


def test_training_records_a_validation_curve_and_resumes(tmp_path):
    from core.detectors.head import Reconstructor
    from core.detectors.head_training import HeadTrainingConfig, train_head

    config = HeadTrainingConfig(head=HeadConfig(inputs=("image",), channels=(4, 8), strides=(2,), num_res_units=0),
                                steps=6, pool_size=12, refresh_every=3, refresh_size=4, val_size=8, validate_every=3,
                                batch_size=4, crop=64, hard_negative_probability=1.0)
    head = train_head(config, Reconstructor(), tmp_path / "head.pt", checkpoint=tmp_path / "c.ckpt", log=lambda _: None)
    curve = head.metadata["validation_curve"]
    assert curve["step"] == [3, 6] and set(curve) >= {"pixel_auroc", "dice", "image_auroc", "train_loss"}
    assert head.metadata["training"]["held_out"] == "itk_t1"
    assert "itk_t1" not in head.metadata["training"]["subjects"]
    config.steps = 9
    resumed = train_head(config, Reconstructor(), tmp_path / "head.pt", checkpoint=tmp_path / "c.ckpt", resume=True,
                         log=lambda _: None)
    assert resumed.metadata["validation_curve"]["step"] == [3, 6, 9]
    loaded = HeadDetector.load(tmp_path / "head.pt")
    assert loaded.metadata["training"]["steps"] == 9


def test_hard_negative_crops_hold_the_hot_pixel_and_corrupted_crops_their_label():
    from core.detectors.head_training import Sample, crop_window

    rng = np.random.default_rng(0)
    clean = Sample(np.zeros((150, 190), np.float32), np.zeros((150, 190), bool), "")
    for hot in [(0, 0), (149, 189), (75, 100), (10, 180)]:
        rows, cols = crop_window(clean, 64, rng, hot=hot)
        assert rows.stop - rows.start == cols.stop - cols.start == 64
        assert rows.start <= hot[0] < rows.stop and cols.start <= hot[1] < cols.stop
    label = np.zeros((150, 190), bool)
    label[120:125, 20:24] = True
    rows, cols = crop_window(Sample(clean.image, label, "blob"), 64, rng, hot=(0, 189))  # a label wins
    assert label[rows, cols].any()


def test_leave_one_kind_out_table_pairs_each_kind_with_the_head_that_never_saw_it():
    import pandas as pd

    from core.artifacts import ArtifactKind
    from core.benchmark.head_evaluation import LOKO_LEAVE_OUT, loko_head_name, loko_table

    assert set(LOKO_LEAVE_OUT) == {k.value for k in ArtifactKind}
    assert all(set(v) <= {k.value for k in TrainingKind} for v in LOKO_LEAVE_OUT.values())
    table = pd.DataFrame({"label": [0, 0, 1, 1, 1], "kind": ["", "", "blur", "blur", "lesion"]})
    without_smoothing = np.array([0.1, 0.2, 0.15, 0.9, 0.0])
    reference = np.array([0.1, 0.2, 0.8, 0.9, 0.05])
    frame = loko_table({loko_head_name(("smoothing",)): without_smoothing}, reference, table)
    assert frame["kind"].tolist() == ["blur"]  # no head without "blob": no lesion row
    row = frame.iloc[0]
    assert row["auroc_without"] == pytest.approx(0.75) and row["auroc_all_kinds"] == pytest.approx(1.0)
    assert row["drop"] == pytest.approx(0.25) and row["n"] == 2 and row["left_out"] == "smoothing"
    assert loko_head_name(("pasted_patch", "foreign_patch")) == "head_without_foreign_patch+pasted_patch"


def test_train_head_refuses_unknown_corruptions_to_leave_out(capsys):
    from workflows.cli import EXIT_BAD_INPUT, main

    assert main(["train-head", "--without", "grating,moire"]) == EXIT_BAD_INPUT
    assert "moire" in capsys.readouterr().err


def test_the_realistic_evaluations_refuse_a_folder_without_labels_or_heads(tmp_path, capsys):
    from workflows.cli import EXIT_BAD_INPUT, main

    assert main(["evaluate-realistic", "--benchmark", str(tmp_path)]) == EXIT_BAD_INPUT
    assert f"{tmp_path}/labels.csv not found; run `python -m workflows.cli make-realistic-benchmark`" in capsys.readouterr().err
    (tmp_path / "labels.csv").write_text("file,label,kind\na.png,0,\n")
    assert main(["evaluate-loko", "--benchmark", str(tmp_path), "--heads-dir", str(tmp_path / "none")]) == EXIT_BAD_INPUT
    assert "head_all.pt not found: train the heads without each kind first" in capsys.readouterr().err


def test_evaluate_realistic_writes_the_seed_row_beside_the_image_only_head(tmp_path):
    """`make evaluate` runs evaluate-realistic with its seed row: the committed head reads the image
    alone and loads no seed models, so the seed scorer is loaded for that row (it was None: a crash)."""
    import pandas as pd

    from core.benchmark.realistic import make_realistic_benchmark
    from core.head_scoring import HeadScorer
    from workflows.cli import main

    assert HeadScorer.load().seed is None  # the committed head is image-only
    make_realistic_benchmark(tmp_path / "bench", n_seen=2, n_unseen=0, seed=3, split="val")
    assert main(["evaluate-realistic", "--benchmark", str(tmp_path / "bench"), "--out", str(tmp_path / "out")]) == 0
    overall = pd.read_csv(tmp_path / "out" / "overall.csv")
    assert overall["method"].tolist() == ["head", "seed", "seed: S_diffusion", "seed: E_AE"]
    assert (overall["n_clean"] + overall["n_artifact"] == 2).all()


def test_an_ablation_head_is_calibrated_beside_its_file_and_runs_without_the_seed(tmp_path):
    from core.head_scoring import calibration_file_of, head_file
    from core.profiles import MRI_T1

    assert calibration_file_of(head_file(MRI_T1), MRI_T1).name == "head_calibration_mri_t1.json"
    path = tmp_path / "head_image.pt"
    assert calibration_file_of(path, MRI_T1) == tmp_path / "head_image.calibration.json"
    tiny_head().save(path)
    with pytest.raises(FileNotFoundError, match="calibrate-head"):
        HeadScorer.from_files(path, calibration_file_of(path, MRI_T1))
    HeadCalibration(np.linspace(0, 1, 101), score_window=3).save(calibration_file_of(path, MRI_T1))
    scorer = HeadScorer.from_files(path, calibration_file_of(path, MRI_T1))
    assert scorer.seed is None and scorer.window == 3 and scorer.tau == pytest.approx(0.95, abs=0.011)


# -- the realistic benchmark ----------------------------------------------------------------------------


def test_realistic_benchmark_images_carry_their_exact_masks(tmp_path):
    import pandas as pd

    from core.detectors.head_training import UNSEEN_SUBJECT
    from core.io import load_volume
    from core.benchmark.realistic import make_realistic_benchmark, read_mask

    if not UNSEEN_SUBJECT.path.is_file():
        pytest.skip(f"{UNSEEN_SUBJECT.path} not installed ({UNSEEN_SUBJECT.provenance})")
    table = make_realistic_benchmark(tmp_path, n_seen=4, n_unseen=4, seed=3)
    assert len(table) == 8 and table["label"].sum() == 4
    assert set(table["source"]) == {"seen", "unseen"} and set(table["format"]) <= {"png", "nifti"}
    assert (pd.read_csv(tmp_path / "labels.csv")["file"] == table["file"]).all()
    for row in table.itertuples():
        volume = load_volume(tmp_path / row.file)
        shown = volume.display_slice(0)
        assert shown.shape == (row.height, row.width)
        mask = read_mask(tmp_path, row.file)
        assert mask.shape == shown.shape and mask.any() == bool(row.label)


def test_a_realistic_validation_set_draws_from_the_val_split_only(tmp_path):
    from core.benchmark.realistic import make_realistic_benchmark

    table = make_realistic_benchmark(tmp_path, n_seen=6, n_unseen=0, seed=3, split="val")
    assert len(table) == 6 and set(table["source"]) == {"seen"} and "itk_t1" not in set(table["subject"])
    with pytest.raises(ValueError, match="test or val"):
        make_realistic_benchmark(tmp_path, n_seen=2, n_unseen=0, split="calib")


def test_a_benchmark_at_coarser_pixels_stores_them_as_the_world_does(tmp_path):
    from core.io import load_volume
    from core.benchmark.realistic import make_realistic_benchmark, read_labels, read_mask

    at_1mm = make_realistic_benchmark(tmp_path / "a", n_seen=6, n_unseen=0, seed=3, split="val")
    coarse = make_realistic_benchmark(tmp_path / "b", n_seen=6, n_unseen=0, seed=3, split="val", pixel_mm=(2.0, 2.0))
    assert (at_1mm["pixel_mm"] == 1.0).all() and (coarse["pixel_mm"] == 2.0).all()
    for row in coarse.itertuples():
        volume = load_volume(tmp_path / "b" / row.file)
        assert volume.display_slice(0).shape == (row.height, row.width)
        assert read_mask(tmp_path / "b", row.file).shape == (row.height, row.width)
        assert (row.height, row.width) < (224, 224) and min(row.height, row.width) >= 64  # 128-224 mm at 2 mm
        # a NIfTI states its pixels (1 mm thick), a PNG states none and is read at 1 mm
        expected = (2.0, 2.0, 1.0) if row.format == "nifti" else (1.0, 1.0)
        assert volume.spacing == pytest.approx(expected) and volume.spacing_known == (row.format == "nifti")
    # a folder made before pixel sizes varied reads as 1 mm everywhere
    (tmp_path / "a" / "labels.csv").write_text(at_1mm.drop(columns="pixel_mm").to_csv(index=False))
    assert (read_labels(tmp_path / "a")["pixel_mm"] == 1.0).all()


def test_coarsen_keeps_the_mean_and_the_field_of_view():
    from core.variation import coarsen

    image = np.zeros((100, 80), np.float32)
    image[20:80, 20:60] = 1.0
    half = coarsen(image, 2.0)
    assert half.shape == (50, 40) and half.mean() == pytest.approx(image.mean(), abs=0.01)
    assert half[25, 20] == pytest.approx(1.0, abs=1e-3) and half[2, 2] == pytest.approx(0.0, abs=1e-3)
    assert np.array_equal(coarsen(image, 1.0), image) and np.array_equal(coarsen(image, 0.9), image)


# -- the committed head on real slices ------------------------------------------------------------------


@cache
def committed_head() -> HeadScorer:
    from core.head_scoring import head_file
    from core.profiles import MRI_T1

    if not head_file(MRI_T1).is_file():
        pytest.skip("no committed head (python -m workflows.cli train-head)")
    return HeadScorer.load()


def _painted_disc_results():
    image = mni_slice() * 600.0  # the template in scanner-like units
    painted = disc(image.shape, (120, 80), 9)
    image_with = np.where(painted, 1.6 * np.percentile(image[image > 60], 99), image)
    scorer = committed_head()
    clean = scorer.score_volume(Volume(image.astype(np.float32), (1.0, 1.0), np.eye(4), Modality.MR))
    result = scorer.score_volume(Volume(image_with.astype(np.float32), (1.0, 1.0), np.eye(4), Modality.MR))
    return painted, clean, result


def test_a_bright_disc_painted_into_the_mni152_template_is_found_and_outlined():
    painted, clean, result = _painted_disc_results()
    # the disc's pixels: high probability with the disc, low on the same pixels of the clean twin
    assert result.heatmap[painted].mean() > 0.5 > clean.heatmap[painted].mean()
    mask = result.mask_at(0.5).astype(bool)  # the head's own probability threshold
    assert (mask & painted).sum() > 0.9 * painted.sum()  # covered


def test_a_bright_disc_painted_into_the_mni152_template_is_flagged_at_the_calibrated_tau_and_outlined():
    # The committed head (image only, hard negatives, elastic 8 px, crop-level loss, 28 000 steps, a tenth of
    # its slices at coarse pixels): the clean template scores 0.55, under tau 0.875; with the disc 0.9998, and
    # the mask at tau holds 227 of the disc's 253 pixels in 359 (Dice 0.74: tighter than the heads before).
    # Part 5's head: 0.66 and 0.9998, 247 of 253 in 556 (Dice 0.61); part 4's: 0.91 under tau 0.993, 251 of
    # 253 in 451 (Dice 0.71). (A strict xfail with the three-input head of parts 1-3: the clean template
    # scored 0.973, above its disc.)
    painted, clean, result = _painted_disc_results()
    assert not clean.flag and result.flag
    mask = result.mask.astype(bool)
    overlap = (mask & painted).sum()
    assert overlap > 0.85 * painted.sum() and 2 * overlap / (mask.sum() + painted.sum()) > 0.7


@pytest.mark.xfail(strict=True, reason="issue 21 open: on the held-out scanner's mid slice the committed head "
                   "scores the clean slice 0.998 (above tau 0.875) and the planted lesion 0.991, under it "
                   "(checkerboard 1.0 above, dropout 0.998 under); part 5's head: clean 0.981, lesion 0.972; the "
                   "three-input head of parts 1-3 passed here but was worse on the validation set")
def test_a_planted_artifact_scores_above_its_clean_twin_on_the_unseen_subject():
    from core.artifacts import simulate
    from core.detectors.head_training import UNSEEN_SUBJECT, load_subject

    if not UNSEEN_SUBJECT.path.is_file():
        pytest.skip(f"{UNSEEN_SUBJECT.path} not installed ({UNSEEN_SUBJECT.provenance})")
    stack = load_subject(UNSEEN_SUBJECT)
    clean = stack.slices[len(stack.slices) // 2]
    clean = clean / clean.max()
    scorer = committed_head()
    for kind in ("lesion", "checkerboard", "dropout"):
        corrupted = simulate(clean, kind, 3, np.random.default_rng(11))
        scores = [scorer.score_volume(Volume(x.astype(np.float32), (1.0, 1.0), np.eye(4), Modality.MR)).score
                  for x in (clean, corrupted.image)]
        assert scores[1] > scores[0], kind


def test_a_one_slice_volume_is_judged_as_an_image_not_against_the_calibration_volumes():
    # a one-slice NIfTI (H, W, 1) has one scored slice: the slice threshold and p-value, as for a PNG
    calibration = HeadCalibration(np.linspace(0, 1, 99), 0.05, score_window=1, volume_scores=np.full(19, 0.999))
    scorer = HeadScorer(tiny_head(), None, calibration)
    image = (mni_slice() * 500).astype(np.float32)
    flat = scorer.score_volume(Volume(image, (1.0, 1.0), np.eye(4), Modality.MR))
    one = scorer.score_volume(Volume(image[..., None], (1.0, 1.0, 1.0), np.eye(4), Modality.MR))
    assert one.tau == flat.tau == calibration.slice_tau() != calibration.volume_tau(1)
    assert one.p_value == pytest.approx(flat.p_value)


def test_clean_training_volumes_are_each_subject_as_it_installs_then_varied():
    from core.detectors.head_training import available_head_subjects, clean_training_volumes

    subjects = available_head_subjects()
    if not subjects:
        pytest.skip("no training subject installed")
    drawn = list(clean_training_volumes(1, np.random.default_rng(0)))
    assert [name for name, _ in drawn] == [s.name for s in subjects for _ in range(2)]
    (_, raw), (_, varied) = drawn[:2]
    tissue = raw.array[raw.array > np.percentile(raw.array, 50)]
    assert np.percentile(tissue, 99) == pytest.approx(1.0, abs=1e-4)  # tissue scaled to ~1, nothing else
    assert varied.array.shape == raw.array.shape and varied.spacing == raw.spacing  # the subject's own grid
    assert not np.allclose(varied.array, raw.array)


def test_volume_threshold_transfer_fits_on_the_other_people_and_counts_the_left_out_ones():
    from core.benchmark.head_evaluation import volume_threshold_transfer

    # man A: 3 volumes; man B: 4 (two scans of him, as Colin27 with and without skull, are one group)
    scores = [0.1, 0.2, 0.9, 0.3, 0.4, 0.5, 0.6]
    groups = ["a", "a", "a", "b", "b", "b", "b"]
    table = volume_threshold_transfer(scores, groups, rate=0.05).set_index("left_out")
    # few volumes: the conformal 95 % threshold is the other man's largest score
    assert table.loc["a", "tau"] == 0.6 and table.loc["a", "flagged"] == 1 and table.loc["a", "n"] == 3
    assert table.loc["b", "tau"] == 0.9 and table.loc["b", "flagged"] == 0 and table.loc["b", "fitted_on"] == 3
    assert table.loc["a", "share"] == pytest.approx(1 / 3)
    assert 0 < table.loc["a", "ci_low"] < 1 / 3 < table.loc["a", "ci_high"] < 1


def test_coarse_resolution_keeps_the_grid_and_removes_what_coarse_pixels_cannot_hold():
    from dataclasses import replace

    from core.variation import VariationParams, at_coarse_resolution, vary

    checker = (np.indices((64, 48)).sum(axis=0) % 2).astype(np.float32)  # a 1-px checkerboard
    smooth = at_coarse_resolution(checker, 2.0)
    assert smooth.shape == checker.shape and smooth.mean() == pytest.approx(0.5, abs=0.02)
    assert smooth.std() < 0.1 * checker.std()  # gone at 2 mm pixels
    image = mni_slice()
    plain = vary(image, np.random.default_rng(4))
    assert np.array_equal(plain, vary(image, np.random.default_rng(4), replace(VariationParams(), coarse_mm=(2, 3))))
    coarse = vary(image, np.random.default_rng(4), replace(VariationParams(), coarse_probability=1.0, coarse_mm=(2, 2)))
    np.testing.assert_array_equal(coarse, at_coarse_resolution(plain, 2.0))  # the same draws, then step 6


def test_storage_is_told_apart_only_when_pixel_sizes_vary():
    import pandas as pd

    from core.benchmark.head_evaluation import storage_of

    table = pd.DataFrame({"format": ["png", "nifti", "png", "nifti"], "pixel_mm": [1.0, 1.2, 1.5, 1.99]})
    assert storage_of(table).tolist() == ["png, 1-1.5 mm", "nifti, 1-1.5 mm", "png, 1.5-2 mm", "nifti, 1.5-2 mm"]
    assert storage_of(table.assign(pixel_mm=1.0)) is None and storage_of(table.drop(columns="pixel_mm")) is None


def test_a_rows_pixel_auroc_does_not_depend_on_the_rows_before_it(tmp_path):
    # the pooled-pixel subsample of each image is drawn from that image's own generator: a method's row is
    # the same alone or after another method's, and two methods are compared on the same pixels
    from core.benchmark.head_evaluation import MethodRun, summarise
    from core.benchmark.realistic import make_realistic_benchmark, read_mask
    from core.detectors.head_training import UNSEEN_SUBJECT

    if not UNSEEN_SUBJECT.path.is_file():
        pytest.skip(f"{UNSEEN_SUBJECT.path} not installed ({UNSEEN_SUBJECT.provenance})")
    table = make_realistic_benchmark(tmp_path, n_seen=4, n_unseen=2, seed=3)
    labels = table["label"].to_numpy()
    truths = [read_mask(tmp_path, f) for f in table["file"]]
    rng = np.random.default_rng(0)

    def run(name):
        maps = [np.clip(t + rng.normal(0, 0.6, t.shape), 0, None) for t in truths]  # a noisy map: pixel AUROC < 1
        return MethodRun(name, rng.uniform(size=len(labels)), labels.astype(bool), maps, truths,
                         np.zeros(len(labels)), {"score_diffusion": np.full(len(labels), np.nan),
                                                 "score_autoencoder": np.full(len(labels), np.nan)})

    first, second = run("a"), run("b")
    alone = summarise([second], table, tmp_path)["overall"].set_index("method")
    after = summarise([first, second], table, tmp_path)["overall"].set_index("method")
    assert 0.5 < alone.loc["b", "pixel_auroc"] < 1
    assert after.loc["b", "pixel_auroc"] == alone.loc["b", "pixel_auroc"]
