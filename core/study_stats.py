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
from core.mrmc import MRMCError, empirical_auc

DEFAULT_LIKERT_LEVELS = 5


def likert_levels(question: dict) -> int:
    """A Likert question's number of levels (answers 1 to levels; 5 unless the question says otherwise)."""
    return int(question.get("levels", DEFAULT_LIKERT_LEVELS))


def answers_frame(rows: list[dict]) -> pd.DataFrame:
    """The answers table as a DataFrame with the columns above (empty frame for no rows)."""
    columns = ["case_id", "case", "truth", "reader", "arm", "session", "question", "value", "text", "seconds",
               "submitted_at"]
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
        levels = range(1, likert_levels(question) + 1) if question["kind"] == "likert" else (0, 1)
        row.update({f"n_{level}": int((values == level).sum()) for level in levels})
        out.append(row)
    return pd.DataFrame(out).set_index("question") if out else pd.DataFrame()


def rating_matrix(frame: pd.DataFrame, question: str) -> pd.DataFrame:
    """``(cases, readers)`` ratings of one question (NaN where a reader has no answer)."""
    subset = frame[frame["question"] == question]
    return subset.pivot_table(index="case_id", columns="reader", values="value", aggfunc="first").astype(float)


def agreement(frame: pd.DataFrame, question: str, levels: int = 5) -> dict[str, float]:
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
                                          labels=tuple(range(1, levels + 1))))
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
    agreement_ = f"Fleiss' kappa {kappa:.2f}" if np.isfinite(kappa) else "Fleiss' kappa n/a (needs 2 readers of the same images)"
    line = (f"{frame['reader'].nunique()} readers, {frame['case_id'].nunique()} images: accuracy "
            f"{pooled['accuracy']:.1%} (exact binomial p = {pooled['p_value']:.3g}), {agreement_}")
    return table, line


# -- tidy readings, protocols with known truth -----------------------------------------------------

READING_COLUMNS = ["case_id", "case", "truth", "reader", "arm", "session", "seconds", "submitted_at"]
POSITIVE_TRUTHS = ("synthetic", "artifact")  # the class an ROC analysis calls positive


def readings_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per reading (case x reader x arm) with one column per question: the study's tidy table.

    Likert and yes/no answers are numbers, choices their option, checklists a JSON list, text as typed.
    """
    if frame.empty:
        return pd.DataFrame(columns=READING_COLUMNS)
    answers = frame.assign(answer=frame["value"].astype(object).where(frame["value"].notna(), frame["text"]))
    keys = [c for c in READING_COLUMNS if c in answers]
    wide = answers.pivot_table(index=keys, columns="question", values="answer", aggfunc="first", dropna=False)
    wide = wide.dropna(how="all").reset_index()
    wide.columns.name = None
    return wide.sort_values(["reader", "session", "case_id"]).reset_index(drop=True)


def turing_frame(frame: pd.DataFrame, question: str = "origin", confidence: str | None = "confidence",
                 levels: int = 5) -> pd.DataFrame:
    """Readings of a visual Turing test: ``reader``, ``arm``, ``case_id``, ``truth``, ``answer`` (``real`` /
    ``synthetic``), ``confidence`` and ``rating``, a 1 to 2 x ``levels`` scale of how synthetic the
    reader thinks the image is (``real`` and certain = 1, ``synthetic`` and certain = 2 x levels) that
    ROC analyses use."""
    answers = frame[frame["question"] == question].rename(columns={"text": "answer"})
    out = answers[["reader", "arm", "case_id", "truth", "answer"]].copy()
    if confidence is not None and (frame["question"] == confidence).any():
        sure = frame[frame["question"] == confidence][["reader", "arm", "case_id", "value"]]
        out = out.merge(sure.rename(columns={"value": "confidence"}), on=["reader", "arm", "case_id"], how="left")
    else:
        out["confidence"] = np.nan
    c = out["confidence"].fillna((levels + 1) / 2)
    out["rating"] = np.where(out["answer"] == "synthetic", levels + c, levels + 1 - c)
    return out.dropna(subset=["truth", "answer"]).reset_index(drop=True)


def roc_frame(frame: pd.DataFrame, question: str) -> pd.DataFrame:
    """Readings as the MRMC input: ``reader``, ``treatment`` (the arm), ``case``, ``truth`` (1 for a
    synthetic or artifact image) and ``rating`` (the Likert answer of ``question``, or the combined
    rating of :func:`turing_frame` when ``question`` is the real/synthetic choice)."""
    if (frame.loc[frame["question"] == question, "text"].notna()).any():
        rated = turing_frame(frame, question)
    else:
        rated = frame[frame["question"] == question].rename(columns={"value": "rating"})
    rated = rated.dropna(subset=["truth", "rating"])
    return pd.DataFrame({"reader": rated["reader"].astype(str), "treatment": rated["arm"].astype(str),
                         "case": rated["case_id"], "truth": rated["truth"].isin(POSITIVE_TRUTHS).astype(int),
                         "rating": rated["rating"].astype(float)}).reset_index(drop=True)


def reader_aucs(roc: pd.DataFrame) -> pd.DataFrame:
    """Empirical (trapezoidal) AUC per reader and arm, with the numbers of positive and negative cases."""
    rows = []
    for (reader, arm), group in roc.groupby(["reader", "treatment"]):
        try:
            auc = empirical_auc(group["truth"].to_numpy(), group["rating"].to_numpy())
        except MRMCError:
            auc = np.nan
        rows.append({"reader": reader, "arm": arm, "auc": auc, "positives": int(group["truth"].sum()),
                     "negatives": int((1 - group["truth"]).sum())})
    return pd.DataFrame(rows, columns=["reader", "arm", "auc", "positives", "negatives"])


def mask_accuracy(masks: dict[tuple[int, str, str], np.ndarray], truth_masks: dict[int, np.ndarray],
                  truths: dict[int, str | None]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Readers' masks against the cases' ground-truth masks.

    Args:
        masks: (case id, reader, arm) -> the reader's boolean mask of the case (empty if they drew none).
        truth_masks: case id -> ground-truth mask of the same shape (cases with an artifact).
        truths: case id -> ``artifact`` / ``clean`` / ... (a clean case has no truth mask).

    Returns:
        Per reading: ``dice``, ``hit`` (the mask touches the truth) on cases with a truth mask, and
        ``false_mark`` (anything drawn) on clean cases; and per reader and arm: artifact cases,
        mean Dice, hit rate, clean cases and false-mark rate.
    """
    rows = []
    for (case_id, reader, arm), mask in sorted(masks.items()):
        mask = np.asarray(mask, bool)
        row = {"case_id": case_id, "reader": reader, "arm": arm, "dice": np.nan, "hit": np.nan, "false_mark": np.nan}
        if case_id in truth_masks:
            truth = np.asarray(truth_masks[case_id], bool)
            row.update(dice=float(dice(mask, truth)), hit=float(bool((mask & truth).any())))
        elif truths.get(case_id) == "clean":
            row["false_mark"] = float(mask.any())
        rows.append(row)
    per_reading = pd.DataFrame(rows, columns=["case_id", "reader", "arm", "dice", "hit", "false_mark"])
    grouped = per_reading.groupby(["reader", "arm"])
    per_reader = pd.DataFrame({
        "artifact_cases": grouped["dice"].count(), "mean_dice": grouped["dice"].mean(),
        "hit_rate": grouped["hit"].mean(), "clean_cases": grouped["false_mark"].count(),
        "false_mark_rate": grouped["false_mark"].mean()}).reset_index()
    return per_reading, per_reader


def checklist_counts(frame: pd.DataFrame, question: str, options: list[str]) -> pd.DataFrame:
    """How often each checklist item was ticked: readings ticking it, and their share of the readings
    that answered the checklist, overall and by case truth."""
    import json

    answered = frame[(frame["question"] == question) & frame["text"].notna()]
    ticked = [set(json.loads(text)) for text in answered["text"]]
    rows = []
    for option in options:
        hits = np.array([option in t for t in ticked], bool)
        row = {"item": option, "readings": int(hits.sum()), "share": float(hits.mean()) if len(hits) else np.nan}
        for truth in sorted(answered["truth"].dropna().unique()):
            of_truth = (answered["truth"] == truth).to_numpy()
            row[f"share_{truth}"] = float(hits[of_truth].mean()) if of_truth.any() else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def arm_summary(frame: pd.DataFrame, questions: list[str]) -> pd.DataFrame:
    """Per arm: readers, readings, median seconds per reading and the mean of each numeric question."""
    readings = frame.drop_duplicates(["case_id", "reader", "arm"])
    out = readings.groupby("arm").agg(readers=("reader", "nunique"), readings=("case_id", "size"),
                                      median_seconds=("seconds", "median"))
    for question in questions:
        subset = frame[frame["question"] == question]
        out[f"mean_{question}"] = subset.groupby("arm")["value"].mean()
    return out
