"""The AnoDDPM-style full-step baseline on the committed DDPM, on a real MNI152 slice (nilearn, so no
data/ needed) with a planted bright square: the step count, determinism, and the map itself.

Small lambdas (20 and 50 instead of the paper's 250) keep the file to a few seconds on two cores.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.baselines.anoddpm import AnoDDPMBaseline
from core.detectors.autoencoder import smooth
from core.detectors.diffusion import from_diffusion_grid, to_diffusion_grid
from tests.baseline_helpers import mid_brain_slices, planted

LEVEL = 20


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Run these many tiny network calls on one thread: two threads on a busy two-core machine wait on
    each other at every call (measured: this file 17 s on one thread, 180 s on two, under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class CountingModel:
    """Wraps the DDPM's network and records the timestep of every call."""

    def __init__(self, model) -> None:
        self.model, self.timesteps = model, []

    def __call__(self, sample, timesteps):
        self.timesteps.append(int(timesteps[0]))
        assert torch.all(timesteps == timesteps[0])  # the whole batch is at the same step
        return self.model(sample, timesteps=timesteps)


@pytest.fixture(scope="module")
def real():
    """A real mid-brain MNI152 slice on the 128 model grid, its planted copy and the square's mask."""
    clean = mid_brain_slices()[1][5]  # the slice just below the middle
    corrupt, mask = planted(clean)
    return clean, corrupt, mask


@pytest.fixture(scope="module")
def counted(real):
    """Maps of [clean, planted] at lambda = LEVEL, with every network call recorded."""
    clean, corrupt, _ = real
    method = AnoDDPMBaseline(level=LEVEL, batch_size=2).fit(np.stack([clean]))
    detector = method._load()
    counter = CountingModel(detector.model)
    detector.model = counter
    try:
        maps = method.raw_maps(np.stack([clean, corrupt]))
    finally:
        detector.model = counter.model
    return method, maps, counter.timesteps


def test_every_one_of_the_lambda_ancestral_steps_runs(counted):
    _, maps, timesteps = counted
    assert timesteps == list(range(LEVEL - 1, -1, -1))  # exactly lambda calls, no DDIM skipping
    assert maps.shape == (2, 128, 128) and maps.dtype == np.float32
    assert np.all(np.isfinite(maps)) and np.all(maps >= 0)


@pytest.fixture(scope="module")
def clean_alone(real) -> np.ndarray:
    """The clean slice's reconstruction at lambda = LEVEL, denoised on its own (a batch of one)."""
    clean, _, _ = real
    return AnoDDPMBaseline(level=LEVEL, batch_size=1).reconstruct(clean[None])[0]


def test_the_same_seed_gives_the_same_maps_whatever_the_batch(counted, real, clean_alone):
    _, maps, _ = counted
    clean, _, _ = real
    alone = smooth(torch.from_numpy(np.abs(clean - clean_alone)[None, None]), 1.0)[0, 0].numpy()
    np.testing.assert_allclose(alone, maps[0], atol=1e-5)  # a batch of one == the first slice of a batch of two
    seeds = [AnoDDPMBaseline(level=2, seed=seed).raw_maps(clean[None])[0] for seed in (0, 1)]
    assert np.abs(seeds[0] - seeds[1]).max() > 1e-3  # the seed does change the noise


def test_a_clean_real_slice_comes_back_close_to_itself(real, clean_alone):
    clean, _, _ = real
    tissue = clean > 0.05
    reconstruction = clean_alone
    assert reconstruction.shape == clean.shape
    # The DDPM sees the slice on its 64 grid: what that round trip alone loses is the floor.
    round_trip = from_diffusion_grid((to_diffusion_grid(torch.from_numpy(clean[None, None]), 64) + 1) / 2, 128)
    floor = np.abs(round_trip[0, 0].numpy() - clean)[tissue].mean()
    error = np.abs(reconstruction - clean)[tissue].mean()
    assert error < 0.07  # measured 0.059 on tissue in [0, 1]
    assert error < floor + 0.015  # ... of which the 64 grid round trip alone is 0.048


def test_the_map_is_higher_inside_a_planted_square(counted, real):
    _, maps, _ = counted
    clean, corrupt, mask = real
    tissue = clean > 0.05
    clean_map, corrupt_map = maps
    # At lambda = 20 the noise hardly hides the square, yet it is already brighter than the tissue around it
    # (measured 0.072 inside, 0.060 outside, 0.057 in the same place on the clean slice).
    assert corrupt_map[mask].mean() > 1.1 * corrupt_map[tissue & ~mask].mean()
    assert corrupt_map[mask].mean() > 1.15 * clean_map[mask].mean()
    # More noise (lambda = 50) hides more of it, so more of it is healed and the contrast grows (0.120 / 0.076).
    deeper = AnoDDPMBaseline(level=50).raw_maps(corrupt[None])[0]
    assert deeper[mask].mean() > 1.4 * deeper[tissue & ~mask].mean()


def test_lambda_must_fit_the_schedule():
    with pytest.raises(ValueError):
        AnoDDPMBaseline(level=0)
    with pytest.raises(ValueError):
        AnoDDPMBaseline(level=1001).fit(np.zeros((1, 128, 128), np.float32))
