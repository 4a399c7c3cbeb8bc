"""Artifact simulator: exact masks, severity order, determinism, known answers, benchmark files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import ndimage

from core.artifacts import (
    EXTENT,
    FOREGROUND_MARGIN_PX,
    MIN_CHANGED_FRACTION,
    SEVERITY_TABLE,
    VISIBLE_DELTA,
    ArtifactKind,
    ArtifactPlacementError,
    Corruption,
    Extent,
    Severity,
    checkerboard_texture,
    default_foreground,
    ground_truth_mask,
    severity_table,
    simulate,
    simulate_random,
)
from core.benchmark.simulated import BENCHMARK_COLUMNS, read_png16, write_benchmark
from core.errors import EmptyImageError

LOCAL_KINDS = [kind for kind in ArtifactKind if kind.extent is Extent.LOCAL]


def make_phantom(size: int = 64, seed: int = 0, shape: tuple[int, int] | None = None) -> np.ndarray:
    """An elliptical "head": tissue at 0.6, a darker ring (0.35), two bright blobs and a dark one,
    faint smooth texture, slightly blurred edges; background exactly 0."""
    h, w = shape or (size, size)
    rows, cols = np.indices((h, w), dtype=np.float64)
    rows, cols = rows / (h - 1) * 2 - 1, cols / (w - 1) * 2 - 1
    head = (rows / 0.82) ** 2 + (cols / 0.66) ** 2 <= 1
    image = np.where(head, 0.6, 0.0)
    ring = np.hypot(rows / 0.5, cols / 0.4)
    image[head & (ring > 0.75) & (ring < 1.0)] = 0.35
    for cy, cx, radius, value in [(-0.35, -0.2, 0.12, 0.9), (0.3, 0.25, 0.15, 0.85), (0.1, -0.3, 0.08, 0.2)]:
        image[np.hypot(rows - cy, cols - cx) < radius] = value
    texture = ndimage.gaussian_filter(np.random.default_rng(seed).standard_normal((h, w)), 2)
    image = np.where(head, image + 0.03 * texture / texture.std(), 0.0)
    image = ndimage.gaussian_filter(image, 0.7) * head
    return np.clip(image, 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def phantom() -> np.ndarray:
    return make_phantom()


def corrupt(image, kind, severity, seed=0, foreground=None) -> Corruption:
    return simulate(image, kind, severity, np.random.default_rng(seed), foreground)


def abs_diff(corruption: Corruption, clean: np.ndarray) -> np.ndarray:
    return np.abs(corruption.image.astype(np.float64) - clean.astype(np.float64))


# --------------------------------------------------------------------------------------------
# The mask contract, for every kind and severity
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("severity", list(Severity), ids=lambda s: s.name.lower())
@pytest.mark.parametrize("kind", list(ArtifactKind), ids=str)
def test_mask_is_exactly_the_visibly_changed_region(phantom, kind, severity):
    out = corrupt(phantom, kind, severity, seed=3)
    assert out.image.dtype == np.float32 and out.image.shape == phantom.shape
    assert out.mask.dtype == bool and out.mask.shape == phantom.shape
    assert out.image.min() >= 0.0 and out.image.max() <= 1.0
    assert out.kind is kind and out.severity is severity and out.extent is EXTENT[kind]
    assert out.mask.any()

    diff = abs_diff(out, phantom)
    # (a) coverage 1.0 and (c) nothing visible outside, also when the caller subtracts in float32.
    assert np.all(diff[~out.mask] <= VISIBLE_DELTA)
    assert not np.any((np.abs(out.image - phantom) > VISIBLE_DELTA) & ~out.mask)
    # (b) not inflated.
    assert np.mean(diff[out.mask] > VISIBLE_DELTA / 2) >= MIN_CHANGED_FRACTION
    if kind.extent is Extent.LOCAL:
        near = ndimage.distance_transform_edt(~default_foreground(phantom)) <= FOREGROUND_MARGIN_PX
        assert not np.any(out.mask & ~near)
    assert json.loads(json.dumps(out.params)) == out.params


@pytest.mark.parametrize("kind", list(ArtifactKind), ids=str)
def test_severity_increases_the_total_change(phantom, kind):
    totals = [
        np.mean([abs_diff(corrupt(phantom, kind, severity, seed), phantom).sum() for seed in range(4)])
        for severity in Severity
    ]
    assert totals[0] < totals[1] < totals[2], totals


def test_severity_table_covers_every_kind_and_severity():
    assert set(SEVERITY_TABLE) == set(ArtifactKind)
    assert all(set(levels) == set(Severity) for levels in SEVERITY_TABLE.values())
    assert len(severity_table()) == len(ArtifactKind) * len(Severity)
    assert {str(kind) for kind in LOCAL_KINDS} == set(ArtifactKind) - {"ghosting"}


# --------------------------------------------------------------------------------------------
# Determinism
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(ArtifactKind), ids=str)
def test_same_seed_same_result_and_other_seed_other_placement(phantom, kind):
    first, again = corrupt(phantom, kind, Severity.MODERATE, 7), corrupt(phantom, kind, Severity.MODERATE, 7)
    assert np.array_equal(first.image, again.image) and np.array_equal(first.mask, again.mask)
    assert first.params == again.params
    other = corrupt(phantom, kind, Severity.MODERATE, 8)
    assert not np.array_equal(first.mask, other.mask)
    assert first.params != other.params


def test_simulate_random_draws_from_the_given_choices(phantom):
    kinds, severities = ["lesion", "dropout"], [Severity.SEVERE]
    drawn = [simulate_random(phantom, np.random.default_rng(s), kinds, severities) for s in range(12)]
    assert {out.kind for out in drawn} == {ArtifactKind.LESION, ArtifactKind.DROPOUT}
    assert {out.severity for out in drawn} == {Severity.SEVERE}
    again = simulate_random(phantom, np.random.default_rng(5), kinds, severities)
    assert np.array_equal(again.image, drawn[5].image)


# --------------------------------------------------------------------------------------------
# Known answers per kind
# --------------------------------------------------------------------------------------------


def test_dropout_only_darkens_and_lowers_the_mean_inside_the_mask(phantom):
    for seed in range(3):
        out = corrupt(phantom, "dropout", Severity.MODERATE, seed)
        assert np.all(out.image <= phantom)
        assert out.image[out.mask].mean() < phantom[out.mask].mean() - VISIBLE_DELTA


@pytest.mark.parametrize("kind, key", [("lesion", "polarity"), ("bias_spot", "direction")])
def test_lesion_and_bias_spot_move_the_mean_in_the_recorded_direction(phantom, kind, key):
    seen = set()
    for seed in range(10):
        out = corrupt(phantom, kind, Severity.MODERATE, seed)
        change = out.image[out.mask].mean() - phantom[out.mask].mean()
        assert change > VISIBLE_DELTA if out.params[key] == "bright" else change < -VISIBLE_DELTA
        seen.add(out.params[key])
    assert seen == {"bright", "dark"}


def test_checkerboard_has_its_spectral_peak_at_the_recorded_period(phantom):
    periods = set()
    for seed in range(12):
        out = corrupt(phantom, "checkerboard", Severity.SEVERE, seed)
        period = out.params["period_px"]
        diff = out.image.astype(np.float64) - phantom
        spectrum = np.abs(np.fft.fft2(np.where(out.mask, diff, 0.0)))
        peak_row, peak_col = np.unravel_index(np.argmax(spectrum), spectrum.shape)
        freq_rows, freq_cols = np.fft.fftfreq(phantom.shape[0]), np.fft.fftfreq(phantom.shape[1])
        bin_width = 1.0 / min(phantom.shape)
        assert abs(abs(freq_rows[peak_row]) - 1 / period) <= bin_width, (seed, period)
        assert abs(abs(freq_cols[peak_col]) - 1 / period) <= bin_width, (seed, period)
        periods.add(period)
    assert periods == {2, 3, 4}


def test_checkerboard_texture_is_periodic_and_zero_mean():
    for period in (2, 3, 4):
        texture = checkerboard_texture((12, 12), period, phase=(1, 2))
        assert np.array_equal(texture, np.roll(texture, period, axis=0))
        assert np.array_equal(texture, np.roll(texture, period, axis=1))
        assert abs(texture.mean()) < 1e-12 and np.abs(texture).max() == 1.0


def test_duplication_core_is_an_exact_copy_of_the_source_patch(phantom):
    for seed in range(3):
        out = corrupt(phantom, "duplication", Severity.SEVERE, seed)
        (r, c), (sr, sc) = out.params["centre"], out.params["source_centre"]
        rows, cols = np.indices(phantom.shape)
        core = np.hypot(rows - r, cols - c) <= out.params["core_radius_px"] - 0.5
        assert core.sum() > 10
        assert np.array_equal(out.image[core], phantom[rows[core] + sr - r, cols[core] + sc - c])
        assert not np.array_equal(out.image[core], phantom[core])


def test_ghosting_replica_sits_at_the_recorded_shift(phantom):
    for seed in range(4):
        out = corrupt(phantom, "ghosting", Severity.MODERATE, seed)
        axis, shift = out.params["axis"], out.params["shift_px"]
        diff = out.image.astype(np.float64) - phantom
        # Blind estimate: the shift whose replica correlates best with the added signal.
        n = phantom.shape[axis]
        scores = [np.sum(diff * np.roll(phantom, s, axis=axis)) for s in range(n)]
        assert int(np.argmax(scores)) == shift % n
        unclipped = out.image < 1.0
        replica = out.params["amplitude"] * np.roll(phantom.astype(np.float64), shift, axis=axis)
        assert np.allclose(diff[unclipped], replica[unclipped], atol=1e-6)


def test_blur_smooths_inside_the_mask(phantom):
    for seed in range(3):
        out = corrupt(phantom, "blur", Severity.SEVERE, seed)
        def roughness(image):
            return np.abs(ndimage.laplace(image.astype(np.float64)))[out.mask].mean()
        assert roughness(out.image) < roughness(phantom)


def test_ringing_oscillates_along_the_recorded_axis(phantom):
    out = corrupt(phantom, "ringing", Severity.SEVERE, 0)
    diff = out.image.astype(np.float64) - phantom
    row, col = out.params["centre"]
    profile = diff[:, col] if out.params["axis"] == 0 else diff[row, :]
    signs = np.sign(profile[np.abs(profile) > VISIBLE_DELTA / 2])
    assert np.count_nonzero(np.diff(signs)) >= 2  # at least over- and undershoot around the edge


# --------------------------------------------------------------------------------------------
# The mask machinery and input checks
# --------------------------------------------------------------------------------------------


def test_ground_truth_mask_closes_small_gaps_but_keeps_large_holes():
    clean = np.zeros((20, 20))
    support = np.zeros((20, 20), bool)
    support[2:18, 2:18] = True
    corrupted = clean.copy()
    # A pixel checkerboard just above threshold: closing makes one region of it.
    corrupted[2:8, 2:8] = np.where(np.indices((6, 6)).sum(0) % 2 == 0, 2 * VISIBLE_DELTA, 0.0)
    # A square ring around an unchanged 6x6 (36 px) hole, which is a real gap and stays out.
    corrupted[9:17, 9:17] = 2 * VISIBLE_DELTA
    corrupted[10:16, 10:16] = 0.0
    mask = ground_truth_mask(clean, corrupted, support)
    assert mask[3:7, 3:7].all() and mask[2:8, 2:8].sum() >= 34  # only the two outer corners stay out
    assert not mask[10:16, 10:16].any() and mask[9:17, 9].all()
    corrupted[0, 0] = 1.0  # visible outside the support
    with pytest.raises(ValueError, match="outside"):
        ground_truth_mask(clean, corrupted, support)


def test_default_foreground_keeps_the_largest_component_with_holes_filled():
    image = np.zeros((40, 40), np.float32)
    image[5:25, 5:25] = 0.5
    image[10:15, 10:15] = 0.0  # a hole
    image[30:33, 30:33] = 0.9  # a smaller separate component
    foreground = default_foreground(image)
    assert foreground[5:25, 5:25].all() and foreground.sum() == 400
    with pytest.raises(EmptyImageError):
        default_foreground(np.zeros((40, 40), np.float32))


@pytest.mark.parametrize("shape", [(32, 32), (40, 72)])
def test_small_and_non_square_slices_take_every_kind(shape):
    image = make_phantom(shape=shape)
    for kind in ArtifactKind:
        out = corrupt(image, kind, Severity.MODERATE, 1)
        assert out.image.shape == shape and out.mask.any()
        assert np.all(abs_diff(out, image)[~out.mask] <= VISIBLE_DELTA)


def test_bad_inputs_are_refused_with_clear_errors(phantom):
    with pytest.raises(ValueError, match=">= 32"):
        corrupt(phantom[:31], "blur", 1)
    with pytest.raises(ValueError, match=r"normalised to \[0, 1\]"):
        corrupt(phantom * 255, "blur", 1)
    with pytest.raises(ValueError, match="2-D"):
        corrupt(phantom[None], "blur", 1)
    with pytest.raises(ValueError, match="foreground shape"):
        corrupt(phantom, "blur", 1, foreground=np.ones((8, 8), bool))
    with pytest.raises(ValueError):
        corrupt(phantom, "not_a_kind", 1)


def test_an_artifact_that_cannot_show_raises_after_bounded_retries():
    flat = np.zeros((48, 48), np.float32)
    flat[8:40, 8:40] = 0.5  # copying uniform tissue onto uniform tissue changes nothing
    with pytest.raises(ArtifactPlacementError, match="duplication"):
        corrupt(flat, "duplication", Severity.MILD)


def test_a_given_foreground_confines_local_artifacts(phantom):
    foreground = np.zeros(phantom.shape, bool)
    foreground[10:34, 10:34] = default_foreground(phantom)[10:34, 10:34]
    near = ndimage.distance_transform_edt(~foreground) <= FOREGROUND_MARGIN_PX
    for kind in LOCAL_KINDS:
        out = corrupt(phantom, kind, Severity.MILD, 2, foreground=foreground)
        r, c = out.params["centre"]
        assert foreground[r, c] and not np.any(out.mask & ~near)


# --------------------------------------------------------------------------------------------
# Benchmark files
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bench_images() -> np.ndarray:
    return np.stack([make_phantom(seed=s) * (0.8 + 0.05 * s) for s in range(4)])


@pytest.fixture(scope="module")
def bench(tmp_path_factory, bench_images):
    out = tmp_path_factory.mktemp("bench")
    table = write_benchmark(bench_images, out, seed=11, source_ids=["a", "b", "c", "d"])
    return out, table


def test_benchmark_writes_every_file_with_the_right_counts(bench):
    out, table = bench
    n_corrupted = len(ArtifactKind) * len(Severity)
    assert list(table.columns) == list(BENCHMARK_COLUMNS)
    assert len(table) == 2 * n_corrupted and table.label.sum() == n_corrupted
    assert len(list((out / "images").glob("*.png"))) == len(table)
    assert len(list((out / "masks").glob("*.png"))) == len(table)
    assert table.groupby(["kind", "severity"]).size().drop(("clean", 0)).eq(1).all()
    clean = table[table.label == 0]
    assert (clean.kind == "clean").all() and (clean.severity == 0).all() and (clean.mask_fraction == 0).all()
    # Clean images come from other source images than the corrupted ones.
    assert not set(clean.source) & set(table[table.label == 1].source)
    assert pd.read_csv(out / "labels.csv").shape == table.shape


def test_benchmark_pngs_match_the_npz_arrays(bench):
    out, table = bench
    arrays = np.load(out / "benchmark.npz")
    assert arrays["images"].dtype == np.float32 and arrays["masks"].dtype == bool
    assert list(arrays["ids"]) == list(table.id) and list(arrays["labels"]) == list(table.label)
    for i, row in enumerate(table.itertuples()):
        assert np.abs(read_png16(out / row.image) - arrays["images"][i]).max() <= 1 / 65535
        mask_png = np.asarray(Image.open(out / row.mask))
        assert mask_png.dtype == np.uint8 and set(np.unique(mask_png)) <= {0, 255}
        assert np.array_equal(mask_png == 255, arrays["masks"][i])
        assert row.mask_fraction == pytest.approx(arrays["masks"][i].mean(), abs=1e-6)
        assert arrays["masks"][i].any() == bool(row.label)


def test_a_benchmark_row_is_reproduced_from_its_sample_seed(bench, bench_images):
    out, table = bench
    row = table[table.kind == "noise_patch"].iloc[0]
    again = simulate(bench_images["abcd".index(row.source)], row.kind, row.severity,
                     np.random.default_rng(row.sample_seed))
    assert np.array_equal(again.mask, np.asarray(Image.open(out / row["mask"])) == 255)
    assert json.dumps(again.params, sort_keys=True, separators=(",", ":")) == row.params


def test_benchmark_is_deterministic_per_seed(tmp_path, bench, bench_images):
    out, _ = bench
    write_benchmark(bench_images, tmp_path / "same", seed=11, source_ids=["a", "b", "c", "d"])
    assert (tmp_path / "same" / "labels.csv").read_bytes() == (out / "labels.csv").read_bytes()
    first, second = np.load(out / "benchmark.npz"), np.load(tmp_path / "same" / "benchmark.npz")
    for key in ("images", "masks", "labels"):
        assert np.array_equal(first[key], second[key])
    write_benchmark(bench_images, tmp_path / "other", seed=12, source_ids=["a", "b", "c", "d"])
    assert (tmp_path / "other" / "labels.csv").read_bytes() != (out / "labels.csv").read_bytes()


def test_rewriting_a_benchmark_folder_leaves_no_stale_files(tmp_path, bench_images):
    write_benchmark(bench_images, tmp_path, seed=0)
    table = write_benchmark(bench_images, tmp_path, seed=0, kinds=["lesion"], severities=[3], n_clean=2)
    assert len(table) == 3
    assert sorted(p.stem for p in (tmp_path / "images").glob("*.png")) == sorted(table.id)
    assert sorted(p.stem for p in (tmp_path / "masks").glob("*.png")) == sorted(table.id)
