"""latent_ig, medXGAN-style latent-walk Integrated Gradients: exact path integrals of toy scores,
agreement with captum on straight paths, the VAE it walks in, and a planted square on the
committed models."""

import json

import numpy as np
import pytest
import torch

from core.detectors.vae import VAE, VAEConfig, train_vae
from core.explain import (
    EXPLAINER_FILE,
    Explainer,
    ExplainerCalibration,
    ExplainerName,
    ExplainerSettings,
    latent_walk,
    path_integrated_gradients,
)
from tests.test_explain import LinearScore  # S(x) = sum(w * x): path IG is exactly w * (x_end - x_start)

TINY_VAE = VAEConfig(image_size=32, channels=(4, 8), latent_channels=2)  # 2 x 8 x 8 latent


class TopFractionScore(torch.nn.Module):
    """A non-linear score shaped like SAFEGEN's: mean of the top 5 % of ``|x - normal|**2``."""

    def __init__(self, normal: torch.Tensor) -> None:
        super().__init__()
        self.normal = normal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = ((x - self.normal) ** 2).flatten(1)
        return flat.topk(max(1, flat.shape[1] // 20), dim=1).values.mean(1)


def _rng_images(shape, seed):
    return torch.from_numpy(np.random.default_rng(seed).uniform(0.1, 0.9, size=shape).astype(np.float32))


def test_path_ig_of_a_linear_score_is_exact_along_a_curved_path():
    w = torch.from_numpy(np.random.default_rng(0).normal(size=(1, 1, 8, 8)).astype(np.float32))
    start, end = _rng_images((2, 1, 8, 8), 1), _rng_images((2, 1, 8, 8), 2)
    a = torch.linspace(0, 1, 7).view(-1, 1, 1, 1, 1)
    path = start + a * (end - start) + torch.sin(np.pi * a) * _rng_images((2, 1, 8, 8), 3)  # a bent path
    attributions = path_integrated_gradients(LinearScore(w), path)
    torch.testing.assert_close(attributions, w * (end - start), atol=1e-5, rtol=0)
    model = LinearScore(w)
    torch.testing.assert_close(attributions.flatten(1).sum(1), model(end) - model(start), atol=1e-4, rtol=0)


def test_path_ig_on_a_straight_path_equals_captums_integrated_gradients():
    from captum.attr import IntegratedGradients

    model = TopFractionScore(_rng_images((1, 1, 16, 16), 4))
    baseline, x = _rng_images((3, 1, 16, 16), 5), _rng_images((3, 1, 16, 16), 6)
    steps = 10
    path = torch.stack([baseline + a * (x - baseline) for a in torch.linspace(0, 1, steps + 1)])
    ours = path_integrated_gradients(model, path)
    captum = IntegratedGradients(model).attribute(x, baselines=baseline, target=None, n_steps=steps,
                                                  method="riemann_middle")
    torch.testing.assert_close(ours, captum, atol=1e-6, rtol=1e-5)


def test_latent_ig_of_a_linear_score_is_exact_and_complete():
    torch.manual_seed(0)
    vae = VAE(TINY_VAE).eval()  # untrained: any generator makes a valid path
    w = torch.from_numpy(np.random.default_rng(7).normal(size=(1, 1, 32, 32)).astype(np.float32))
    x = _rng_images((2, 1, 32, 32), 8)
    for baseline in ("reencoded", "mean"):
        settings = ExplainerSettings(latent_ig_steps=5, latent_ig_baseline=baseline, latent_ig_sigma=0.0)
        explainer = Explainer(LinearScore(w), "latent_ig", settings=settings, latent_model=vae)
        attributions, start = explainer.latent_ig_attributions(x)
        walk = latent_walk(vae, x, 5, baseline)
        torch.testing.assert_close(start, walk[0])
        # Latent walk D(z0) -> D(z), then the straight segment D(z) -> x: w * (x - D(z0)) per pixel, exactly.
        torch.testing.assert_close(attributions, w * (x - start), atol=1e-5, rtol=0)
        model = LinearScore(w)
        torch.testing.assert_close(attributions.flatten(1).sum(1), model(x) - model(start), atol=1e-4, rtol=0)
        # The map is the positive part (sigma 0: no smoothing).
        np.testing.assert_allclose(explainer.raw_maps(x.numpy()), (w * (x - start)).clamp(min=0)[:, 0].numpy(),
                                   atol=1e-5)
    with pytest.raises(ValueError, match="reencoded"):
        latent_walk(vae, x, 3, "zeros")
    with pytest.raises(ValueError, match="train vae"):
        Explainer(LinearScore(w), "latent_ig").raw_maps(x.numpy())


def test_vae_round_trip_shapes_and_seeded_training(tmp_path):
    from tests.test_autoencoder import phantoms

    images = phantoms(16, seed=1)  # 32x32, the tiny VAE's size
    first, history = train_vae(images, val_images=images[:4], config=TINY_VAE, steps=6, batch_size=4, seed=3,
                               augment_images=False, log_every=3, progress=False)
    second, _ = train_vae(images, config=TINY_VAE, steps=6, batch_size=4, seed=3, augment_images=False,
                          progress=False)
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key]), key  # same seed, same weights
    assert history.steps == [3, 6] and len(history.val_loss) == 2
    x = torch.from_numpy(images[:5, None])
    with torch.no_grad():
        mu, logvar = first.encode(x)
        out = first(x)
    assert mu.shape == logvar.shape == (5, 2 * 8 * 8) and first.latent_dim == 128
    assert out.shape == x.shape and float(out.min()) >= 0 and float(out.max()) <= 1
    assert not torch.equal(first.latent_mean, torch.zeros(first.latent_dim))  # fitted on the train slices
    first.save(tmp_path / "vae.pt", metadata={"note": "x"})
    with torch.no_grad():
        torch.testing.assert_close(VAE.load(tmp_path / "vae.pt")(x), out, atol=0, rtol=0)
    assert json.loads((tmp_path / "vae.json").read_text())["config"]["latent_channels"] == 2
    with pytest.raises(FileNotFoundError, match="train vae"):
        VAE.load(tmp_path / "missing.pt")


# -- the committed models --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scorer():
    from core.scoring import Scorer

    return Scorer.from_folder()


@pytest.fixture(scope="module")
def square_slice():
    """A real MNI152 slice (nilearn's template, no data/ needed), clean and with a bright 16x16 square.

    The place is one where the square raises the committed score much (by 2.65 z; inside white
    matter, as bright as the square, it hardly changes the score, and no explainer of the score can
    then find it)."""
    from core.profiles import KNOWN_SUBJECTS
    from core.reference import subject_slices

    images = subject_slices(KNOWN_SUBJECTS[0]).images
    clean = images[len(images) // 2].copy()
    square = np.zeros(clean.shape, dtype=bool)
    square[80:96, 84:100] = True
    assert (clean[square] > 0.05).mean() > 0.9  # in the brain
    planted = clean.copy()
    planted[square] = 1.0
    return clean, planted, square


def test_committed_latent_ig_is_calibrated_and_complete_on_a_real_slice(scorer, square_slice):
    _, image, _ = square_slice
    calibration = ExplainerCalibration.load(EXPLAINER_FILE)
    assert ExplainerName.LATENT_IG.value in calibration.maps
    explainer = Explainer.load(scorer, "latent_ig")
    x = torch.from_numpy(image[None, None])
    attributions, start = explainer.latent_ig_attributions(x)
    with torch.no_grad():
        gap = float(explainer.model(x) - explainer.model(start))
    # Completeness: the map sums to S(x) - S(D(z0)), up to the midpoint rule's error.
    assert float(attributions.sum()) == pytest.approx(gap, abs=0.1)
    maps = explainer.maps(image[None, None])
    assert maps.shape == (1, 128, 128) and np.isfinite(maps).all()


def test_committed_latent_ig_concentrates_on_a_planted_square(scorer, square_slice):
    """Not "most of the mass": the score is a top-1 % mean over the whole slice, and the square
    makes only part of its top pixels (the rest are the clean slice's own residual), so the
    attribution is shared. The square's share must still far exceed its area and its share on the
    clean slice."""
    clean, planted, square = square_slice
    explainer = Explainer.load(scorer, "latent_ig")
    raw = explainer.raw_maps(np.stack([planted, clean])[:, None])
    fraction, before = (float(m[square].sum() / m.sum()) for m in raw)
    print(f"latent_ig map mass inside the planted square: {fraction:.3f} (clean slice: {before:.3f}; "
          f"the square is {square.mean():.3f} of the slice)")
    assert fraction > 5 * square.mean() and fraction > 5 * before


def test_missing_vae_names_the_train_command(scorer, tmp_path):
    (tmp_path / "explainers_mri_t1.json").write_text(EXPLAINER_FILE.read_text())
    with pytest.raises(FileNotFoundError, match="train vae"):
        Explainer.load(scorer, "latent_ig", tmp_path / "explainers_mri_t1.json")
