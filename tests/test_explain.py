"""Explainers: exact attributions of toy scores, a planted blob found by every explainer,
the common scale, masks and their summaries, and the committed models' score rebuilt with gradients."""

import numpy as np
import pytest
import torch

from core.calibration import RobustScale
from core.explain import (
    AnomalyScoreModel,
    Explainer,
    ExplainerCalibration,
    ExplainerName,
    ExplainerSettings,
    QuantileMap,
    fit_explainer_calibration,
    shap_regions,
)
from core.masks import remove_small_regions, summarise_mask, unsafe_mask

EXACT = ExplainerSettings(saliency_sigma=0.0, shap_regions="grid", shap_grid=2, shap_samples=60, shap_batch=60)


class LinearScore(torch.nn.Module):
    """score(x) = sum(w * x): its gradient is w, its Shapley values are w * (x - baseline) summed per region."""

    def __init__(self, weights: torch.Tensor) -> None:
        super().__init__()
        self.weights = weights

    def pixel_map(self, x: torch.Tensor) -> torch.Tensor:
        return (self.weights * x)[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pixel_map(x).flatten(1).sum(1)


class TwoChannelScore(torch.nn.Module):
    """A 1x1 conv makes channels (1 x, 2 x); the score is sum(3 A_0 - 1 A_1).

    Grad-CAM at ``conv``: channel weights = mean gradient = (3, -1), so the map is
    ReLU(3 x - 2 x) = x for x >= 0.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, kernel_size=1, bias=False)
        with torch.no_grad():
            self.conv.weight[:] = torch.tensor([1.0, 2.0]).view(2, 1, 1, 1)
        self.register_buffer("mix", torch.tensor([3.0, -1.0]).view(1, 2, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv(x) * self.mix).flatten(1).sum(1)


def _toy_input() -> tuple[np.ndarray, torch.Tensor]:
    rng = np.random.default_rng(0)
    x = rng.uniform(0.2, 1.0, size=(1, 1, 4, 4)).astype(np.float32)  # all tissue (> 0.05)
    w = torch.from_numpy(rng.normal(size=(1, 1, 4, 4)).astype(np.float32))
    return x, w


def test_saliency_of_a_linear_score_is_the_absolute_weight():
    x, w = _toy_input()
    maps = Explainer(LinearScore(w), "saliency", settings=EXACT).raw_maps(x)
    np.testing.assert_allclose(maps[0], np.abs(w.numpy()[0, 0]), atol=1e-6)


def test_residual_explainer_returns_the_pixel_map():
    x, w = _toy_input()
    maps = Explainer(LinearScore(w), "residual").raw_maps(x)
    np.testing.assert_allclose(maps[0], (w.numpy() * x)[0, 0], atol=1e-6)


def test_gradcam_of_a_two_channel_toy_is_the_input():
    x, _ = _toy_input()
    settings = ExplainerSettings(gradcam_layer="conv")
    maps = Explainer(TwoChannelScore(), "gradcam", settings=settings).raw_maps(x)
    np.testing.assert_allclose(maps[0], x[0, 0], atol=1e-5)


def test_kernel_shap_of_a_linear_score_is_exact_per_region_and_complete():
    x, w = _toy_input()
    baseline = np.full_like(x, 0.3)
    explainer = Explainer(LinearScore(w), "shap", settings=EXACT,
                          reconstruct=lambda t: torch.from_numpy(baseline).expand_as(t))
    maps = explainer.raw_maps(x)[0]
    contribution = (w.numpy() * (x - baseline))[0, 0]
    # Four 2x2 squares; each pixel carries its square's Shapley value divided by the square's area (4).
    for r in (0, 2):
        for c in (0, 2):
            expected = contribution[r : r + 2, c : c + 2].sum() / 4
            np.testing.assert_allclose(maps[r : r + 2, c : c + 2], expected, atol=1e-4)
    # Completeness: the map sums to score(x) - score(background).
    assert maps.sum() == pytest.approx(contribution.sum(), abs=1e-4)


def test_shap_regions_are_consecutive_and_keep_background_apart():
    image = np.zeros((32, 32), np.float32)
    image[8:24, 8:24] = 0.6
    grid = shap_regions(image, ExplainerSettings(shap_regions="grid", shap_grid=8))
    assert grid[0, 0] == 0 and set(np.unique(grid).tolist()) == set(range(5))  # background + 4 squares
    slic = shap_regions(image, ExplainerSettings(shap_regions="slic", shap_segments=4))
    assert slic[0, 0] == 0 and np.array_equal(np.unique(slic), np.arange(slic.max() + 1))
    assert not np.any(slic[image == 0])  # only background pixels carry label 0
    with pytest.raises(ValueError, match="slic"):
        shap_regions(image, ExplainerSettings(shap_regions="hexagons"))


def test_quantile_map_known_answers():
    qmap = QuantileMap((0.0, 1.0, 2.0), (0.0, 10.0, 20.0))
    np.testing.assert_allclose(qmap(np.array([0.5, 1.5, 3.0, -1.0])), [5.0, 15.0, 30.0, -10.0])
    tied = QuantileMap((0.0, 0.0, 1.0), (1.0, 2.0, 3.0))  # a sparse map: its low quantiles are all 0
    np.testing.assert_allclose(tied(np.array([0.0, 0.5, 2.0])), [2.0, 2.5, 4.0])
    rng = np.random.default_rng(0)
    fitted = QuantileMap.fit(rng.exponential(size=100_000), rng.normal(size=100_000))
    # After matching, the mapped sample has the target's quantiles at the anchors.
    mapped = fitted(rng.exponential(size=100_000))
    assert np.mean(mapped > 2.326) == pytest.approx(0.01, abs=0.002)
    assert np.median(mapped) == pytest.approx(0.0, abs=0.02)


def test_unsafe_mask_drops_small_regions_and_unflagged_slices():
    heat = np.zeros((128, 128, 2), np.float32)
    heat[10:20, 10:20, 0] = 9.0  # 100 pixels: kept
    heat[50:52, 50:52, 0] = 9.0  # 4 pixels < 8: dropped
    heat[30:40, 30:40, 1] = 9.0  # on an unflagged slice: dropped
    mask = unsafe_mask(heat, 5.0, np.array([True, False]))
    assert mask.dtype == np.uint8 and mask.sum() == 100 and mask[15, 15, 0] == 1
    assert unsafe_mask(heat[..., 0], 5.0).sum() == 100  # 2-D in, 2-D out
    assert remove_small_regions(np.eye(3, dtype=bool), 3).sum() == 3  # diagonal pixels are 8-connected


def test_summarise_mask_counts_area_regions_and_volume():
    mask = np.zeros((10, 10, 3), np.uint8)
    mask[0:2, 0:2, 1] = 1  # 4 pixels
    mask[5:8, 5:8, 1] = 1  # 9 pixels, second region
    mask[5:8, 5:8, 2] = 1  # continues the second region in 3-D
    summary = summarise_mask(mask, (0.5, 0.5, 2.0))
    assert summary.area_mm2.tolist() == [0.0, 13 * 0.25, 9 * 0.25]
    assert summary.regions.tolist() == [0, 2, 1] and summary.n_regions == 2
    assert summary.volume_ml == pytest.approx(22 * 0.25 * 2.0 / 1000)
    assert summary.largest_slice == 1
    empty = summarise_mask(np.zeros((4, 4), np.uint8), (1.0, 1.0))
    assert empty.largest_slice == -1 and empty.total_mm2 == 0.0 and empty.volume_ml == 0.0


def test_explainer_calibration_round_trip(tmp_path):
    calibration = ExplainerCalibration({"saliency": QuantileMap((0.0, 1.0), (0.0, 4.0))},
                                       ExplainerSettings(shap_samples=33), {"note": "x"})
    calibration.save(tmp_path / "e.json")
    again = ExplainerCalibration.load(tmp_path / "e.json")
    assert again.settings.shap_samples == 33 and again.metadata == {"note": "x"}
    np.testing.assert_allclose(again.maps["saliency"](np.array([0.5])), [2.0])
    with pytest.raises(ValueError, match="calibrate-explainers"):
        Explainer(LinearScore(torch.ones(1, 1, 4, 4)), "gradcam").maps(np.zeros((1, 1, 4, 4), np.float32))


# -- one planted blob ------------------------------------------------------------------------------


def _blob_phantoms(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One phantom plus faint noise (clean), and copies with a bright 5x5 blob at n places (mask)."""
    from tests.test_autoencoder import phantoms

    rng = np.random.default_rng(seed)
    normal = phantoms(1, seed=3)[0]
    clean = np.clip(normal + rng.normal(0, 0.01, size=(n, *normal.shape)), 0, 1).astype(np.float32)
    clean[:, normal == 0] = 0.0
    images, masks = clean.copy(), np.zeros(clean.shape, dtype=bool)
    for i, (r, c) in enumerate(rng.integers(10, 18, size=(n, 2))):
        masks[i, r : r + 5, c : c + 5] = True
    images[masks] = 1.0
    return normal, clean, images, masks


class OracleScore(torch.nn.Module):
    """The SAFEGEN score shape with a perfect "reconstruction" (the clean phantom).

    pixel map = ``features(|x - normal|)`` summed over two channels (a 3x3 conv that copies its
    input twice, Grad-CAM's layer); score = mean of the top 2 %. Everything anomalous is the blob,
    so every explainer must point there.
    """

    def __init__(self, normal: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("normal", torch.from_numpy(normal)[None, None])
        self.features = torch.nn.Conv2d(1, 2, kernel_size=3, padding=1, bias=False)
        with torch.no_grad():
            self.features.weight.zero_()
            self.features.weight[:, 0, 1, 1] = torch.tensor([1.0, 0.5])

    def pixel_map(self, x):
        return self.features((x - self.normal).abs()).sum(1)

    def forward(self, x):
        flat = self.pixel_map(x).flatten(1)
        return flat.topk(max(1, int(0.02 * flat.shape[1])), dim=1).values.mean(1)

    def reconstruct(self, x):
        return self.normal.expand_as(x)


# latent_ig needs a generator of normal images (a VAE); tests/test_latent_ig.py covers it.
WITHOUT_GENERATOR = [e for e in ExplainerName if e is not ExplainerName.LATENT_IG]


@pytest.mark.parametrize("name", [e.value for e in WITHOUT_GENERATOR])
def test_every_explainer_points_at_the_blob_of_an_oracle_detector(name):
    from core.metrics import dice

    normal, clean, images, blob = _blob_phantoms(6, seed=0)
    model = OracleScore(normal)
    settings = ExplainerSettings(gradcam_layer="features", shap_regions="grid", shap_grid=4, shap_samples=200,
                                 shap_batch=100, saliency_sigma=0.0)
    calibration = fit_explainer_calibration(model, clean, settings=settings, reconstruct=model.reconstruct)
    explainer = Explainer(model, name, calibration, reconstruct=model.reconstruct)
    maps = explainer.maps(images[:, None])
    from scipy import ndimage

    # SHAP's value fills a whole 4x4 square, whose first pixel may sit up to 3 pixels off the blob.
    margin = 3 if name == "shap" else 0
    near = ndimage.binary_dilation(blob, structure=np.ones((1, 2 * margin + 1, 2 * margin + 1))) if margin else blob
    peaks = maps.reshape(len(maps), -1).argmax(1)
    assert near.reshape(len(maps), -1)[np.arange(len(maps)), peaks].all(), f"{name} peaks off the blob"
    # The map's hottest pixels, as many as the blob has, outline it.
    flat = maps.reshape(len(maps), -1)
    top = np.zeros_like(flat, dtype=bool)
    np.put_along_axis(top, np.argsort(-flat, axis=1)[:, :25], True, axis=1)
    overlap = dice(top.reshape(blob.shape), blob, axis=(1, 2))
    assert float(np.mean(overlap)) > (0.5 if name == "shap" else 0.7), (name, overlap)


class PhantomScore(torch.nn.Module):
    """The SAFEGEN score (top-fraction mean of a robust-z autoencoder residual) on a tiny trained autoencoder."""

    def __init__(self, detector, scale: RobustScale, fraction: float) -> None:
        super().__init__()
        self.detector = detector
        self.autoencoder = detector.model
        self.scale = scale
        self.fraction = fraction

    def pixel_map(self, x):
        raw, _ = self.detector.residual_map(x)
        return (raw[:, 0] - self.scale.median) / self.scale.scale

    def forward(self, x):
        flat = self.pixel_map(x).flatten(1)
        k = max(1, int(round(self.fraction * flat.shape[1])))
        return flat.topk(k, dim=1).values.mean(1)


@pytest.fixture(scope="module")
def trained_phantom_explainers():
    from core.detectors.autoencoder import train_autoencoder
    from tests.test_autoencoder import TINY, phantoms

    detector, _ = train_autoencoder(phantoms(64, seed=1), config=TINY, steps=400, batch_size=16, seed=0,
                                    augment_images=False, progress=False)
    clean = phantoms(12, seed=7)
    with torch.no_grad():
        raw, _ = detector.residual_map(torch.from_numpy(clean[:, None]))
    model = PhantomScore(detector, RobustScale.fit(raw[:, 0].numpy()[clean > 0.05]), fraction=0.02)
    settings = ExplainerSettings(gradcam_layer="autoencoder.decode.decode_1", shap_regions="grid", shap_grid=4,
                                 shap_samples=300, shap_batch=100)
    calibration = fit_explainer_calibration(model, clean, settings=settings, reconstruct=detector.reconstruct)
    return {name: Explainer(model, name, calibration, reconstruct=detector.reconstruct) for name in WITHOUT_GENERATOR}


GRADCAM_MISSES = pytest.mark.xfail(
    strict=True,
    reason="Grad-CAM's channel-averaged gradients at a decoder layer do not single out the blob of a trained "
           "autoencoder (pixel AUROC about 0.56 here, 0.54 on the real benchmark); kept as a measured weakness",
)


@pytest.mark.parametrize("name", [pytest.param(e.value, marks=GRADCAM_MISSES) if e is ExplainerName.GRADCAM
                                  else e.value for e in WITHOUT_GENERATOR])
def test_explainers_of_a_trained_autoencoder_rank_the_blob_above_the_phantom(trained_phantom_explainers, name):
    """A trained autoencoder spreads a blob's effect over the whole slice (its 4x4 bottleneck sees
    everything), so no exact map is known; the blob's pixels must still rank high."""
    from core.metrics import pixel_auroc
    from tests.test_autoencoder import phantoms, plant_blob

    images, blob = plant_blob(phantoms(6, seed=11))
    maps = trained_phantom_explainers[name].maps(images[:, None])
    tissue = images > 0.05
    assert pixel_auroc(maps[tissue], blob[tissue]) > 0.75, name
    assert maps[blob].mean() > np.median(maps[~blob & tissue]) + 1.0, name


# -- the committed models: the differentiable score is the Scorer's score --------------------------


@pytest.fixture(scope="module")
def benchmark_slices():
    """Six real MNI152 slices on the model grid (built from nilearn's template, no data/ needed)."""
    from core.profiles import KNOWN_SUBJECTS
    from core.reference import subject_slices

    images = subject_slices(KNOWN_SUBJECTS[0]).images
    middle = len(images) // 2
    return images[middle - 3 : middle + 3]


def test_anomaly_score_model_equals_the_scorers_slice_score(benchmark_slices):
    from core.benchmark.evaluation import variant_outputs
    from core.scoring import Scorer

    scorer = Scorer.from_folder()
    model = AnomalyScoreModel(scorer)
    x = torch.from_numpy(benchmark_slices[:, None].copy()).requires_grad_()
    scores = model(x)
    outputs, _ = variant_outputs(scorer, benchmark_slices)
    combined = next(o for o in outputs if o.name == "combined")
    np.testing.assert_allclose(scores.detach().numpy(), combined.scores, atol=1e-4)
    scores.sum().backward()  # and it has a gradient with respect to every slice
    assert x.grad is not None and np.all(np.abs(x.grad.numpy()).reshape(len(x), -1).max(1) > 0)


def test_committed_explainer_calibration_loads_and_is_monotone():
    from core.explain import EXPLAINER_FILE

    calibration = ExplainerCalibration.load(EXPLAINER_FILE)
    assert set(calibration.maps) == {"saliency", "gradcam", "shap", "latent_ig"}
    for qmap in calibration.maps.values():
        assert np.all(np.diff(qmap.source) >= 0) and np.all(np.diff(qmap.target) >= 0)
        values = qmap(np.linspace(min(qmap.source), 2 * max(qmap.source), 50))
        assert np.all(np.diff(values) >= -1e-6)
