"""The trained-feature baselines (PaDiM, PatchCore, PHANES-style) and the comparison runner, on real
MNI152 slices with a planted square (a known mask), without data/."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from core.baselines.base import calibrate
from core.baselines.padim import PaDiMBaseline
from core.baselines.patchcore import PatchCoreBaseline, greedy_coreset
from core.baselines.phanes import PHANESBaseline
from tests.baseline_helpers import mid_brain_slices, planted, write_reference


@pytest.fixture(scope="module")
def slices():
    return mid_brain_slices()


def test_greedy_coreset_picks_the_far_points_first():
    points = torch.tensor([[0.0], [1.0], [2.0], [50.0], [100.0]])
    chosen = set(greedy_coreset(points, 3, seed=0).tolist())
    assert {0, 4} <= chosen or {3, 4} <= chosen  # both ends of the line are covered
    # k-center is 2-approximate: the covering radius of 3 centres is at most twice the optimum (25)
    radius = torch.cdist(points, points[sorted(chosen)]).min(dim=1).values.max()
    assert radius <= 50.0


@pytest.mark.parametrize(("method", "contrast"), [(PaDiMBaseline, 2.0), (PatchCoreBaseline, 1.5)])
def test_feature_baselines_peak_on_a_planted_square(method, contrast, slices):
    fit, held = slices
    detector = method().fit(fit)
    corrupt, mask = planted(held[5])
    maps = detector.raw_maps(np.stack([held[5], corrupt]))
    clean_map, corrupt_map = maps
    peak = np.unravel_index(np.argmax(corrupt_map), corrupt_map.shape)
    near = np.zeros_like(mask)
    near[48:68, 36:56] = True  # the square, 4 pixels around (the maps are smoothed with sigma 4)
    assert near[peak]
    assert corrupt_map[mask].mean() > contrast * clean_map[mask].mean()  # measured 1.8x for PatchCore


def test_phanes_masks_the_square_and_paints_it_back_towards_the_clean_slice(slices):
    fit, held = slices
    phanes = PHANESBaseline(level=400).fit(fit)
    clean = held[5]
    corrupt, square = planted(clean, value=0.2)  # a dark hole in the white matter
    healthy, suspect = phanes.pseudo_healthy(corrupt[None])
    assert suspect[0][square].mean() > 0.9  # the AE residual's mask covers the square (measured: all of it)
    assert suspect[0].mean() < 0.3  # ... and not the whole slice
    before = np.abs(corrupt - clean)[square].mean()
    after = np.abs(healthy[0] - clean)[square].mean()
    assert after < 0.5 * before  # in-painting replaced the square with tissue-like values (0.49 -> 0.21)
    raw = phanes.raw_maps(corrupt[None])[0]
    assert raw[square].mean() > 3 * raw[~square & (clean > 0.05)].mean()


def test_calibrate_puts_a_feature_baseline_on_a_z_scale_with_its_own_tau(slices):
    fit, held = slices
    calibrated = calibrate(PaDiMBaseline().fit(fit), held)
    maps, scores = calibrated(held)
    tissue = held > 0.05
    assert abs(np.median(maps[tissue])) < 1e-3  # the calib tissue pixels' median maps to 0
    assert (scores > calibrated.tau).mean() <= 0.05 + 1e-9  # at most 5 % of the calib slices flagged
    corrupt, _ = planted(held[5])
    _, score = calibrated(corrupt[None])
    assert score[0] > calibrated.tau  # the square is flagged at the method's own threshold


@pytest.fixture
def tiny_benchmark(tmp_path, slices):
    """A reference folder (train = even slices, calib = odd ones) and an 8-image benchmark: 4 clean,
    4 with a planted square (kinds lesion / dropout)."""
    fit, held = slices
    reference = write_reference(tmp_path / "reference", fit, held)
    images, masks, labels, kinds = [], [], [], []
    for i, image in enumerate(held[:8]):
        if i % 2:
            image, mask = planted(image)
            kind = "lesion" if i % 4 == 1 else "dropout"
        else:
            mask, kind = np.zeros_like(image, bool), "clean"
        images.append(image)
        masks.append(mask)
        labels.append(int(i % 2))
        kinds.append(kind)
    bench = {"images": np.stack(images), "masks": np.stack(masks), "labels": np.array(labels),
             "kinds": np.array(kinds), "severities": np.array([1 if k != "clean" else 0 for k in kinds])}
    return bench, reference


def test_the_comparison_writes_one_table_for_every_method(tmp_path, tiny_benchmark):
    from workflows.comparison import method_names, run_comparison

    bench, reference = tiny_benchmark
    names = method_names("padim,spectral")
    tables = run_comparison(names, bench, reference, tmp_path / "out")
    table = pd.read_csv(tmp_path / "out" / "methods.csv", index_col="method")
    assert list(table.index) == ["padim", "spectral"]
    assert table.loc["padim", "auroc"] == 1.0  # a bright square is easy for PaDiM
    assert np.isnan(table.loc["spectral", "dice"])  # image-level: no masks
    assert table.loc["padim", "n_images"] == 8 and table.loc["padim", "false_alarms_benchmark_clean"] >= 0
    assert list(tables["methods_auroc_per_kind"].index) == ["dropout", "lesion"]
    assert (tmp_path / "out" / "methods.md").read_text().count("**padim**") == 1
    assert (tmp_path / "out" / "methods_auroc_per_kind.png").stat().st_size > 10_000
    with pytest.raises(ValueError, match="unknown method"):
        method_names("padim,nope")


def test_a_slow_method_scores_the_small_subset_and_every_method_is_compared_there(tmp_path, tiny_benchmark,
                                                                                  monkeypatch):
    import core.baselines.scorer
    from core.baselines.spectral import LocalSpectralBaseline
    from workflows.comparison import run_comparison

    class Slow(LocalSpectralBaseline):
        name = "slow"
        max_images = 4

    # the comparison fits every baseline with core.baselines.scorer.fit_baseline
    monkeypatch.setattr(core.baselines.scorer, "factories",
                        lambda: {"slow": Slow, "spectral_local": LocalSpectralBaseline})
    bench, reference = tiny_benchmark
    tables = run_comparison(["spectral_local", "slow"], bench, reference, tmp_path / "out")
    # small_subset: one artifact image per kind and severity (lesion, dropout) and as many clean ones
    assert tables["methods"]["n_images"].to_dict() == {"spectral_local": 8, "slow": 4}
    subset = tables["methods_subset"]
    assert subset["n_images"].tolist() == [4, 4]
    # the same method on the same four images gives the same figures, whichever run scored them
    assert subset.loc["spectral_local", "auroc"] == pytest.approx(subset.loc["slow", "auroc"])
    assert subset.loc["spectral_local", "dice"] == pytest.approx(subset.loc["slow", "dice"])
    assert (tmp_path / "out" / "methods_subset.csv").is_file()
    report = (tmp_path / "out" / "methods.md").read_text()
    assert "On the small subset that slow scored (4 images" in report
    # the per-kind "best" is chosen among methods that scored every image
    assert "Best method per kind: dropout spectral_local, lesion spectral_local (slow left out" in report
    # integer columns print as integers, a method without pixel maps as a dash
    assert "| slow | 4 | " in report


def test_markdown_table_prints_integers_as_integers_and_missing_values_as_dashes():
    from core.tables import markdown_table

    frame = pd.DataFrame({"n": [216, 54], "dice": [0.0281, np.nan]}, index=pd.Index(["a", "b"], name="method"))
    assert markdown_table(frame).splitlines() == ["| method | n | dice |", "|---|---|---|",
                                                   "| a | 216 | 0.028 |", "| b | 54 | – |"]
