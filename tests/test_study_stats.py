"""Reader-study statistics on hand-made answer tables with known answers."""

import numpy as np
import pytest

from core.study_stats import (
    agreement,
    answers_frame,
    mask_dice_against,
    mask_dice_between_readers,
    mean_with_ci,
    question_summary,
    reading_time,
)

QUESTIONS = [
    {"key": "realism", "text": "Realism", "kind": "likert"},
    {"key": "artifact_present", "text": "Artifact?", "kind": "yes_no"},
    {"key": "comment", "text": "Comment", "kind": "text"},
]


def _rows(ratings: dict[str, list[int]], question: str = "realism", arm: str = "ai", seconds: float = 10.0):
    return [{"case_id": case, "case": f"c{case}", "reader": reader, "arm": arm, "question": question,
             "value": value, "text": None, "seconds": seconds, "submitted_at": None}
            for reader, values in ratings.items() for case, value in enumerate(values)]


def test_question_summary_counts_levels_and_quartiles():
    frame = answers_frame(_rows({"ann": [1, 2, 3, 4, 5]}) + _rows({"ann": [1, 0, 1, 1, 0]}, "artifact_present"))
    summary = question_summary(frame, QUESTIONS)
    assert list(summary.index) == ["realism", "artifact_present"]  # the text question has no statistics
    realism = summary.loc["realism"]
    assert (realism["answers"], realism["mean"], realism["median"], realism["q25"], realism["q75"]) == (5, 3, 3, 2, 4)
    assert [realism[f"n_{k}"] for k in range(1, 6)] == [1, 1, 1, 1, 1]
    assert summary.loc["artifact_present", "mean"] == pytest.approx(0.6)


def test_identical_readers_agree_perfectly_and_reversed_readers_disagree():
    same = agreement(answers_frame(_rows({"ann": [1, 2, 3, 4, 5, 3], "bob": [1, 2, 3, 4, 5, 3]})), "realism")
    assert same["kappa_quadratic"] == pytest.approx(1.0)
    assert same["krippendorff_alpha_ordinal"] == pytest.approx(1.0)
    assert same["icc_2_1"] == pytest.approx(1.0)
    assert (same["readers"], same["cases_rated_by_all"]) == (2, 6)
    reversed_ = agreement(answers_frame(_rows({"ann": [1, 2, 3, 4, 5], "bob": [5, 4, 3, 2, 1]})), "realism")
    assert reversed_["kappa_quadratic"] == pytest.approx(-1.0)  # sklearn's cohen_kappa_score gives -1 too
    assert reversed_["krippendorff_alpha_ordinal"] < 0 and reversed_["icc_2_1"] < 0
    alone = agreement(answers_frame(_rows({"ann": [1, 2, 3]})), "realism")
    assert np.isnan(alone["kappa_quadratic"]) and alone["readers"] == 1


def test_mean_usefulness_with_a_bootstrap_interval():
    frame = answers_frame(_rows({"ann": [4, 5, 4, 5], "bob": [5, 5, 4, 4]}, "heatmap_useful")
                          + _rows({"cat": [1, 1]}, "heatmap_useful", arm="unaided"))
    ai = mean_with_ci(frame, "heatmap_useful", arm="ai")
    assert ai["n"] == 8 and ai["mean"] == pytest.approx(4.5) and 4.0 <= ai["low"] < 4.5 < ai["high"] <= 5.0
    assert mean_with_ci(frame, "heatmap_useful")["mean"] == pytest.approx(38 / 10)


def test_mask_dice_between_readers_and_against_a_reference():
    a = np.zeros((4, 4), bool)
    a[:2, :2] = True  # 4 pixels
    b = np.zeros((4, 4), bool)
    b[:2, :1] = True  # 2 pixels, inside a
    masks = {(1, "ann"): a, (1, "bob"): b, (2, "ann"): np.zeros((4, 4), bool), (2, "bob"): np.zeros((4, 4), bool)}
    pairs = mask_dice_between_readers(masks)
    assert pairs["dice"].tolist() == pytest.approx([2 * 2 / 6, 1.0])  # two empty masks agree
    against = mask_dice_against(masks, {1: a})
    assert against.set_index("reader")["dice"].to_dict() == pytest.approx({"ann": 1.0, "bob": 2 * 2 / 6})


def test_reading_time_counts_each_read_once():
    frame = answers_frame(_rows({"ann": [1, 2]}, seconds=30.0) + _rows({"ann": [1, 1]}, "artifact_present",
                                                                       seconds=30.0))
    times = reading_time(frame)
    assert times.loc["ann"].tolist() == [2, 30.0, 60.0]


def test_fleiss_kappa_of_the_textbook_example():
    from core.study_stats import fleiss_kappa

    # Fleiss (1971) as reproduced on Wikipedia: 10 subjects, 14 raters, 5 categories -> kappa 0.210.
    counts = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
              [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    assert fleiss_kappa(counts) == pytest.approx(0.2099, abs=1e-4)
    assert fleiss_kappa([[3, 0], [0, 3], [3, 0]]) == pytest.approx(1.0)


def test_visual_turing_test_accuracy_sensitivity_and_binomial_p():
    import pandas as pd
    from scipy.stats import binomtest

    from core.study_stats import visual_turing

    truth = ["real", "real", "synthetic", "synthetic"] * 5  # 20 images
    ann = truth[:]  # always right
    bob = ["real"] * 20  # always says real: specificity 1, sensitivity 0
    rows = [{"reader": r, "case_id": i, "truth": t, "answer": a}
            for r, answers in (("ann", ann), ("bob", bob)) for i, (t, a) in enumerate(zip(truth, answers))]
    table, line = visual_turing(pd.DataFrame(rows))
    assert table.loc["ann", "accuracy"] == 1.0 and table.loc["ann", "p_value"] == pytest.approx(2 * 0.5**20)
    assert (table.loc["bob", "sensitivity"], table.loc["bob", "specificity"], table.loc["bob", "accuracy"]) == (0, 1, 0.5)
    assert table.loc["pooled", "accuracy"] == 0.75
    assert table.loc["pooled", "p_value"] == pytest.approx(binomtest(30, 40, 0.5).pvalue)
    # Agreement by hand: real images [2, 0] (P_i = 1), synthetic ones split [1, 1] (P_i = 0): P_bar 0.5;
    # p_real = 30/40, p_synthetic = 10/40: P_e = 0.625; kappa = (0.5 - 0.625) / 0.375 = -1/3.
    assert line == "2 readers, 20 images: accuracy 75.0% (exact binomial p = 0.00222), Fleiss' kappa -0.33"
