"""The diffusion detector: schedule maths, sampler call counts, determinism, save/load, a tiny trained model."""

import numpy as np
import pytest
import torch

from core.detectors.diffusion import (
    DiffusionConfig,
    DiffusionDetector,
    build_diffusion_unet,
    from_diffusion_grid,
    to_diffusion_grid,
    train_diffusion,
    vlb_weights,
)
from tests.test_autoencoder import phantoms, plant_blob

TINY = DiffusionConfig(image_size=16, channels=(8, 8), attention_levels=(False, True), num_head_channels=8,
                       num_train_timesteps=100, recon_levels=(10, 20), ddim_stride=5,
                       nll_timesteps=(5, 30, 60), map_sigma=0.0, score_fraction=0.05)


def tiny_detector(config: DiffusionConfig = TINY) -> DiffusionDetector:
    torch.manual_seed(0)
    return DiffusionDetector(build_diffusion_unet(config), config)


class CountingModel(torch.nn.Module):
    """Wraps the network and counts forward calls and the timesteps it was asked about."""

    def __init__(self, inner: torch.nn.Module, zero: bool = False) -> None:
        super().__init__()
        self.inner, self.zero, self.calls = inner, zero, []

    def forward(self, x, timesteps):
        self.calls.append(timesteps.tolist())
        return torch.zeros_like(x) if self.zero else self.inner(x, timesteps=timesteps)


def test_grid_round_trip_maps_unit_range_to_model_range():
    images = torch.rand(2, 1, 32, 32)
    grid = to_diffusion_grid(images, 16)
    assert grid.shape == (2, 1, 16, 16) and grid.min() >= -1 and grid.max() <= 1
    # Area shrinking of a constant keeps it; [0, 1] -> [-1, 1].
    assert torch.allclose(to_diffusion_grid(torch.full((1, 1, 32, 32), 0.25), 16), torch.full((1, 1, 16, 16), -0.5))
    assert from_diffusion_grid(grid, 32).shape == (2, 1, 32, 32)


def test_vlb_weights_match_the_closed_form():
    detector = tiny_detector()
    s = detector.ddpm
    weights = vlb_weights(s)
    t = 40
    beta, alpha, alphabar = s.betas[t].item(), 1 - s.betas[t].item(), float(np.prod(1 - s.betas[: t + 1].numpy()))
    assert weights[t].item() == pytest.approx(beta / (2 * alpha * (1 - alphabar)), rel=1e-4)
    assert weights.shape == (100,) and torch.all(weights > 0)


@pytest.mark.parametrize(("sampler", "level", "expected"), [("ddim", 20, [20, 15, 10, 5, 0]), ("ddim", 12, [12, 7, 2]),
                                                            ("ddpm", 6, [6, 5, 4, 3, 2, 1, 0])])
def test_samplers_call_the_model_once_per_timestep(sampler, level, expected):
    detector = tiny_detector()
    counting = CountingModel(detector.model)
    detector.model = counting
    out = detector.reconstruct(torch.rand(3, 1, 32, 32), level, sampler=sampler)
    assert out.shape == (3, 1, 32, 32) and 0 <= out.min() and out.max() <= 1
    assert [c[0] for c in counting.calls] == expected  # DDIM: level // stride + 1 calls; DDPM: level + 1
    assert all(len(set(c)) == 1 and len(c) == 3 for c in counting.calls)


def test_nll_map_of_a_zero_noise_predictor_is_the_weighted_noise_energy():
    """With eps_theta = 0 each term is w_t * eps^2, so the bound is T * mean_k(w_k * eps_k^2) per pixel."""
    detector = tiny_detector()
    detector.model = CountingModel(detector.model, zero=True)
    images = torch.rand(2, 1, 16, 16)
    bound = detector.nll_map(images)
    generator = torch.Generator().manual_seed(TINY.seed)
    noise = torch.randn((3, 1, 1, 16, 16), generator=generator)[:, 0]  # one shared noise image per timestep
    w = vlb_weights(detector.ddpm)[list(TINY.nll_timesteps)].view(3, 1, 1, 1)
    expected = (w * noise**2).mean(0) * TINY.num_train_timesteps
    assert torch.allclose(bound[0], expected, rtol=1e-5) and torch.allclose(bound[1], expected, rtol=1e-5)
    assert detector.model.calls == [[5, 5, 30, 30, 60, 60]]  # one batched call, level-major


def test_scores_are_deterministic_and_independent_of_the_batch():
    detector = tiny_detector()
    images = torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    together = detector.score_batch(images)
    alone = detector.score_batch(images[2:3])
    again = detector.score_batch(images)
    assert together.pixel_map.shape == (4, 32, 32) and together.nll_map.shape == (4, 32, 32)
    np.testing.assert_allclose(together.score, again.score)
    np.testing.assert_allclose(together.score[2:3], alone.score, rtol=1e-5)
    np.testing.assert_allclose(together.nll[2:3], alone.nll, rtol=1e-5)
    assert together.score == pytest.approx(
        [np.sort(m.ravel())[-round(0.05 * m.size):].mean() for m in together.pixel_map], rel=1e-5
    )


def test_save_and_load_round_trip_with_overrides(tmp_path):
    detector = tiny_detector()
    path = tmp_path / "diffusion.pt"
    detector.save(path, metadata={"steps": 0})
    loaded = DiffusionDetector.load(path, map_kind="nll")
    assert loaded.config.map_kind == "nll" and loaded.config.channels == (8, 8)
    assert '"steps": 0' in path.with_suffix(".json").read_text()
    images = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    reference = detector.score_batch(images)
    scored = loaded.score_batch(images)
    np.testing.assert_allclose(scored.nll_map, reference.nll_map, rtol=0.02, atol=1e-3)  # float16 weights
    np.testing.assert_allclose(scored.score, top_fraction(scored.nll_map), rtol=1e-5)  # the nll map drives it


def top_fraction(maps: np.ndarray, fraction: float = 0.05) -> np.ndarray:
    return np.array([np.sort(m.ravel())[-round(fraction * m.size):].mean() for m in maps])


def test_invalid_settings_are_refused():
    with pytest.raises(ValueError, match="map_kind"):
        tiny_detector(DiffusionConfig(**{**TINY.__dict__, "map_kind": "psnr"}))
    with pytest.raises(ValueError, match="level"):
        tiny_detector(DiffusionConfig(**{**TINY.__dict__, "recon_levels": (100,)}))
    with pytest.raises(ValueError, match="sampler"):
        tiny_detector().reconstruct(torch.rand(1, 1, 16, 16), 10, sampler="euler")


def test_training_is_seeded_and_lowers_the_noise_prediction_loss():
    clean = phantoms(32, seed=0)[:, ::2, ::2].copy()
    val = phantoms(8, seed=1)[:, ::2, ::2].copy()
    kwargs = dict(val_images=val, config=TINY, steps=40, batch_size=8, learning_rate=3e-3, seed=0,
                  augment_images=False, log_every=20, progress=False)
    detector, history = train_diffusion(clean, **kwargs)
    again, _ = train_diffusion(clean, **kwargs)
    assert history.steps == [20, 40] and len(history.val_loss) == 2 and history.seconds > 0
    assert history.val_loss[-1] < history.val_loss[0]
    for a, b in zip(detector.model.parameters(), again.model.parameters()):
        assert torch.equal(a, b)  # same seed, same weights
    with pytest.raises(ValueError, match="N, S, S"):
        train_diffusion(clean[:, :, :8], **kwargs)
