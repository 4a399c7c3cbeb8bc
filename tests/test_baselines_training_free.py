"""Training-free baselines (MRIQC-style IQMs, spectral checks) against known answers and real MNI152 slices."""

import numpy as np
import pytest

from core.baselines.base import calibrate
from core.baselines.iqm import IQM_NAMES, STD_FLOOR, IQMBaseline, slice_iqms
from core.baselines.spectral import (
    N_BINS, LocalSpectralBaseline, SpectralBaseline, radial_profile, strongest_peaks,
)
from core.profiles import KNOWN_SUBJECTS
from core.reference import subject_slices

SIZE = 128
YY, XX = np.mgrid[:SIZE, :SIZE]


def disc(radius: float = 20.0, value: float = 0.8) -> np.ndarray:
    return np.where((YY - 64) ** 2 + (XX - 64) ** 2 <= radius**2, value, 0.0)


def checkerboard(cell: int) -> np.ndarray:
    """+-1 squares of ``cell`` px."""
    return np.where((YY // cell + XX // cell) % 2 == 0, 1.0, -1.0)


@pytest.fixture(scope="module")
def real() -> dict[str, np.ndarray]:
    """12 fit slices (every 2nd of the middle 24 mm of MNI152) and the 12 slices between them, held out."""
    images = subject_slices(KNOWN_SUBJECTS[0]).images.astype(np.float64)
    mid = len(images) // 2
    return {"fit": images[mid - 12:mid + 12:2], "held": images[mid - 11:mid + 13:2]}


# ---------------------------------------------------------------- IQMs


def test_iqms_of_synthetic_discs_have_the_known_answers():
    flat = slice_iqms(disc())
    assert flat["snr"] == pytest.approx(0.8 / STD_FLOOR)  # a noise-free disc: std floored, no inf
    assert flat["cnr"] == 0.0 and flat["wm2max"] == pytest.approx(1.0)  # flat tissue: no 2-class split
    assert flat["tissue_fraction"] == pytest.approx(np.pi * 20**2 / SIZE**2, rel=0.02)
    rng = np.random.default_rng(0)
    # Rician-like noise over the whole slice spreads energy into the background: EFC rises, FBER falls.
    noisy = np.abs(disc() + rng.normal(0, 0.05, (SIZE, SIZE)))
    noisy_iqms = slice_iqms(noisy)
    assert noisy_iqms["efc"] > flat["efc"] + 0.1
    assert noisy_iqms["fber"] < flat["fber"] - 2.0
    assert noisy_iqms["snr"] < 20.0
    n, area = SIZE**2, (disc() > 0).sum()  # EFC of a flat disc of A pixels: sqrt(A) ln A / (sqrt(N) ln N)
    assert flat["efc"] == pytest.approx(np.sqrt(area) * np.log(area) / (np.sqrt(n) * np.log(n)), rel=1e-6)


def test_iqm_normative_z_flags_noise_and_checkerboard(real):
    method = IQMBaseline().fit(real["fit"])
    held = real["held"]
    table = method.metrics(held)
    assert list(table.columns) == list(IQM_NAMES) and len(table) == len(held)
    clean = method.raw_scores(held)
    noisy = method.raw_scores(np.clip(held + np.random.default_rng(1).normal(0, 0.08, held.shape), 0, 1))
    checker = method.raw_scores(np.clip(held + 0.15 * checkerboard(16) * (held > 0.05), 0, 1))
    assert noisy.min() > 5 * clean.max()  # measured: clean <= 2.2, noisy >= 32
    assert checker.min() > 1.3 * clean.max()  # measured: checkerboard >= 3.7
    assert np.allclose(method.zscores(held).pow(2).mean(axis=1) ** 0.5, clean)


# ---------------------------------------------------------------- spectra


def test_cosine_grating_lands_in_its_bin_and_is_the_strongest_peak():
    grating = np.cos(2 * np.pi * XX / 4.0)  # period 4 px: 0.25 cycles / px along x
    assert radial_profile(grating[None])[0].argmax() == int(0.25 / (np.sqrt(0.5) / N_BINS))  # bin 11
    peaks = strongest_peaks(grating, k=2)
    assert np.allclose(np.abs(peaks[:, :2]), [[0.0, 0.25], [0.0, 0.25]])


@pytest.mark.parametrize("cell", [1, 2])  # periods 2 (the x2 up-sampling checkerboard) and 4 px
def test_spectral_score_flags_a_checkerboard(real, cell):
    method = SpectralBaseline().fit(real["fit"])
    held = real["held"]
    clean = method.raw_scores(held)
    checker = method.raw_scores(np.clip(held + 0.1 * checkerboard(cell) * (held > 0.05), 0, 1))
    assert checker.min() > 1.5 * clean.max()  # measured: clean <= 16, checkerboard >= 35


def test_local_spectral_map_localises_a_checkerboard_patch(real):
    method = LocalSpectralBaseline().fit(real["fit"])
    image = real["held"][:1]
    patch = np.zeros((SIZE, SIZE), bool)
    patch[54:74, 54:74] = True
    zmap = method.raw_maps(np.clip(image + 0.1 * checkerboard(1) * patch, 0, 1))[0]
    assert zmap.shape == (SIZE, SIZE) and zmap.dtype == np.float32
    assert patch[np.unravel_index(zmap.argmax(), zmap.shape)]
    outside = zmap[(image[0] > 0.05) & ~patch].mean()
    assert zmap[patch].mean() > 3 * abs(outside) and zmap[patch].mean() > 5  # measured: 16 vs 0.1


# ---------------------------------------------------------------- shared behaviour


@pytest.mark.parametrize("factory", [IQMBaseline, SpectralBaseline, LocalSpectralBaseline])
def test_calibrate_gives_a_finite_threshold(real, factory):
    calibrated = calibrate(factory().fit(real["fit"]), real["held"])
    assert np.isfinite(calibrated.tau)
    assert (calibrated.calib_scores > calibrated.tau).mean() <= 0.1
    maps, scores = calibrated(real["held"][:3])
    assert scores.shape == (3,) and (maps is None) == (factory is not LocalSpectralBaseline)


@pytest.mark.parametrize("factory", [IQMBaseline, SpectralBaseline, LocalSpectralBaseline])
def test_all_zero_slices_give_finite_output_of_the_right_shape(real, factory):
    method = factory().fit(real["fit"])
    zeros = np.zeros((2, SIZE, SIZE))
    out = method.raw_maps(zeros) if method.pixel_maps else method.raw_scores(zeros)
    assert out.shape == ((2, SIZE, SIZE) if method.pixel_maps else (2,))
    assert np.isfinite(out).all()
    with pytest.raises(ValueError):
        method.raw_maps(zeros[0]) if method.pixel_maps else method.raw_scores(zeros[0])


def test_unfitted_baselines_refuse_to_score():
    with pytest.raises(RuntimeError):
        IQMBaseline().raw_scores(np.zeros((1, 8, 8)))
    with pytest.raises(RuntimeError):
        SpectralBaseline().raw_scores(np.zeros((1, 8, 8)))
    with pytest.raises(RuntimeError):
        LocalSpectralBaseline().raw_maps(np.zeros((1, 8, 8)))
