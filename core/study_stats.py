"""Reader-study results from the answers table: per-question statistics, agreement, mask Dice, time.

Input is the tidy table the study exports (``db.repository.answers_table``): one row per answer
with ``case_id``, ``reader``, ``arm``, ``question``, ``value`` (Likert 1-5 or yes/no 0/1),
``seconds``. Everything here is a pure function of that table (and of masks as arrays), so the
Results page, the export and the tests compute the same numbers.

Agreement between readers on one Likert question uses only the cases every compared reader
answered: Cohen's kappa with quadratic weights for each pair of readers (averaged), Krippendorff's
alpha (ordinal, all readers, missing answers allowed) and ICC(2,1) on the cases rated by all.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from core.metrics import UndefinedMetricError, bootstrap_ci, cohen_kappa, dice, icc, krippendorff_alpha

LIKERT_LEVELS = (1, 2, 3, 4, 5)


def answers_frame(rows: list[dict]) -> pd.DataFrame:
    """The answers table as a DataFrame with the columns above (empty frame for no rows)."""
    columns = ["case_id", "case", "reader", "arm", "question", "value", "text", "seconds", "submitted_at"]
    return pd.DataFrame(rows, columns=columns)


def question_summary(frame: pd.DataFrame, questions: list[dict]) -> pd.DataFrame:
    """Per Likert / yes-no question: answers, mean, median, IQR and the count of each level."""
    out = []
    for question in questions:
        if question["kind"] not in ("likert", "yes_no"):
            continue
        values = frame.loc[frame["question"] == question["key"], "value"].dropna().astype(float)
        row = {"question": question["key"], "text": question["text"], "answers": int(len(values))}
        if len(values):
            q25, q75 = np.percentile(values, [25, 75])
            row.update(mean=float(values.mean()), median=float(values.median()), q25=float(q25), q75=float(q75))
        levels = LIKERT_LEVELS if question["kind"] == "likert" else (0, 1)
        row.update({f"n_{level}": int((values == level).sum()) for level in levels})
        out.append(row)
    return pd.DataFrame(out).set_index("question") if out else pd.DataFrame()


def rating_matrix(frame: pd.DataFrame, question: str) -> pd.DataFrame:
    """``(cases, readers)`` ratings of one question (NaN where a reader has no answer)."""
    subset = frame[frame["question"] == question]
    return subset.pivot_table(index="case_id", columns="reader", values="value", aggfunc="first").astype(float)


def agreement(frame: pd.DataFrame, question: str) -> dict[str, float]:
    """Inter-reader agreement on one Likert question (see the module docstring).

    Returns:
        ``kappa_quadratic`` (mean over reader pairs), ``krippendorff_alpha_ordinal``, ``icc_2_1``,
        ``readers`` and ``cases_rated_by_all``; a statistic the data cannot define is NaN.
    """
    matrix = rating_matrix(frame, question)
    readers = list(matrix.columns)
    result = {"readers": float(len(readers)), "kappa_quadratic": np.nan, "krippendorff_alpha_ordinal": np.nan,
              "icc_2_1": np.nan}
    complete = matrix.dropna()
    result["cases_rated_by_all"] = float(len(complete))
    if len(readers) < 2:
        return result
    kappas = []
    for a, b in itertools.combinations(readers, 2):
        both = matrix[[a, b]].dropna()
        if len(both) >= 2:
            try:
                kappas.append(cohen_kappa(both[a].to_numpy(), both[b].to_numpy(), weights="quadratic",
                                          labels=LIKERT_LEVELS))
            except UndefinedMetricError:
                pass
    if kappas:
        result["kappa_quadratic"] = float(np.mean(kappas))
    try:
        result["krippendorff_alpha_ordinal"] = krippendorff_alpha(matrix.T.to_numpy(), "ordinal")
    except UndefinedMetricError:
        pass
    if len(complete) >= 2:
        try:
            result["icc_2_1"] = icc(complete.to_numpy(), "2,1")
        except UndefinedMetricError:
            pass
    return result


def mean_with_ci(frame: pd.DataFrame, question: str, *, arm: str | None = None, confidence: float = 0.95,
                 seed: int = 0) -> dict[str, float]:
    """Mean rating of a question (optionally one arm) with a percentile-bootstrap confidence interval.

    The seed's headline figure ("mean heatmap usefulness", target 4.5 / 5) is
    ``mean_with_ci(frame, "heatmap_useful")``.
    """
    subset = frame[frame["question"] == question]
    if arm is not None:
        subset = subset[subset["arm"] == arm]
    values = subset["value"].dropna().astype(float).to_numpy()
    if len(values) < 2:
        return {"n": float(len(values)), "mean": float(values.mean()) if len(values) else np.nan,
                "low": np.nan, "high": np.nan}
    ci = bootstrap_ci(values, np.mean, confidence=confidence, seed=seed)
    return {"n": float(len(values)), "mean": ci.estimate, "low": ci.low, "high": ci.high}


def mask_dice_between_readers(masks: dict[tuple[int, str], np.ndarray]) -> pd.DataFrame:
    """Dice of every pair of readers' masks on the same case.

    Args:
        masks: (case id, reader) -> boolean mask of the whole case (all slices stacked).

    Returns:
        One row per (case, reader pair) with ``dice`` (two empty masks agree: 1).
    """
    by_case: dict[int, dict[str, np.ndarray]] = {}
    for (case_id, reader), mask in masks.items():
        by_case.setdefault(case_id, {})[reader] = np.asarray(mask, dtype=bool)
    rows = []
    for case_id, readers in sorted(by_case.items()):
        for a, b in itertools.combinations(sorted(readers), 2):
            rows.append({"case_id": case_id, "reader_a": a, "reader_b": b,
                         "dice": float(dice(readers[a], readers[b]))})
    return pd.DataFrame(rows, columns=["case_id", "reader_a", "reader_b", "dice"])


def mask_dice_against(masks: dict[tuple[int, str], np.ndarray], reference: dict[int, np.ndarray]) -> pd.DataFrame:
    """Dice of each reader's mask against a reference mask of the case (SAFEGEN's, or the simulator's)."""
    rows = [{"case_id": case_id, "reader": reader, "dice": float(dice(np.asarray(mask, bool),
                                                                      np.asarray(reference[case_id], bool)))}
            for (case_id, reader), mask in sorted(masks.items()) if case_id in reference]
    return pd.DataFrame(rows, columns=["case_id", "reader", "dice"])


def reading_time(frame: pd.DataFrame) -> pd.DataFrame:
    """Per reader: cases read, median and total seconds per case."""
    per_read = frame.drop_duplicates(["case_id", "reader"])[["reader", "seconds"]]
    grouped = per_read.groupby("reader")["seconds"]
    return pd.DataFrame({"cases": grouped.size(), "median_seconds": grouped.median(), "total_seconds": grouped.sum()})


# -- visual Turing test ("real or synthetic?") ---------------------------------------------------


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' kappa of ``(subjects, categories)`` counts, every subject rated by the same number of raters.

    ``kappa = (P_bar - P_e) / (1 - P_e)`` with ``P_i = (sum_j n_ij^2 - n) / (n (n - 1))``, ``P_bar``
    their mean and ``P_e = sum_j p_j^2`` (Fleiss 1971). 1 is perfect agreement, 0 chance.

    Raises:
        UndefinedMetricError: fewer than two raters per subject, unequal rater counts, or chance
            agreement of 1 (every rating in one category).
    """
    counts = np.asarray(counts, dtype=np.float64)
    per_subject = counts.sum(axis=1)
    if counts.ndim != 2 or len(counts) == 0 or not np.allclose(per_subject, per_subject[0]) or per_subject[0] < 2:
        raise UndefinedMetricError("Fleiss' kappa needs the same number (>= 2) of raters for every subject")
    n = per_subject[0]
    p_i = ((counts**2).sum(axis=1) - n) / (n * (n - 1))
    p_j = counts.sum(axis=0) / counts.sum()
    p_e = float((p_j**2).sum())
    if np.isclose(p_e, 1.0):
        raise UndefinedMetricError("Fleiss' kappa is undefined when every rating falls in one category")
    return float((p_i.mean() - p_e) / (1.0 - p_e))


def visual_turing(frame: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Readers telling real from synthetic images.

    Args:
        frame: one row per reading with ``reader``, ``case_id``, ``truth`` and ``answer``
            (each ``"real"`` or ``"synthetic"``).

    Returns:
        A table per reader and ``pooled``: readings, accuracy, sensitivity (synthetic called
        synthetic), specificity (real called real) and the two-sided exact binomial p-value of the
        accuracy against chance (0.5); and a one-line summary with Fleiss' kappa between readers on
        the images every reader saw, e.g. "10 readers, 300 images: accuracy 59.0 % (exact binomial
        p = ...), Fleiss' kappa 0.11".
    """
    from scipy.stats import binomtest

    def stats(rows: pd.DataFrame) -> dict:
        correct = rows["truth"] == rows["answer"]
        synthetic, real = rows["truth"] == "synthetic", rows["truth"] == "real"
        k, n = int(correct.sum()), int(len(rows))
        return {
            "readings": n,
            "accuracy": k / n if n else np.nan,
            "sensitivity": float(correct[synthetic].mean()) if synthetic.any() else np.nan,
            "specificity": float(correct[real].mean()) if real.any() else np.nan,
            "p_value": binomtest(k, n, 0.5).pvalue if n else np.nan,
        }

    table = pd.DataFrame({reader: stats(rows) for reader, rows in frame.groupby("reader")}).T
    table.loc["pooled"] = stats(frame)
    answers = frame.pivot_table(index="case_id", columns="reader", values="answer", aggfunc="first").dropna()
    counts = np.stack([(answers == "real").sum(axis=1), (answers == "synthetic").sum(axis=1)], axis=1)
    try:
        kappa = fleiss_kappa(counts)
    except UndefinedMetricError:
        kappa = np.nan
    pooled = table.loc["pooled"]
    line = (f"{frame['reader'].nunique()} readers, {frame['case_id'].nunique()} images: accuracy "
            f"{pooled['accuracy']:.1%} (exact binomial p = {pooled['p_value']:.3g}), Fleiss' kappa {kappa:.2f}")
    return table, line
