"""Multi-reader multi-case (MRMC) ROC analysis: Obuchowski-Rockette with Hillis's improvements.

In a reader study every reader rates every case under every treatment (e.g. real vs synthetic
images, or two display modes). Each reader's AUC under each treatment is an estimate, and these
estimates are correlated because the same cases were read. The Obuchowski-Rockette (OR) model
treats the ``treatment x reader`` AUC table as a two-way ANOVA whose errors are correlated:

* ``Var(Error)``: variance of one AUC over case samples (mean of the covariance matrix diagonal);
* ``Cov1``: same reader, different treatments; ``Cov2``: same treatment, different readers;
  ``Cov3``: different treatment and reader (each the mean over such pairs).

The covariance matrix of the AUCs across cases comes from the case jackknife (the default) or
from DeLong's structural components. Three analyses follow (all as in OR-DBM MRMC 2.5):

* **RRRC** (random readers, random cases; Hillis 2007): ``F = MS(T) / [MS(T*R) +
  r max(Cov2 - Cov3, 0)]`` with Hillis's denominator degrees of freedom ``ddf_H``;
* **FRRC** (fixed readers, random cases): a chi-square test and z intervals, plus one difference
  per reader;
* **RRFC** (random readers, fixed cases): the conventional treatment x reader ANOVA of the AUCs.

Each gives the global test, every pairwise treatment difference (first - second, in treatment
order) and single-treatment confidence intervals (Hillis 2007 ``ddf_H_single``, Hillis 2014).

References: Obuchowski & Rockette 1995, Commun Stat Simul Comput 24:285-308; Hillis, Obuchowski,
Schartz & Berbaum 2005, Stat Med 24:1579-1607; Hillis 2007, Stat Med 26:596-619; Hillis 2014,
Stat Med 33:330-360; DeLong, DeLong & Clarke-Pearson 1988, Biometrics 44:837-845.

``tests/test_mrmc.py`` reproduces OR-DBM MRMC 2.5 (jackknife) and MRMCaov 0.3.0 (jackknife and
DeLong) on the Van Dyke et al. (1993) data to every printed digit.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats

from core.jsonable import json_safe

COLUMNS = ("reader", "treatment", "case", "truth", "rating")
COVARIANCE_METHODS = {"jackknife": "jackknife", "delong": "DeLong"}  # name -> how reports spell it
ANALYSES = {"RRRC": "random readers and cases", "FRRC": "fixed readers, random cases",
            "RRFC": "random readers, fixed cases"}


class MRMCError(ValueError):
    """The reader-study data cannot be analysed; the message says why."""


def _psi(positives: np.ndarray, negatives: np.ndarray) -> np.ndarray:
    """Mann-Whitney kernel over the last axis: 1 if positive > negative, 1/2 on a tie, else 0."""
    diff = positives[..., :, None] - negatives[..., None, :]
    return (diff > 0) + 0.5 * (diff == 0)


def empirical_auc(truth: ArrayLike, ratings: ArrayLike) -> float:
    """Trapezoidal (Mann-Whitney) AUC; ties between a positive and a negative count 1/2.

    Args:
        truth: 0/1 per case (1 = positive / abnormal).
        ratings: one rating per case, larger = more likely positive.

    Raises:
        MRMCError: a class is missing, or the inputs differ in length.
    """
    truth_ = np.asarray(truth).astype(bool)
    ratings_ = np.asarray(ratings, dtype=float)
    if truth_.shape != ratings_.shape or truth_.ndim != 1:
        raise MRMCError(f"truth and ratings must be 1-D of equal length, got {truth_.shape} and {ratings_.shape}")
    if truth_.all() or not truth_.any():
        raise MRMCError("the AUC needs at least one positive and one negative case")
    return float(_psi(ratings_[truth_], ratings_[~truth_]).mean())


def read_lrc(path: str | Path) -> pd.DataFrame:
    """Read an LRC (Metz LABMRMC / OR-DBM MRMC) file into a tidy frame.

    Layout: a description line; per reader a name line, (first reader only) a line of quoted
    treatment names and a line of ``L``/``S`` (larger / smaller rating = more likely abnormal),
    one line per normal case (one rating per treatment, then an optional case label), ``*``, one
    line per abnormal case, ``*``; ``#`` ends the file. ``S`` ratings are negated.

    Returns:
        Columns ``reader``, ``treatment`` (strings), ``case`` (the label, or ``N<k>``/``A<k>``),
        ``truth`` (0 normal, 1 abnormal) and ``rating`` (float).

    Raises:
        MRMCError: the file does not follow the layout (the message gives the line number).
    """
    lines = Path(path).read_text().splitlines()
    treatments: list[str] = []
    signs: list[float] = []
    rows: list[tuple[str, str, str, int, float]] = []
    reader: str | None = None
    truth, count = 0, 0
    for number, line in enumerate(lines[1:], start=2):
        tokens = line.split()
        if not tokens:
            continue
        if tokens[0] == "#":
            break
        if tokens == ["*"]:
            if reader is None:
                raise MRMCError(f"line {number}: '*' before any reader name")
            reader, truth, count = (reader, 1, 0) if truth == 0 else (None, 0, 0)
            continue
        if reader is None:
            reader = line.strip().strip('"')
            continue
        if all(token.startswith('"') for token in tokens):
            treatments = [token.strip('"') for token in tokens]
            continue
        if all(token.upper() in ("L", "S") for token in tokens):
            signs = [-1.0 if token.upper() == "S" else 1.0 for token in tokens]
            continue
        width = len(treatments) or len(signs)
        if not width or (treatments and signs and len(signs) != width):
            raise MRMCError(f"line {number}: ratings before a line of quoted treatment names (or it disagrees "
                            "with the L/S line)")
        try:
            values = [float(token) for token in tokens[:width]]
        except ValueError:
            values = []
        if len(values) < width:
            raise MRMCError(f"line {number}: expected {width} ratings, got {line.strip()!r}")
        count += 1
        label = " ".join(tokens[width:]) or f"{'NA'[truth]}{count}"
        names = treatments or [str(i) for i in range(width)]
        for treatment, value, sign in zip(names, values, signs or [1.0] * width, strict=True):
            rows.append((reader, treatment, label, truth, sign * value))
    if not rows:
        raise MRMCError(f"{path}: no ratings found")
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _order(values: pd.Series) -> list[str]:
    """Unique labels, numbers in numeric order first, then the rest alphabetically."""
    def key(label: str) -> tuple[int, float, str]:
        try:
            return (0, float(label), label)
        except ValueError:
            return (1, 0.0, label)
    return sorted(pd.unique(values), key=key)


def _design(frame: pd.DataFrame, complete_cases_only: bool) -> tuple[list[str], list[str], np.ndarray, np.ndarray, int]:
    """Validate the study; return treatments, readers, truth (cases,), ratings (t, r, cases), cases dropped."""
    missing = [column for column in COLUMNS if column not in frame.columns]
    if missing:
        raise MRMCError(f"the study table lacks the column(s) {missing}; it needs {list(COLUMNS)}")
    data = frame[list(COLUMNS)].copy()
    data["reader"] = data["reader"].astype(str)
    data["treatment"] = data["treatment"].astype(str)
    data["rating"] = pd.to_numeric(data["rating"], errors="coerce")
    bad = ~np.isfinite(data["rating"].to_numpy(dtype=float))
    if bad.any():
        raise MRMCError(f"{int(bad.sum())} rating(s) are missing, infinite or not numbers")
    if not data["truth"].isin([0, 1]).all():
        raise MRMCError("truth must be 0 (negative) or 1 (positive) on every row")
    mixed = data.groupby("case")["truth"].nunique()
    if (mixed > 1).any():
        raise MRMCError(f"truth differs between rows of the same case: {list(mixed[mixed > 1].index[:5])}")
    if data.duplicated(["reader", "treatment", "case"]).any():
        raise MRMCError(f"{int(data.duplicated(['reader', 'treatment', 'case']).sum())} duplicate "
                        "(reader, treatment, case) rows")
    treatments, readers = _order(data["treatment"]), _order(data["reader"])
    if len(treatments) < 2 or len(readers) < 2:
        raise MRMCError(f"needs at least 2 treatments and 2 readers, got {len(treatments)} and {len(readers)}")
    per_case = data.groupby("case").size()
    cells = len(treatments) * len(readers)
    dropped = 0
    if (per_case < cells).any():
        gap = cells * len(per_case) - len(data)
        incomplete = per_case.index[per_case < cells]
        if not complete_cases_only:
            raise MRMCError(f"the design is not fully crossed: {gap} of {cells * len(per_case)} (reader, treatment, "
                            f"case) cells are missing, in {len(incomplete)} case(s); every reader must rate every "
                            "case under every treatment (complete_cases_only=True drops those cases)")
        data, dropped = data[~data["case"].isin(incomplete)], len(incomplete)
    truth = data.groupby("case")["truth"].first().astype(int)
    if min((truth == 1).sum(), (truth == 0).sum()) < 2:
        raise MRMCError(f"needs at least 2 positive and 2 negative cases, got {(truth == 1).sum()} positive and "
                        f"{(truth == 0).sum()} negative" + (f" after dropping {dropped} case(s)" if dropped else ""))
    wide = data.pivot(index=["treatment", "reader"], columns="case", values="rating")
    wide = wide.reindex(pd.MultiIndex.from_product([treatments, readers]))[truth.index]
    ratings = wide.to_numpy(dtype=float).reshape(len(treatments), len(readers), len(truth))
    return treatments, readers, truth.to_numpy(), ratings, dropped


def auc_covariance(truth: np.ndarray, ratings: np.ndarray, method: str = "jackknife") -> tuple[np.ndarray, np.ndarray]:
    """AUCs and their covariance matrix across cases.

    Args:
        truth: 0/1 per case, shape ``(cases,)``.
        ratings: shape ``(treatments, readers, cases)``.
        method: ``"jackknife"`` (leave one case out; ``(n-1)/n`` times the sum of products of the
            deviations, n = all cases) or ``"delong"`` (``S10/m + S01/n`` from placement values).

    Returns:
        ``aucs`` of shape ``(t, r)`` and the covariance of shape ``(t*r, t*r)``, treatment-major.
    """
    positive = truth.astype(bool)
    psi = _psi(ratings[..., positive], ratings[..., ~positive])      # (t, r, m, n)
    v10, v01 = psi.mean(axis=3), psi.mean(axis=2)                    # placement values
    aucs = v10.mean(axis=2)
    t, r, m = v10.shape
    n = v01.shape[2]
    if method == "jackknife":
        held_out = np.concatenate([(m * aucs[..., None] - v10) / (m - 1), (n * aucs[..., None] - v01) / (n - 1)],
                                  axis=2).reshape(t * r, m + n)
        deviations = held_out - held_out.mean(axis=1, keepdims=True)
        return aucs, (m + n - 1) / (m + n) * deviations @ deviations.T
    if method == "delong":
        return aucs, np.cov(v10.reshape(t * r, m)) / m + np.cov(v01.reshape(t * r, n)) / n
    raise MRMCError(f"unknown covariance method {method!r}; use one of {list(COVARIANCE_METHODS)}")


@dataclass(frozen=True)
class Analysis:
    """One of RRRC / FRRC / RRFC: global test, pairwise differences, single-treatment intervals."""

    name: str
    statistic_name: str          # "F" or "X2"
    statistic: float
    df1: float
    df2: float                   # inf for the chi-square test
    p_value: float
    error_term: float            # the denominator of the statistic
    differences: pd.DataFrame    # comparison, estimate, stderr, df, statistic, p_value, ci_low, ci_high
    single_treatment: pd.DataFrame  # treatment, auc, stderr, df, ci_low, ci_high
    reader_differences: pd.DataFrame | None = None  # FRRC only: one difference per reader


@dataclass(frozen=True)
class ORAnalysis:
    """Everything :func:`obuchowski_rockette` computes (mean squares and components as in OR-DBM)."""

    covariance_method: str
    alpha: float
    treatments: tuple[str, ...]
    readers: tuple[str, ...]
    n_cases: int
    n_positive: int
    cases_dropped: int
    aucs: pd.DataFrame            # index reader, one column per treatment
    covariance: np.ndarray        # (t*r, t*r), treatment-major
    anova: pd.DataFrame           # index source T / R / T*R: ss, df, ms
    components: dict[str, float]  # Var(R), Var(T*R), Cov1, Cov2, Cov3, Var(Error)
    per_treatment: pd.DataFrame   # index treatment: auc, ms_r, var_error, cov2
    per_reader: pd.DataFrame      # index reader: var_error, cov1
    analyses: dict[str, Analysis]

    @property
    def treatment_means(self) -> pd.Series:
        return self.per_treatment["auc"]

    def to_frames(self) -> dict[str, pd.DataFrame]:
        """Tidy tables for a results page: aucs, anova, variance_components, tests, differences,
        single_treatment, reader_differences (the last three with an ``analysis`` column)."""
        components = pd.DataFrame({"component": list(self.components), "estimate": list(self.components.values())})
        components["correlation"] = [self.components[c] / self.components["Var(Error)"]
                                     if c.startswith("Cov") else np.nan for c in self.components]
        tests = pd.DataFrame([{"analysis": a.name, "description": ANALYSES[a.name], "statistic_name": a.statistic_name,
                               "statistic": a.statistic, "df1": a.df1, "df2": a.df2, "p_value": a.p_value,
                               "error_term": a.error_term} for a in self.analyses.values()])

        def stack(attribute: str) -> pd.DataFrame:
            parts = [getattr(a, attribute).assign(analysis=a.name) for a in self.analyses.values()
                     if getattr(a, attribute) is not None]
            table = pd.concat(parts, ignore_index=True)
            return table[["analysis", *[c for c in table.columns if c != "analysis"]]]

        return {"aucs": self.aucs.reset_index(), "anova": self.anova.reset_index(),
                "variance_components": components, "tests": tests, "differences": stack("differences"),
                "single_treatment": stack("single_treatment"), "reader_differences": stack("reader_differences")}

    def to_dict(self) -> dict:
        """JSON-serialisable export: the settings and every table of :meth:`to_frames` as records
        (non-finite numbers, e.g. the infinite df of a z test, become ``None``)."""
        tables = {name: json_safe(table.to_dict("records")) for name, table in self.to_frames().items()}
        return {"covariance_method": self.covariance_method, "alpha": self.alpha,
                "treatments": list(self.treatments), "readers": list(self.readers), "n_cases": self.n_cases,
                "n_positive": self.n_positive, "cases_dropped": self.cases_dropped, **tables}

    def summary_line(self, analysis: str = "RRRC") -> str:
        """One sentence for a report, e.g. ``5 readers, 114 cases (45 positive): AUC 0.897 vs 0.941, ...``."""
        if analysis not in self.analyses:
            raise MRMCError(f"unknown analysis {analysis!r}; use one of {list(self.analyses)}")
        result = self.analyses[analysis]
        means = " vs ".join(f"{value:.3f}" for value in self.treatment_means)
        text = f"{len(self.readers)} readers, {self.n_cases} cases ({self.n_positive} positive): AUC {means}"
        if len(self.treatments) == 2:
            row = result.differences.iloc[0]
            text += (f", difference {row.estimate:.3f} ({100 * (1 - self.alpha):g}% CI {row.ci_low:.3f} to "
                     f"{row.ci_high:.3f})")
        if result.statistic_name == "F":
            text += f", F({result.df1:g}, {result.df2:.3g}) = {result.statistic:.2f}"
        else:
            text += f", X2({result.df1:g}) = {result.statistic:.2f}"
        p = "p < 0.001" if result.p_value < 0.001 else f"p = {result.p_value:.3f}"
        dropped = f"; {self.cases_dropped} incomplete case(s) dropped" if self.cases_dropped else ""
        method = COVARIANCE_METHODS[self.covariance_method]
        return f"{text}, {p} ({ANALYSES[analysis]}; Obuchowski-Rockette-Hillis, {method}{dropped})."


def _comparisons(names: list[str], estimates: np.ndarray, stderr: np.ndarray, df: np.ndarray | float,
                 alpha: float) -> pd.DataFrame:
    """Estimate, stderr, df, t (z where df is inf), two-sided p and CI for each row."""
    df = np.broadcast_to(np.asarray(df, dtype=float), np.shape(estimates))
    quantile = np.where(np.isinf(df), stats.norm.ppf(1 - alpha / 2), stats.t.ppf(1 - alpha / 2, df))
    with np.errstate(divide="ignore", invalid="ignore"):
        statistic = estimates / stderr
    p_value = np.where(np.isinf(df), 2 * stats.norm.sf(np.abs(statistic)), 2 * stats.t.sf(np.abs(statistic), df))
    return pd.DataFrame({"comparison": names, "estimate": estimates, "stderr": stderr, "df": df,
                         "statistic": statistic, "p_value": p_value, "ci_low": estimates - quantile * stderr,
                         "ci_high": estimates + quantile * stderr})


def _hillis_df(error: np.ndarray | float, ms: np.ndarray | float, df: int) -> np.ndarray:
    """Satterthwaite-type df of ``error`` = ``ms`` + a covariance term: error^2 / (ms^2 / df); inf if ms is 0."""
    error, ms = np.asarray(error, dtype=float), np.asarray(ms, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ms > 0, error**2 / (ms**2 / df), np.inf)


def _single(treatments: list[str], means: np.ndarray, stderr: np.ndarray, df: np.ndarray | float,
            alpha: float) -> pd.DataFrame:
    table = _comparisons(treatments, means, stderr, df, alpha)
    return table.rename(columns={"comparison": "treatment", "estimate": "auc"})[
        ["treatment", "auc", "stderr", "df", "ci_low", "ci_high"]]


def obuchowski_rockette(frame: pd.DataFrame, *, covariance: str = "jackknife", alpha: float = 0.05,
                        complete_cases_only: bool = False) -> ORAnalysis:
    """Obuchowski-Rockette-Hillis analysis of a fully crossed ROC reader study.

    Args:
        frame: one row per (reader, treatment, case) with columns ``reader``, ``treatment``,
            ``case``, ``truth`` (0/1) and ``rating`` (larger = more likely positive).
        covariance: ``"jackknife"`` (as OR-DBM MRMC and MRMCaov by default) or ``"delong"``.
        alpha: 1 - confidence level of every interval.
        complete_cases_only: drop the cases that some reader did not rate under some treatment
            (their number is in ``cases_dropped``) instead of raising.

    Returns:
        The :class:`ORAnalysis`, with ``analyses["RRRC"]``, ``["FRRC"]`` and ``["RRFC"]``.

    Raises:
        MRMCError: missing columns, NaN ratings, truth not 0/1 or not constant within a case,
            duplicate rows, fewer than 2 readers / treatments / cases of a class, or a design
            that is not fully crossed.
    """
    if covariance not in COVARIANCE_METHODS:
        raise MRMCError(f"unknown covariance method {covariance!r}; use one of {list(COVARIANCE_METHODS)}")
    if not 0 < alpha < 1:
        raise MRMCError(f"alpha must lie strictly between 0 and 1, got {alpha}")
    treatments, readers, truth, ratings, dropped = _design(frame, complete_cases_only)
    theta, cov = auc_covariance(truth, ratings, covariance)
    t, r = theta.shape

    # Two-way ANOVA of the AUC table.
    mean_t, mean_r, grand = theta.mean(axis=1), theta.mean(axis=0), theta.mean()
    ss_t, ss_r = r * ((mean_t - grand) ** 2).sum(), t * ((mean_r - grand) ** 2).sum()
    ss_tr = ((theta - mean_t[:, None] - mean_r[None, :] + grand) ** 2).sum()
    ms_t, ms_r, ms_tr = ss_t / (t - 1), ss_r / (r - 1), ss_tr / ((t - 1) * (r - 1))
    ms_r_i = ((theta - mean_t[:, None]) ** 2).sum(axis=1) / (r - 1)

    # Error variance and the three covariances, overall, per treatment and per reader.
    trt, rdr = np.repeat(np.arange(t), r), np.tile(np.arange(r), t)
    same_t, same_r = trt[:, None] == trt[None, :], rdr[:, None] == rdr[None, :]
    diag = np.diag(cov)
    var, cov1 = diag.mean(), cov[same_r & ~same_t].mean()
    cov2, cov3 = cov[same_t & ~same_r].mean(), cov[~same_t & ~same_r].mean()
    var_i = np.array([diag[trt == i].mean() for i in range(t)])
    cov2_i = np.array([cov[np.ix_(trt == i, trt == i)][~np.eye(r, dtype=bool)].mean() for i in range(t)])
    var_j = np.array([diag[rdr == j].mean() for j in range(r)])
    cov1_j = np.array([cov[np.ix_(rdr == j, rdr == j)][~np.eye(t, dtype=bool)].mean() for j in range(r)])
    # Solve the OR expected mean squares for the reader and interaction variances (Hillis 2005):
    # E[MS(T*R)] = Var(T*R) + Var - Cov1 - Cov2 + Cov3, E[MS(R) - MS(T*R)] = t (Var(R) + Cov1 - Cov3).
    components = {"Var(R)": (ms_r - ms_tr) / t - cov1 + cov3, "Var(T*R)": ms_tr - var + cov1 + cov2 - cov3,
                  "Cov1": cov1, "Cov2": cov2, "Cov3": cov3, "Var(Error)": var}

    pairs = list(itertools.combinations(range(t), 2))
    names = [f"{treatments[a]} - {treatments[b]}" for a, b in pairs]
    diffs = np.array([mean_t[a] - mean_t[b] for a, b in pairs])
    analyses: dict[str, Analysis] = {}

    # RRRC: Hillis (2007) denominator and ddf_H.
    df_tr = (t - 1) * (r - 1)
    error = ms_tr + r * max(cov2 - cov3, 0.0)
    ddf = float(_hillis_df(error, ms_tr, df_tr))
    single_error = ms_r_i + r * np.maximum(cov2_i, 0.0)
    analyses["RRRC"] = Analysis(
        "RRRC", "F", ms_t / error, t - 1, ddf, float(stats.f.sf(ms_t / error, t - 1, ddf)), error,
        _comparisons(names, diffs, np.full(len(pairs), np.sqrt(2 / r * error)), ddf, alpha),
        _single(treatments, mean_t, np.sqrt(single_error / r), _hillis_df(single_error, ms_r_i, r - 1), alpha))

    # FRRC: chi-square with t-1 df; z intervals; each reader's differences use that reader's own
    # Var(Error) and Cov1 (averaged over treatments when t > 2, as OR-DBM does).
    error = var - cov1 + (r - 1) * max(cov2 - cov3, 0.0)
    x2 = (t - 1) * ms_t / error
    per_reader = [(readers[j], names[k], theta[a, j] - theta[b, j], np.sqrt(2 * (var_j[j] - cov1_j[j])))
                  for j in range(r) for k, (a, b) in enumerate(pairs)]
    reader_table = _comparisons([row[1] for row in per_reader], np.array([row[2] for row in per_reader]),
                                np.array([row[3] for row in per_reader]), np.inf, alpha)
    reader_table.insert(0, "reader", [row[0] for row in per_reader])
    analyses["FRRC"] = Analysis(
        "FRRC", "X2", x2, t - 1, np.inf, float(stats.chi2.sf(x2, t - 1)), error,
        _comparisons(names, diffs, np.full(len(pairs), np.sqrt(2 / r * error)), np.inf, alpha),
        _single(treatments, mean_t, np.sqrt((var_i + (r - 1) * np.maximum(cov2_i, 0.0)) / r), np.inf, alpha),
        reader_table)

    # RRFC: conventional treatment x reader ANOVA of the AUCs.
    analyses["RRFC"] = Analysis(
        "RRFC", "F", ms_t / ms_tr, t - 1, df_tr, float(stats.f.sf(ms_t / ms_tr, t - 1, df_tr)), ms_tr,
        _comparisons(names, diffs, np.full(len(pairs), np.sqrt(2 / r * ms_tr)), df_tr, alpha),
        _single(treatments, mean_t, np.sqrt(ms_r_i / r), r - 1, alpha))

    return ORAnalysis(
        covariance_method=covariance, alpha=alpha, treatments=tuple(treatments), readers=tuple(readers),
        n_cases=len(truth), n_positive=int(truth.sum()), cases_dropped=dropped,
        aucs=pd.DataFrame(theta.T, index=pd.Index(readers, name="reader"), columns=treatments),
        covariance=cov,
        anova=pd.DataFrame({"ss": [ss_t, ss_r, ss_tr], "df": [t - 1, r - 1, df_tr], "ms": [ms_t, ms_r, ms_tr]},
                           index=pd.Index(["T", "R", "T*R"], name="source")),
        components={key: float(value) for key, value in components.items()},
        per_treatment=pd.DataFrame({"auc": mean_t, "ms_r": ms_r_i, "var_error": var_i, "cov2": cov2_i},
                                   index=pd.Index(treatments, name="treatment")),
        per_reader=pd.DataFrame({"var_error": var_j, "cov1": cov1_j}, index=pd.Index(readers, name="reader")),
        analyses=analyses)
