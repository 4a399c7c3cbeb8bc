"""core.mrmc against two published analyses of the Van Dyke et al. (1993) reader study.

Expected figures are copied, as printed, from the files in ``tests/data/mrmc`` (see its README):
OR-DBM MRMC 2.5 with jackknife covariances and MRMCaov 0.3.0 with DeLong covariances. Each is
compared to half a unit of its last printed digit (``printed("0.0517")`` allows +-0.00005).
"""

import json
from pathlib import Path

import pandas as pd
import pytest

from core.mrmc import MRMCError, empirical_auc, obuchowski_rockette, read_lrc

DATA = Path(__file__).resolve().parent / "data" / "mrmc"


def printed(text: str):
    """``pytest.approx`` of a figure as printed: tolerance half a unit of its last digit."""
    decimals = len(text.split(".")[1]) if "." in text else 0
    return pytest.approx(float(text), abs=0.5 * 10.0**-decimals + 1e-13)


@pytest.fixture(scope="module")
def vandyke() -> pd.DataFrame:
    return read_lrc(DATA / "VanDyke.lrc")


@pytest.fixture(scope="module")
def jackknife(vandyke):
    return obuchowski_rockette(vandyke, covariance="jackknife")


@pytest.fixture(scope="module")
def delong(vandyke):
    return obuchowski_rockette(vandyke, covariance="delong")


# ------------------------------------------------------------------------------------------
# empirical_auc and read_lrc
# ------------------------------------------------------------------------------------------


def test_empirical_auc_by_hand():
    # positives 2, 3 against negatives 1, 2: (2>1) 1, (2=2) 1/2, (3>1) 1, (3>2) 1 -> 3.5 / 4.
    assert empirical_auc([0, 0, 1, 1], [1, 2, 2, 3]) == 0.875
    assert empirical_auc([0, 0, 1, 1], [1, 2, 3, 4]) == 1.0
    assert empirical_auc([0, 0, 1, 1], [4, 3, 2, 1]) == 0.0
    assert empirical_auc([0, 1], [5, 5]) == 0.5
    with pytest.raises(MRMCError, match="positive and one negative"):
        empirical_auc([1, 1, 1], [1, 2, 3])
    with pytest.raises(MRMCError, match="equal length"):
        empirical_auc([0, 1], [1, 2, 3])


def test_read_lrc_vandyke(vandyke):
    assert len(vandyke) == 5 * 2 * 114
    assert list(vandyke.columns) == ["reader", "treatment", "case", "truth", "rating"]
    assert sorted(vandyke["reader"].unique()) == ["0", "1", "2", "3", "4"]
    assert sorted(vandyke["treatment"].unique()) == ["0", "1"]
    truth = vandyke.groupby("case")["truth"].agg(["nunique", "first"])
    assert (truth["nunique"] == 1).all()
    assert (truth["first"] == 0).sum() == 69 and (truth["first"] == 1).sum() == 45
    # First data line of the file: reader 0, normal case 0, ratings 1 (treatment 0) and 3 (treatment 1).
    first = vandyke[(vandyke["reader"] == "0") & (vandyke["case"] == "0")].set_index("treatment")["rating"]
    assert first.to_dict() == {"0": 1.0, "1": 3.0}


def test_read_lrc_small_file_without_labels_and_smaller_is_abnormal(tmp_path):
    path = tmp_path / "tiny.lrc"
    path.write_text('tiny\nR1\n"A"  "B"\nS  S\n1  2\n3  4\n*\n5  6\n*\nR2\n1  1\n2  2\n*\n3  3\n*\n#\n')
    frame = read_lrc(path)
    assert len(frame) == 2 * 2 * 3
    assert frame["case"].unique().tolist() == ["N1", "N2", "A1"]
    assert frame.loc[(frame["reader"] == "R1") & (frame["case"] == "A1"), "rating"].tolist() == [-5.0, -6.0]
    (tmp_path / "bad.lrc").write_text('bad\nR1\n"A"  "B"\n1  x\n*\n#\n')
    with pytest.raises(MRMCError, match="line 4"):
        read_lrc(tmp_path / "bad.lrc")


# ------------------------------------------------------------------------------------------
# Jackknife: OR-DBM MRMC 2.5 (tests/data/mrmc/VanDyke_OR-DBM-MRMC-2.5_jackknife.txt)
# ------------------------------------------------------------------------------------------

ORDBM_AUCS = {  # reader -> (treatment 1, treatment 2); OR-DBM numbers readers and treatments from 1
    "0": ("0.91964573", "0.94782609"), "1": ("0.85877617", "0.90531401"), "2": ("0.90386473", "0.92173913"),
    "3": ("0.97310789", "0.99935588"), "4": ("0.82979066", "0.92995169"),
}


def test_jackknife_estimates_anova_and_components(jackknife):
    for reader, expected in ORDBM_AUCS.items():
        assert jackknife.aucs.loc[reader, "0"] == printed(expected[0])
        assert jackknife.aucs.loc[reader, "1"] == printed(expected[1])
    assert jackknife.treatment_means.tolist() == [printed("0.89703704"), printed("0.94083736")]
    assert jackknife.analyses["RRRC"].differences["estimate"].iloc[0] == printed("-0.04380032")
    anova = jackknife.anova
    assert anova.loc["T"].tolist() == [printed("0.00479617"), 1, printed("0.00479617")]
    assert anova.loc["R"].tolist() == [printed("0.01534480"), 4, printed("0.00383620")]
    assert anova.loc["T*R"].tolist() == [printed("0.00220412"), 4, printed("0.00055103")]
    assert jackknife.per_treatment["ms_r"].tolist() == [printed("0.00308263"), printed("0.00130460")]
    components = jackknife.components
    assert components["Var(R)"] == printed("0.00153500")
    assert components["Var(T*R)"] == printed("0.00020040")
    assert components["Cov1"] == printed("0.00034661")
    assert components["Cov2"] == printed("0.00034407")
    assert components["Cov3"] == printed("0.00023903")
    assert components["Var(Error)"] == printed("0.00080229")
    correlations = jackknife.to_frames()["variance_components"].set_index("component")["correlation"]
    assert correlations[["Cov1", "Cov2", "Cov3"]].tolist() == [
        printed("0.43203138"), printed("0.42886683"), printed("0.29793328")]


def test_jackknife_random_readers_random_cases(jackknife):
    rrrc = jackknife.analyses["RRRC"]
    assert (rrrc.statistic, rrrc.df1, rrrc.df2, rrrc.p_value) == (printed("4.46"), 1, printed("15.26"),
                                                                  printed("0.0517"))
    assert rrrc.error_term == printed("0.00107626")
    row = rrrc.differences.iloc[0]
    assert row["comparison"] == "0 - 1"
    assert (row["estimate"], row["stderr"], row["df"], row["statistic"], row["p_value"]) == (
        printed("-0.04380"), printed("0.02075"), printed("15.26"), printed("-2.11"), printed("0.0517"))
    assert (row["ci_low"], row["ci_high"]) == (printed("-0.08796"), printed("0.00036"))
    single = rrrc.single_treatment.set_index("treatment")
    assert jackknife.per_treatment["cov2"].tolist() == [printed("0.00048396"), printed("0.00020419")]
    assert single.loc["0"].tolist() == [printed("0.89703704"), printed("0.03317360"), printed("12.74"),
                                        printed("0.82522360"), printed("0.96885048")]
    assert single.loc["1"].tolist() == [printed("0.94083736"), printed("0.02156637"), printed("12.71"),
                                        printed("0.89413783"), printed("0.98753689")]


def test_jackknife_fixed_readers_random_cases(jackknife):
    frrc = jackknife.analyses["FRRC"]
    assert (frrc.statistic, frrc.df1, frrc.p_value) == (printed("5.47595"), 1, printed("0.0193"))
    row = frrc.differences.iloc[0]
    assert (row["estimate"], row["stderr"], row["statistic"], row["p_value"]) == (
        printed("-0.04380"), printed("0.01872"), printed("-2.34"), printed("0.0193"))
    assert (row["ci_low"], row["ci_high"]) == (printed("-0.08049"), printed("-0.00711"))
    single = frrc.single_treatment.set_index("treatment")
    assert single.loc["0", ["auc", "stderr", "ci_low", "ci_high"]].tolist() == [
        printed("0.89703704"), printed("0.02428971"), printed("0.84943008"), printed("0.94464399")]
    assert single.loc["1", ["auc", "stderr", "ci_low", "ci_high"]].tolist() == [
        printed("0.94083736"), printed("0.01677632"), printed("0.90795637"), printed("0.97371835")]
    assert jackknife.per_treatment["var_error"].tolist() == [printed("0.00101410"), printed("0.00059047")]


def test_jackknife_fixed_readers_matches_mrmcaov_to_more_digits(jackknife):
    # MRMCaov 0.3.0, docs/jss/MRMCaov.tex, section "Fixed Factors" (mrmc(..., fixed(reader), case)),
    # read at commit f1c63dc4383e23ed8f1e64adee4476e768cd9287; not in tests/data (see its README).
    components = jackknife.components
    assert [components[key] for key in ("Var(R)", "Var(T*R)", "Var(Error)", "Cov1", "Cov2", "Cov3")] == [
        printed("0.0015349993"), printed("0.0002004025"), printed("0.0008022883"), printed("0.0003466137"),
        printed("0.0003440748"), printed("0.0002390284")]
    frrc = jackknife.analyses["FRRC"]
    assert (frrc.error_term, frrc.statistic, frrc.p_value) == (
        printed("0.0008758604"), printed("5.475953"), printed("0.01927984"))
    assert frrc.differences.iloc[0][["stderr", "ci_low", "ci_high", "statistic", "p_value"]].tolist() == [
        printed("0.01871748"), printed("-0.08048591"), printed("-0.00711473"), printed("-2.340075"),
        printed("0.01927984")]
    assert jackknife.per_treatment[["var_error", "cov2"]].to_numpy().tolist() == [
        [printed("0.0010141028"), printed("0.0004839618")], [printed("0.0005904738"), printed("0.0002041879")]]
    assert frrc.single_treatment[["stderr", "ci_low", "ci_high"]].to_numpy().tolist() == [
        [printed("0.02428971"), printed("0.8494301"), printed("0.9446440")],
        [printed("0.01677632"), printed("0.9079564"), printed("0.9737183")]]
    expected = [  # estimate, StdErr, CI low, CI high, z, p
        ("-0.02818035", "0.02551213", "-0.078183215", "0.021822507", "-1.1045864", "0.26933885"),
        ("-0.04653784", "0.02630183", "-0.098088476", "0.005012792", "-1.7693768", "0.07683102"),
        ("-0.01787440", "0.03120965", "-0.079044180", "0.043295388", "-0.5727202", "0.56683414"),
        ("-0.02624799", "0.01729129", "-0.060138290", "0.007642316", "-1.5179891", "0.12901715"),
        ("-0.10016103", "0.04405746", "-0.186512066", "-0.013809995", "-2.2734182", "0.02300099"),
    ]
    table = frrc.reader_differences[["estimate", "stderr", "ci_low", "ci_high", "statistic", "p_value"]]
    assert table.to_numpy().tolist() == [[printed(value) for value in row] for row in expected]


ORDBM_PER_READER = [  # difference, StdErr, z, p, CI low, CI high, Var(Error), Cov1
    ("-0.02818", "0.02551", "-1.10", "0.2693", "-0.07818", "0.02182", "0.00069890", "0.00037347"),
    ("-0.04654", "0.02630", "-1.77", "0.0768", "-0.09809", "0.00501", "0.00110605", "0.00076016"),
    ("-0.01787", "0.03121", "-0.57", "0.5668", "-0.07904", "0.04330", "0.00084234", "0.00035532"),
    ("-0.02625", "0.01729", "-1.52", "0.1290", "-0.06014", "0.00764", "0.00015058", "0.00000108"),
    ("-0.10016", "0.04406", "-2.27", "0.0230", "-0.18651", "-0.01381", "0.00121357", "0.00024304"),
]


def test_jackknife_single_reader_differences(jackknife):
    table = jackknife.analyses["FRRC"].reader_differences.set_index("reader")
    for reader, expected in zip(jackknife.readers, ORDBM_PER_READER, strict=True):
        got = table.loc[reader, ["estimate", "stderr", "statistic", "p_value", "ci_low", "ci_high"]].tolist()
        got += jackknife.per_reader.loc[reader, ["var_error", "cov1"]].tolist()
        assert got == [printed(value) for value in expected], reader


def test_jackknife_random_readers_fixed_cases(jackknife):
    rrfc = jackknife.analyses["RRFC"]
    assert (rrfc.statistic, rrfc.df1, rrfc.df2, rrfc.p_value) == (printed("8.70"), 1, 4, printed("0.0420"))
    assert rrfc.error_term == printed("0.00055103")
    row = rrfc.differences.iloc[0]
    assert (row["estimate"], row["stderr"], row["df"], row["statistic"], row["p_value"]) == (
        printed("-0.04380"), printed("0.01485"), 4, printed("-2.95"), printed("0.0420"))
    assert (row["ci_low"], row["ci_high"]) == (printed("-0.08502"), printed("-0.00258"))
    single = rrfc.single_treatment.set_index("treatment")
    assert single.loc["0"].tolist() == [printed("0.89703704"), printed("0.02482994"), 4, printed("0.82809808"),
                                        printed("0.96597599")]
    assert single.loc["1"].tolist() == [printed("0.94083736"), printed("0.01615303"), 4, printed("0.89598936"),
                                        printed("0.98568536")]


def test_summary_line(jackknife):
    assert jackknife.summary_line() == (
        "5 readers, 114 cases (45 positive): AUC 0.897 vs 0.941, difference -0.044 (95% CI -0.088 to 0.000), "
        "F(1, 15.3) = 4.46, p = 0.052 (random readers and cases; Obuchowski-Rockette-Hillis, jackknife).")
    assert "X2(1) = 5.48, p = 0.019 (fixed readers, random cases;" in jackknife.summary_line("FRRC")
    assert "F(1, 4) = 8.70, p = 0.042 (random readers, fixed cases;" in jackknife.summary_line("RRFC")
    with pytest.raises(MRMCError, match="unknown analysis"):
        jackknife.summary_line("DBM")


def test_export_is_tidy_and_json_serialisable(jackknife):
    frames = jackknife.to_frames()
    assert set(frames) == {"aucs", "anova", "variance_components", "tests", "differences", "single_treatment",
                           "reader_differences"}
    assert frames["tests"]["analysis"].tolist() == ["RRRC", "FRRC", "RRFC"]
    assert len(frames["differences"]) == 3 and len(frames["single_treatment"]) == 6
    assert len(frames["reader_differences"]) == 5
    exported = json.loads(json.dumps(jackknife.to_dict(), allow_nan=False))
    assert exported["n_cases"] == 114 and exported["tests"][1]["df2"] is None  # chi-square: no df2


# ------------------------------------------------------------------------------------------
# DeLong: MRMCaov 0.3.0 (tests/data/mrmc/VanDyke_MRMCaov-0.3.0_DeLong_unbiased.txt)
# ------------------------------------------------------------------------------------------


def test_delong_matches_mrmcaov(delong):
    components = delong.components
    assert components["Var(R)"] == printed("0.0015364254")
    assert components["Var(T*R)"] == printed("0.0002045840")
    assert components["Var(Error)"] == printed("0.0007921325")
    assert components["Cov1"] == printed("0.0003420090")
    assert components["Cov2"] == printed("0.0003395265")
    assert components["Cov3"] == printed("0.0002358497")
    correlations = delong.to_frames()["variance_components"].set_index("component")["correlation"]
    assert correlations[["Cov1", "Cov2", "Cov3"]].tolist() == [
        printed("0.4317573"), printed("0.4286234"), printed("0.2977402")]
    assert delong.anova.loc["T", "ms"] == printed("0.004796171")
    assert delong.anova.loc["T*R", "ms"] == printed("0.0005510306")
    rrrc = delong.analyses["RRRC"]
    assert (rrrc.error_term, rrrc.statistic, rrrc.df2, rrrc.p_value) == (
        printed("0.001069415"), printed("4.484854"), printed("15.06611"), printed("0.05123303"))
    row = rrrc.differences.iloc[0]
    assert row[["estimate", "stderr", "df", "ci_low", "ci_high", "statistic", "p_value"]].tolist() == [
        printed("-0.04380032"), printed("0.0206825"), printed("15.06611"), printed("-0.0878671960"),
        printed("0.0002665519"), printed("-2.117747"), printed("0.05123303")]
    single = rrrc.single_treatment.set_index("treatment")
    per_treatment = delong.per_treatment
    for treatment, expected in {
        "0": ("0.8970370", "0.003082629", "0.0004775239", "0.03307642", "12.59597", "0.8253461", "0.9687280"),
        "1": ("0.9408374", "0.001304602", "0.0002015292", "0.02150464", "12.56530", "0.8942155", "0.9874592"),
    }.items():
        got = [single.loc[treatment, "auc"], per_treatment.loc[treatment, "ms_r"],
               per_treatment.loc[treatment, "cov2"], *single.loc[treatment, ["stderr", "df", "ci_low", "ci_high"]]]
        assert got == [printed(value) for value in expected], treatment


# ------------------------------------------------------------------------------------------
# Properties and a study small enough to do by hand
# ------------------------------------------------------------------------------------------


def _key_figures(result) -> list[float]:
    figures = [*result.components.values(), *result.anova["ms"]]
    for analysis in result.analyses.values():
        figures += [analysis.statistic, analysis.df2, analysis.p_value, *analysis.differences["stderr"]]
    return figures


@pytest.mark.parametrize("covariance", ["jackknife", "delong"])
def test_relabelling_readers_and_shuffling_cases_changes_nothing(vandyke, covariance):
    base = obuchowski_rockette(vandyke, covariance=covariance)
    names = {"0": "Eve", "1": "Bob", "2": "Ann", "3": "Dan", "4": "Cat"}
    shuffled = vandyke.assign(reader=vandyke["reader"].map(names), case="c" + vandyke["case"])
    shuffled = shuffled.sample(frac=1.0, random_state=7).reset_index(drop=True)
    other = obuchowski_rockette(shuffled, covariance=covariance)
    assert _key_figures(other) == pytest.approx(_key_figures(base), rel=1e-10, abs=1e-15)
    for reader, name in names.items():
        assert other.aucs.loc[name].tolist() == base.aucs.loc[reader].tolist()


def test_swapping_treatments_flips_the_difference(vandyke, jackknife):
    swapped = obuchowski_rockette(vandyke.assign(treatment=vandyke["treatment"].map({"0": "1", "1": "0"})))
    for name in ("RRRC", "FRRC", "RRFC"):
        before, after = jackknife.analyses[name].differences.iloc[0], swapped.analyses[name].differences.iloc[0]
        assert after["estimate"] == pytest.approx(-before["estimate"])
        assert after["stderr"] == pytest.approx(before["stderr"])
        assert after["p_value"] == pytest.approx(before["p_value"])
        assert (after["ci_low"], after["ci_high"]) == (pytest.approx(-before["ci_high"]),
                                                        pytest.approx(-before["ci_low"]))


def _tiny_study() -> pd.DataFrame:
    # Cases n1, n2 are negative, p1, p2 positive. Ratings in the order n1, n2, p1, p2:
    #   reader A, treatment 1: 1 2 3 4 -> AUC 4/4 = 1.00
    #   reader A, treatment 2: 1 3 2 4 -> p1=2 beats n1 only; p2 beats both -> 3/4 = 0.75
    #   reader B, treatment 1: 2 2 2 3 -> p1 ties both (1/2 + 1/2); p2 beats both -> 3/4 = 0.75
    #   reader B, treatment 2: 3 1 2 4 -> p1 beats n2 only; p2 beats both -> 3/4 = 0.75
    ratings = {("A", "1"): [1, 2, 3, 4], ("A", "2"): [1, 3, 2, 4], ("B", "1"): [2, 2, 2, 3],
               ("B", "2"): [3, 1, 2, 4]}
    return pd.DataFrame([{"reader": reader, "treatment": treatment, "case": case, "truth": truth, "rating": value}
                         for (reader, treatment), values in ratings.items()
                         for case, truth, value in zip(["n1", "n2", "p1", "p2"], [0, 0, 1, 1], values, strict=True)])


def test_tiny_study_by_hand():
    result = obuchowski_rockette(_tiny_study())
    assert result.aucs.to_numpy().tolist() == [[1.0, 0.75], [0.75, 0.75]]
    # Treatment means 0.875 / 0.75, reader means 0.875 / 0.75, grand mean 0.8125.
    # Interaction residuals theta - row mean - column mean + grand mean = +-0.0625 in every cell,
    # so SS(T*R) = 4 * 0.0625^2 = 0.015625 on (2-1)(2-1) = 1 df; MS(T) = 2 * 2 * 0.0625^2 = 0.015625.
    assert result.anova["ms"].tolist() == pytest.approx([0.015625, 0.015625, 0.015625])
    rrfc = result.analyses["RRFC"]
    assert (rrfc.statistic, rrfc.df1, rrfc.df2) == (pytest.approx(1.0), 1, 1)
    assert rrfc.p_value == pytest.approx(0.5)  # F(1, 1) has median 1
    # Reader B, treatment 2 (row 3 of the treatment-major covariance): placement values of the
    # positives p1, p2 are 1/2, 1 and of the negatives n1, n2 are 1/2, 1 (AUC 0.75).
    # Jackknife: leaving out p1, p2, n1, n2 gives AUCs 1, 0.5, 1, 0.5 -> 3/4 * 4 * 0.25^2 = 0.1875.
    # DeLong: var(1/2, 1) = 0.125 for both classes -> 0.125/2 + 0.125/2 = 0.125.
    assert result.covariance[3, 3] == pytest.approx(0.1875)
    assert obuchowski_rockette(_tiny_study(), covariance="delong").covariance[3, 3] == pytest.approx(0.125)
    # Reader A, treatment 1 separates perfectly: every leave-one-out AUC is 1, variance 0.
    assert result.covariance[0, 0] == 0.0


def test_three_treatments_give_every_pair(vandyke):
    third = vandyke[vandyke["treatment"] == "0"].assign(treatment="2")
    third = third.assign(rating=third["rating"] + (third["case"].astype(int) % 3 == 0))
    result = obuchowski_rockette(pd.concat([vandyke, third], ignore_index=True))
    assert result.analyses["RRRC"].differences["comparison"].tolist() == ["0 - 1", "0 - 2", "1 - 2"]
    assert result.analyses["FRRC"].df1 == 2 and len(result.analyses["FRRC"].reader_differences) == 15
    assert len(result.analyses["RRFC"].single_treatment) == 3


def test_missing_cell_raises_with_count_or_drops_the_case(vandyke):
    gappy = vandyke.drop(index=vandyke.index[(vandyke["reader"] == "2") & (vandyke["case"] == "5")
                                             & (vandyke["treatment"] == "1")])
    with pytest.raises(MRMCError, match=r"1 of 1140 \(reader, treatment, case\) cells are missing, in 1 case"):
        obuchowski_rockette(gappy)
    result = obuchowski_rockette(gappy, complete_cases_only=True)
    assert (result.cases_dropped, result.n_cases, result.n_positive) == (1, 113, 45)
    assert "1 incomplete case(s) dropped" in result.summary_line()
    expected = obuchowski_rockette(vandyke[vandyke["case"] != "5"])
    assert _key_figures(result) == pytest.approx(_key_figures(expected))


@pytest.mark.parametrize(("change", "message"), [
    (lambda f: f.drop(columns="truth"), "lacks the column"),
    (lambda f: f.assign(rating=f["rating"].where(f.index != 3)), "1 rating"),
    (lambda f: f.assign(truth=f["truth"].where(f.index != 0, 1)), "truth differs"),
    (lambda f: f.assign(truth=f["truth"] * 2), "0 \\(negative\\) or 1"),
    (lambda f: f[f["treatment"] == "0"], "at least 2 treatments and 2 readers"),
    (lambda f: f[f["reader"] == "0"], "at least 2 treatments and 2 readers"),
    (lambda f: f[f["truth"] == 0], "2 positive and 2 negative"),
    (lambda f: pd.concat([f, f.iloc[:1]]), "duplicate"),
])
def test_bad_input_raises_clear_errors(vandyke, change, message):
    with pytest.raises(MRMCError, match=message):
        obuchowski_rockette(change(vandyke))


def test_bad_settings_raise(vandyke):
    with pytest.raises(MRMCError, match="unknown covariance"):
        obuchowski_rockette(vandyke, covariance="bootstrap")
    with pytest.raises(MRMCError, match="alpha"):
        obuchowski_rockette(vandyke, alpha=1.5)
