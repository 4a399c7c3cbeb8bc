"""Evaluation tables on hand-made variants whose metrics are known."""

import numpy as np
import pytest

from core.benchmark.evaluation import VariantOutput, breakdown_table, summary_table, write_plots, write_report


def toy_benchmark():
    """4 clean and 4 artifact 8x8 images; each artifact is a 2x2 square at a known place."""
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    gt = np.zeros((8, 8, 8), bool)
    for i, (r, c) in zip(range(4, 8), [(1, 1), (5, 5), (1, 5), (5, 1)], strict=True):
        gt[i, r : r + 2, c : c + 2] = True
    kinds = np.array(["clean"] * 4 + ["lesion", "lesion", "blur", "blur"])
    images = np.full((8, 8, 8), 0.5, np.float32)
    return labels, gt, kinds, images


def test_a_perfect_map_scores_one_and_a_blind_one_scores_chance():
    labels, gt, kinds, _ = toy_benchmark()
    perfect_maps = gt.astype(np.float32) * 5.0
    perfect = VariantOutput("perfect", perfect_maps, perfect_maps.max(axis=(1, 2)), 1.0, "oracle")
    blind_maps = np.zeros((8, 8, 8), np.float32)
    blind = VariantOutput("blind", blind_maps, np.zeros(8), 1.0, "constant")
    clean_test = {"perfect": np.array([0.0, 2.0, 0.5, 0.0]), "blind": np.zeros(4)}
    table = summary_table([perfect, blind], labels, gt, clean_test)
    assert table.loc["perfect", "auroc"] == 1.0 and table.loc["perfect", "f1_at_tau"] == 1.0
    assert table.loc["perfect", "dice"] == 1.0 and table.loc["perfect", "iou"] == 1.0
    assert table.loc["perfect", "pixel_auroc"] == 1.0
    assert table.loc["perfect", "false_alarms_test_clean"] == 0.25  # one of four fresh clean scores > tau
    assert table.loc["blind", "auroc"] == 0.5 and table.loc["blind", "dice"] == 0.0
    assert table.loc["blind", "recall_at_tau"] == 0.0 and table.loc["blind", "f1_at_tau"] == 0.0


def test_breakdown_per_kind_and_a_half_right_map():
    labels, gt, kinds, _ = toy_benchmark()
    # Finds the lesions exactly, misses the blurs (map 0 there); clean images score 1 (below lesions).
    maps = np.zeros((8, 8, 8), np.float32)
    maps[4:6] = gt[4:6] * 5.0
    scores = np.array([1, 1, 1, 1, 5, 5, 0, 0], float)
    half = VariantOutput("half", maps, scores, 2.0, "")
    auroc = breakdown_table([half], labels, gt, kinds, "auroc")
    dice_table = breakdown_table([half], labels, gt, kinds, "dice")
    assert auroc.loc["lesion", "half"] == 1.0 and auroc.loc["blur", "half"] == 0.0
    assert dice_table.loc["lesion", "half"] == 1.0 and dice_table.loc["blur", "half"] == 0.0
    summary = summary_table([half], labels, gt, None)
    assert summary.loc["half", "dice"] == pytest.approx(0.5) and summary.loc["half", "recall_at_tau"] == 0.5
    assert "false_alarms_test_clean" not in summary.columns


def test_report_and_plots_are_written(tmp_path):
    labels, gt, kinds, images = toy_benchmark()
    maps = gt.astype(np.float32) * 5.0
    out = VariantOutput("combined", maps, maps.max(axis=(1, 2)), 1.0, "")
    summary = summary_table([out], labels, gt, None)
    per_kind = breakdown_table([out], labels, gt, kinds, "auroc")
    per_kind.index.name = "kind"
    report = write_report(tmp_path, summary, per_kind, per_kind, per_kind, per_kind, {"command": "`test`"})
    text = report.read_text()
    assert "| variant | auroc |" in text and "| combined | 1.000 |" in text and "- command: `test`" in text
    write_plots(tmp_path, per_kind, images, gt, out, labels)
    for name in ("summary.csv", "per_kind_auroc.csv", "auroc_per_kind.png", "examples.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_the_evaluations_make_masks_by_the_one_mask_rule():
    from core.benchmark.explainer_evaluation import ExplainerOutput
    from core.masks import unsafe_mask

    maps = np.zeros((2, 64, 64), np.float32)
    maps[:, 10:30, 10:30] = 2.0  # a 400-pixel region above tau
    maps[:, 50, 50] = 2.0  # one stray pixel: below the smallest region kept
    out = VariantOutput("v", maps, np.array([2.0, 0.5]), tau=1.0, description="")
    expected = np.zeros((64, 64), bool)
    expected[10:30, 10:30] = True
    assert np.array_equal(out.masks[0], expected)  # the stray pixel is dropped, as in the dashboard
    assert not out.masks[1].any()  # an unflagged image has an empty mask
    assert np.array_equal(out.masks[0], unsafe_mask(maps[0], 1.0).astype(bool))
    explained = ExplainerOutput("x", maps, maps[:1], 0.0).masks(1.0)
    assert np.array_equal(explained[0], expected) and np.array_equal(explained[1], expected)


def test_the_evaluation_page_quotes_the_readmes_measured_time_not_a_guess(tmp_path):
    from ui.evaluation import readme_figure

    readme = tmp_path / "README.md"
    readme.write_text("| what | command | measured |\n|---|---|---|\n"
                      "| evaluation | `make evaluate` | 13 min 33 s wall; 4 min for the report |\n")
    assert readme_figure("make evaluate", readme) == "measured: 13 min 33 s wall"
    assert readme_figure("make bench", readme) == "see the README's Figures"
    # the project's own README names both commands the page quotes
    assert readme_figure("make evaluate").startswith("measured: ")
    assert readme_figure("python -m workflows.cli evaluate-realistic --baselines spectral_local").startswith("measured: ")
