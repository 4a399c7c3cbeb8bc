"""The dashboard's pages under Streamlit's AppTest (no browser): state in, elements out."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.demo import available_cases
from ui.analysis import format_score
from ui.state import Keys

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def _run(at: AppTest) -> AppTest:
    at.run(timeout=120)  # the first run scores the default MNI152 volume (about 30 s on 2 idle cores)
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture
def app():
    return _run(AppTest.from_file(APP, default_timeout=120))


def test_scan_review_shows_the_default_demo_scan_slice_by_slice(app):
    assert app.title[0].value == "Scan review"
    first = available_cases()[0]
    assert app.selectbox(key=Keys.DEMO_CASE).value == first.key
    slider = app.slider(key=Keys.SLICE)
    assert (slider.min, slider.max) == (1, 189)  # MNI152: 189 axial slices, numbered from 1
    slider.set_value(41)
    _run(app)
    images = app.get("image")
    assert images, "no image rendered"
    assert images[0].captions[0].startswith("Slice 41 of 189")


def test_switching_to_a_2d_ct_demo_drops_the_slider_and_offers_ct_windows(app):
    app.selectbox(key=Keys.DEMO_CASE).set_value("ct_small")
    _run(app)
    assert not [s for s in app.slider if s.key == Keys.SLICE]
    windows = app.selectbox(key=Keys.WINDOW).options
    assert windows[0] == "Auto"  # CT_small carries no WindowCenter/Width of its own
    assert {"Brain", "Soft tissue", "Lung", "Bone"} <= set(windows)


def _opened(page: str, timeout: float = 120) -> AppTest:
    """``page`` under AppTest, reached from the root (which opens Scan review on the 2-D demo: seconds)."""
    at = AppTest.from_file(APP, default_timeout=timeout)
    at.session_state[Keys.DEMO_CASE] = "ct_small"
    _run(at)
    at.switch_page(page)
    return _run(at)


def shown_labels(table) -> dict[str, str]:
    """The label each column of an ``st.dataframe`` shows (its column_config), by machine name."""
    import json

    return {name: config.get("label", name) for name, config in json.loads(table.proto.columns).items()}


def test_about_page_lists_the_real_data_sources():
    at = _opened("pages/about.py")
    assert at.title[0].value == "About SAFEGEN"
    table = at.dataframe[0].value
    assert "mni152" in set(table["name"])
    assert bool(table.loc[table["name"] == "mni152", "present"].iloc[0])
    assert shown_labels(at.dataframe[0])["present"] == "On this machine"  # the data keeps its machine names
    models = at.dataframe[1].value  # the model card, read from the committed sidecars
    assert list(models["model"]) == ["autoencoder_mri_t1.pt", "diffusion_mri_t1.pt", "autoencoder_ct_head.pt",
                                     "diffusion_ct_head.pt", "generator_mri_t1.pt", "head_mri_t1.pt"]
    head = models.iloc[5]
    assert "held out: itk_t1" in head["training images"] and "image AUROC" in head["synthetic validation (kept step)"]
    assert models["trained with"].iloc[4].startswith("`python -m workflows.cli train generator` (seed 1, 1500 steps)")
    assert models["training images"].iloc[0] == "240 slices of mni152, colin27"
    assert models["training images"].iloc[2] == "150 slices of invesalius_cranium"
    assert models["final val loss"].iloc[0] == pytest.approx(0.0246, abs=5e-4)
    assert shown_labels(at.dataframe[1])["final val loss"] == "Final validation loss"
    assert shown_labels(at.dataframe[1])["CPU minutes"] == "CPU time (min)"
    assert any("4.706 z" in m.value for m in at.markdown)  # the default tau, from the calibration file
    assert any("Head CT (brain window): τ" in m.value and "4.445 z" in m.value for m in at.markdown)
    from core.head_scoring import HeadCalibration, head_calibration_file
    from core.profiles import MRI_T1

    head_tau = HeadCalibration.load(head_calibration_file(MRI_T1)).slice_tau()
    assert any("head τ (a 2-D image)" in m.value and f"{head_tau:.3f}" in m.value for m in at.markdown)


# ---------------------------------------------------------------------------------------------
# Scoring on the scan-review page (the committed models)
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def counted_scoring(monkeypatch):
    """Counts model runs (score_volume calls of the head or the seed scorer) from here on; demo results stay shared."""
    from core.head_scoring import HeadScorer
    from core.scoring import Scorer

    calls = []
    for cls in (Scorer, HeadScorer):
        original = cls.score_volume

        def counting(self, volume, _original=original, **kwargs):
            calls.append(volume.name)
            return _original(self, volume, **kwargs)

        monkeypatch.setattr(cls, "score_volume", counting)
    return calls


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_a_2d_demo_shows_the_scorers_verdict_and_tau_redraws_without_rerunning_models(app, counted_scoring):
    from core.demo import get_case
    from core.io import load_volume
    from core.scoring import Scorer
    from workflows.screening import reference_scores

    app.selectbox(key=Keys.DEMO_CASE).set_value("ct_small")
    _run(app)
    # pydicom's CT_small is a thoracic vertebra 85 mm across: no verdict, and the reason (core.domain)
    assert not app.success and not app.error
    assert app.warning[0].value.startswith("**Out of domain: no verdict.** The image covers 85 x 85 mm, smaller "
                                           "than the 120-400 mm of head CT.")
    app.selectbox(key=Keys.DEMO_CASE).set_value("head_ct_abnormal")
    _run(app)
    case = get_case("head_ct_abnormal")
    volume = load_volume(case.path, modality=case.modality)
    expected = Scorer.load(profile="ct_head").score_volume(volume)  # Auto: a CT scan gets the head-CT models
    metrics = _metrics(app)
    assert metrics["Score (worst slice)"] == f"{expected.score:.2f}"
    assert metrics["p-value vs real slices"] == f"{expected.p_value:.3f}"
    assert metrics["Autoencoder (E_AE)"] == f"{expected.score_autoencoder:.2f}"
    n = Scorer.load(profile="ct_head").calibration.metadata["calib_images"]  # 29 real clean CT slices
    assert len(reference_scores(Scorer.load(profile="ct_head"))) == n
    floor = [c.value for c in app.caption if c.value.startswith("Conformal p-value")]
    assert floor == [f"Conformal p-value against the {n} real clean calibration slices: (1 + those scoring at least "
                     f"as high) / ({n} + 1). p = {1 / (n + 1):.2g} is the smallest p {n} calibration slices can "
                     f"give, 1/({n} + 1): a score above all of them gets it, however far above."]
    assert app.slider(key=Keys.TAU).value == pytest.approx(expected.tau)  # exact, not rounded to the step
    assert app.selectbox(key=Keys.PROFILE).value == "auto"
    assert not any("Out of domain" in w.value for w in app.warning)
    runs = len(counted_scoring)
    # Above the score nothing is unsafe; below it the slice is flagged and its mask is non-empty.
    app.slider(key=Keys.TAU).set_value(round(expected.score + 1.0, 2))
    _run(app)
    assert app.success and "No artifact found" in app.success[0].value
    assert "(0 px," in app.get("image")[-1].captions[-1]  # the mask panel is empty
    app.slider(key=Keys.TAU).set_value(round(max(expected.score - 1.0, 0.0), 2))
    app.slider(key=Keys.OPACITY).set_value(0.9)
    _run(app)
    assert app.error and "Possibly unsafe" in app.error[0].value
    mask_caption = app.get("image")[-1].captions[-1]
    assert "Unsafe mask" in mask_caption and "(0 px," not in mask_caption
    assert len(counted_scoring) == runs  # moving tau and opacity re-ran no model


def test_the_profile_choice_rescores_a_ct_slice_with_the_brain_mri_models_and_warns(app):
    from core.demo import get_case
    from core.head_scoring import load_detector
    from core.io import load_volume

    app.selectbox(key=Keys.DEMO_CASE).set_value("ct_small")
    _run(app)
    app.selectbox(key=Keys.PROFILE).set_value("mri_t1")
    _run(app)
    case = get_case("ct_small")
    expected = load_detector().score_volume(load_volume(case.path, modality=case.modality))  # the head
    assert expected.head
    assert _metrics(app)["Score (worst slice)"] == format_score(expected.score)  # e.g. 0.9994: told from 1
    assert app.slider(key=Keys.TAU).value == pytest.approx(expected.tau)  # exact, not rounded to the step  # the profile's own tau
    # The head's tau shows four decimals and moves by 0.0001: a volume's 0.9946 is not drawn as "0.99".
    assert app.slider(key=Keys.TAU).proto.format == "%.4f" and app.slider(key=Keys.TAU).proto.step == pytest.approx(1e-4)
    assert any("Out of domain" in w.value for w in app.warning)  # a CT slice vs brain-MRI models


def test_switching_the_explainer_redraws_its_heatmap_and_mask_without_rescoring(app, counted_scoring):
    from core.demo import get_case
    from core.explain import Explainer
    from core.io import load_volume
    from core.scoring import Scorer

    app.selectbox(key=Keys.DEMO_CASE).set_value("ct_small")
    _run(app)
    runs = len(counted_scoring)
    tau = round(float(_metrics(app)["Score (worst slice)"]) - 0.5, 2)  # the slice is flagged at this tau
    app.slider(key=Keys.TAU).set_value(tau)
    app.selectbox(key=Keys.EXPLAINER).set_value("saliency")
    _run(app)
    assert len(counted_scoring) == runs  # only the explainer ran, not the detectors
    heat_caption, mask_caption = app.get("image")[-2].captions[-1], app.get("image")[-1].captions[-1]
    assert "(saliency)" in heat_caption
    case = get_case("ct_small")
    scorer = Scorer.load(profile="ct_head")
    volume = load_volume(case.path, modality=case.modality)
    expected = scorer.explain(volume, scorer.score_volume(volume), Explainer.load(scorer, "saliency"))
    assert f"({int(expected.mask_at(tau).sum())} px," in mask_caption


@pytest.fixture
def gated_explainer(monkeypatch):
    """Holds each slice a background explainer makes until the test sets the gate, so the test sees it
    running whatever the machine's speed; set again at the end to let a job left running finish."""
    import threading

    from core.head_scoring import HeadScorer

    gate = threading.Event()
    original = HeadScorer.explain_slices

    def gated(self, *args, **kwargs):
        for item in original(self, *args, **kwargs):
            gate.wait(timeout=300)
            yield item

    monkeypatch.setattr(HeadScorer, "explain_slices", gated)
    yield gate
    gate.set()


def _wait_for(done, at: AppTest, timeout: float = 300) -> AppTest:
    """Rerun ``at`` every second, as the progress fragment does, until ``done()`` or the timeout."""
    import time

    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        time.sleep(1)
        _run(at)
    assert done(), "the background explainer did not finish in time"
    return at


def test_an_explainer_on_a_volume_runs_in_the_background_from_the_shown_slice_and_the_page_stays_usable(
        app, gated_explainer, counted_scoring):
    from core.head_scoring import outward_order

    shown = app.slider(key=Keys.SLICE).value  # 1-based: the worst slice the volume opened on
    app.selectbox(key=Keys.EXPLAINER).set_value("gradcam")
    _run(app)  # returns while the explainer waits: the page is not locked
    job = app.session_state[Keys.EXPLAIN_JOB]
    bar = app.get("progress")
    assert len(bar) == 1 and bar[0].proto.text.startswith(f"gradcam: 0 of {job.total} slices")
    assert app.button(key=Keys.EXPLAIN_CANCEL).proto.label == "Cancel"
    assert app.get("image")[2].captions[0].startswith("Heatmap (residual)")  # not reached yet: the residual map
    assert any(c.value == "gradcam has not reached this slice yet: its residual map is shown." for c in app.caption)
    app.slider(key=Keys.SLICE).set_value(shown + 5)
    _run(app)  # the slider still works, and the same job goes on
    assert app.session_state[Keys.EXPLAIN_JOB] is job and app.get("image")[0].captions[0].startswith(
        f"Slice {shown + 5} of 189")
    gated_explainer.set()
    # Done once a page run has taken the whole result (a run that only sees the job end mid-page asks for a
    # rerun and draws no progress bar, so "no bar" alone is not the end).
    _wait_for(lambda: Keys.EXPLAIN_JOB not in app.session_state, app)
    assert list(job.maps)[:5] == outward_order(shown - 1, list(job.maps))[:5]  # the shown slice first, then outward
    assert len(job.maps) == job.total and not app.get("progress")
    assert app.get("image")[2].captions[0].startswith("Heatmap (gradcam)")
    assert len(counted_scoring) == 0  # only the explainer ran
    app.selectbox(key=Keys.EXPLAINER).set_value("residual")
    _run(app)
    app.selectbox(key=Keys.EXPLAINER).set_value("gradcam")
    _run(app)  # switching back: the whole result is cached, nothing runs
    assert not app.get("progress") and app.get("image")[2].captions[0].startswith("Heatmap (gradcam)")


def test_cancel_stops_the_background_explainer_between_slices_and_keeps_what_was_done(app, gated_explainer):
    import time

    shown = app.slider(key=Keys.SLICE).value
    app.selectbox(key=Keys.EXPLAINER).set_value("saliency")
    _run(app)
    job = app.session_state[Keys.EXPLAIN_JOB]
    app.button(key=Keys.EXPLAIN_CANCEL).click()
    _run(app)
    assert "stopping after the slice being explained" in app.get("progress")[0].proto.text
    gated_explainer.set()  # the slice being explained finishes, then the thread stops
    deadline = time.monotonic() + 120
    while not job.finished and time.monotonic() < deadline:
        time.sleep(0.2)
    _run(app)
    assert list(job.maps) == [shown - 1]  # the shown slice, done before the cancel took effect; nothing after
    assert not app.get("progress")
    assert any(c.value.startswith(f"saliency was stopped after 1 of {job.total} slices") for c in app.caption)
    assert app.get("image")[2].captions[0].startswith("Heatmap (saliency)")  # the shown slice kept its map
    assert app.button(key=Keys.EXPLAIN_RESUME).proto.label == f"Explain the other {job.total - 1} slices"


def test_the_view_offers_mask_and_summary_downloads_named_after_it(app):
    app.selectbox(key=Keys.DEMO_CASE).set_value("ct_small")
    _run(app)
    app.slider(key=Keys.TAU).set_value(1.5)
    _run(app)
    buttons = {b.proto.label: b.proto for b in app.get("download_button")}
    assert set(buttons) == {"Download the mask at τ = 1.50 (NIfTI)", "Download the mask at τ = 1.50 (DICOM-SEG)",
                            "Summary (PNG)", "Summary (PDF)"}
    # The files are made on click (deferred callables); the browser test downloads them.


def test_a_3d_demo_plots_every_slice_score_and_opens_on_the_worst_slice(app, counted_scoring):
    import json

    _run(app)  # the default demo, MNI152 (scored once per server process)
    metrics = _metrics(app)
    worst = int(metrics["Worst slice"])
    assert app.slider(key=Keys.SLICE).value == worst
    figure = json.loads(app.get("plotly_chart")[0].proto.spec)
    trace = figure["data"][0]
    assert len(trace["x"]) == 189 and trace["x"][0] == 1
    scores = [v for v in trace["y"] if v is not None]
    assert max(scores) == pytest.approx(float(metrics["Score (worst slice)"]), abs=0.01)
    from core.head_scoring import HeadCalibration, head_calibration_file
    from core.profiles import MRI_T1

    calibration = HeadCalibration.load(head_calibration_file(MRI_T1))
    n, volumes = len(calibration.calib_scores), len(calibration.volume_scores)
    floor = next(c.value for c in app.caption if c.value.startswith("Conformal p-value"))
    assert f"against the {n} real clean calibration slices" in floor
    # a volume's p counts against the clean calibration volumes (core.head_scoring.HeadCalibration)
    assert floor.endswith(f"against the {volumes} clean calibration volumes' worst slices, so it cannot fall below "
                          f"{1 / (volumes + 1):.2g}.")
    assert float(metrics["p-value vs real volumes"]) >= round(1 / (volumes + 1), 3)
    assert len(counted_scoring) <= 1  # scored once per server process (already, by the fixture's run)
    runs = len(counted_scoring)
    app.slider(key=Keys.SLICE).set_value(90)
    _run(app)
    assert len(counted_scoring) == runs  # a slice move re-runs no model
    assert app.get("image")[0].captions[0].startswith("Slice 90 of 189")
    # The detector sees the image alone, so no reconstruction panel: image, heatmap, mask.
    assert [i.captions[0] for i in app.get("image")[1:3]] == ["Image", "Heatmap (residual), 0 to 1.0 (anomaly probability)"]


def test_choosing_a_baseline_scores_the_scan_with_it_and_hides_safegens_parts(monkeypatch, tmp_path, counted_scoring):
    from core.baselines.scorer import BaselineScorer
    from core.demo import get_case
    from core.io import load_volume
    from tests.baseline_helpers import mid_brain_slices, write_reference

    write_reference(tmp_path / "reference", *mid_brain_slices())  # small and real: the fit takes a second
    monkeypatch.setenv("SAFEGEN_DATA_DIR", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state[Keys.DEMO_CASE] = "ct_small"  # open on the 2-D demo: no 3-D volume to score first
    _run(at)
    runs = len(counted_scoring)
    assert "safegen" in at.selectbox(key=Keys.METHOD).options[0].lower()
    at.selectbox(key=Keys.METHOD).set_value("padim")
    _run(at)
    case = get_case("ct_small")
    expected = BaselineScorer.fit("padim", tmp_path / "reference").score_volume(
        load_volume(case.path, modality=case.modality))
    metrics = _metrics(at)
    assert metrics["Score (worst slice)"] == f"{expected.score:.2f}"
    assert "Autoencoder (E_AE)" not in metrics  # SAFEGEN's components are not the baseline's
    assert at.slider(key=Keys.TAU).value == pytest.approx(expected.tau)  # the baseline's own tau
    assert not [s for s in at.selectbox if s.key == Keys.EXPLAINER]  # explainers explain SAFEGEN only
    assert "Heatmap (residual)" in at.get("image")[-2].captions[-1]
    assert len(counted_scoring) == runs  # SAFEGEN's models did not run again
    at.selectbox(key=Keys.METHOD).set_value("mriqc_iqm")
    _run(at)
    assert any("whole images only" in i.value for i in at.info)  # image-level: no heatmap panels


# ---------------------------------------------------------------------------------------------
# Evaluation page
# ---------------------------------------------------------------------------------------------


def _evaluation_page(monkeypatch, evaluation_dir, data_dir, realistic_dir=None) -> AppTest:
    monkeypatch.setenv("SAFEGEN_EVALUATION_DIR", str(evaluation_dir))
    monkeypatch.setenv("SAFEGEN_REALISTIC_DIR", str(realistic_dir or evaluation_dir / "no-realistic-run"))
    monkeypatch.setenv("SAFEGEN_DATA_DIR", str(data_dir))
    return _opened("pages/evaluation.py", timeout=300)


def test_evaluation_page_without_results_says_how_to_make_them(monkeypatch, tmp_path):
    at = _evaluation_page(monkeypatch, tmp_path / "none", tmp_path / "data")
    assert at.title[0].value == "Evaluation"
    assert at.info and "make evaluate" in at.info[0].value
    assert not at.get("plotly_chart")


def test_evaluation_page_shows_the_detectors_realistic_report_as_written(monkeypatch, tmp_path):
    """A realistic-benchmark report made by the real summarise / write_report from known outputs: a
    head that ranks and outlines every artifact exactly and flags one clean image of four."""
    import json

    import numpy as np

    from core.detectors.head_training import UNSEEN_SUBJECT
    from core.benchmark.head_evaluation import MethodRun, summarise, write_report
    from core.benchmark.realistic import make_realistic_benchmark, read_mask

    if not UNSEEN_SUBJECT.path.is_file():
        pytest.skip(f"{UNSEEN_SUBJECT.path} not installed ({UNSEEN_SUBJECT.provenance})")
    bench = tmp_path / "bench"
    table = make_realistic_benchmark(bench, n_seen=4, n_unseen=4, seed=3)
    labels = table["label"].to_numpy()
    truths = [read_mask(bench, f) for f in table["file"]]
    flags = labels.astype(bool).copy()
    flags[np.flatnonzero(labels == 0)[0]] = True
    run = MethodRun("head", labels + 0.1 * np.arange(len(labels)) / len(labels), flags,
                    [t.astype(float) for t in truths], truths, np.full(len(labels), 0.5),
                    {"score_diffusion": np.full(len(labels), np.nan), "score_autoencoder": np.full(len(labels), np.nan)})
    write_report(tmp_path / "realistic", summarise([run], table, bench))
    at = _evaluation_page(monkeypatch, tmp_path / "none", tmp_path / "data", tmp_path / "realistic")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Image AUROC"] == "1.000" and metrics["Dice at τ"] == "1.000" and metrics["Pixel AUROC"] == "1.000"
    assert metrics["Clean images flagged"] == "25.0%"
    overall = at.dataframe[0]  # all methods: the report's names stay in the data ...
    assert {"method", "image_auroc", "false_alarm"} <= set(overall.value.columns)
    shown = shown_labels(overall)
    assert (shown["image_auroc"], shown["false_alarm"], shown["dice_at_tau"]) == (
        "Image AUROC", "Clean flagged", "Dice at τ")  # ... the reader sees these
    kinds = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert {t["name"] for t in kinds["data"]} == {"head"}
    assert sorted(kinds["data"][0]["x"]) == sorted(table.loc[labels == 1, "kind"].unique())
    assert at.info and "make evaluate" in at.info[0].value  # no seed evaluation here: the lower section says so


def test_evaluation_page_reruns_a_small_set_and_plots_what_it_wrote(monkeypatch, tmp_path):
    import json

    import numpy as np
    import pandas as pd

    from core.benchmark import evaluation
    from core.metrics import image_auroc

    # 12 of the 36 clean test slices: the page's wiring is under test here, and the scoring and explainer
    # passes of the other 24 took 20 of the test's 60 s (the full set is `make evaluate`'s, checked there)
    monkeypatch.setattr("ui.evaluation.clean_test_slices", lambda folder: evaluation.clean_test_slices(folder)[:12])
    at = _evaluation_page(monkeypatch, tmp_path / "none", tmp_path / "data")
    at.button(key=Keys.EVAL_RERUN).click()
    at.run(timeout=300)
    assert not at.exception, [e.value for e in at.exception]
    assert at.radio(key=Keys.EVAL_SOURCE).value.startswith("Quick re-run")
    folder = at.session_state[Keys.EVAL_QUICK_DIR]
    summary = pd.read_csv(f"{folder}/summary.csv", index_col=0)
    scores = pd.read_csv(f"{folder}/scores.csv", index_col=0)
    context = json.loads(open(f"{folder}/context.json").read())
    assert len(scores) == 54 and scores["label"].sum() == 27  # one artifact per kind x severity, as many clean
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Image AUROC (combined)"] == f"{summary.loc['combined', 'auroc']:.3f}"
    assert metrics["Clean real slices flagged"] == f"{summary.loc['combined', 'false_alarms_test_clean']:.1%}"
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    roc = charts[0]["data"][0]
    expected = image_auroc(scores["label"], scores["score_combined"])
    assert roc["name"].endswith(f"(AUROC {expected:.3f})") and roc["x"][0] == 0 and roc["y"][-1] == 1
    explainers = {t["name"] for t in charts[2]["data"]}
    assert explainers == {"residual", "saliency", "gradcam"}  # the Dice-per-kind bars of the quick run
    calibration = charts[-1]
    tau_line = [s for s in calibration["layout"]["shapes"] if s["x0"] == s["x1"]][0]
    assert tau_line["x0"] == pytest.approx(context["tau"])
    # At the default tau, the clean-test curve is the summary's false-alarm rate.
    curve = calibration["data"][1]
    at_tau = curve["y"][int(np.searchsorted(np.asarray(curve["x"]), context["tau"]))]
    assert at_tau == pytest.approx(summary.loc["combined", "false_alarms_test_clean"], abs=0.03)
    # The Baselines tab shows a comparison written to the same folder, and says where SAFEGEN loses.
    kinds = ["blur", "dropout"]
    pd.DataFrame({"safegen": [0.55, 0.74], "padim": [0.43, 0.36], "spectral": [0.64, 0.41]},
                 index=pd.Index(kinds, name="kind")).to_csv(f"{folder}/methods_auroc_per_kind.csv")
    pd.DataFrame({"safegen": [0.0, 0.21], "padim": [0.0, 0.0], "spectral": [np.nan, np.nan]},
                 index=pd.Index(kinds, name="kind")).to_csv(f"{folder}/methods_dice_per_kind.csv")
    pd.DataFrame({"title": ["SAFEGEN", "PaDiM", "spectral"], "auroc": [0.6, 0.46, 0.56]},
                 index=pd.Index(["safegen", "padim", "spectral"], name="method")).to_csv(f"{folder}/methods.csv")
    at.run(timeout=300)
    assert not at.exception, [e.value for e in at.exception]
    table = next(d.value for d in at.dataframe if "auroc" in d.value.columns and "title" in d.value.columns)
    assert table.loc["padim", "auroc"] == 0.46
    assert any("**blur**: spectral 0.64 vs SAFEGEN 0.55" in m.value for m in at.markdown)
    assert not any("**dropout**" in m.value for m in at.markdown)  # SAFEGEN leads there


def test_a_volume_opens_coronal_and_sagittal_views_without_rescoring(app, counted_scoring):
    _run(app)  # the default demo, MNI152 (197 x 233 x 189 voxels)
    runs = len(counted_scoring)
    shut = len(app.get("image"))  # the axial slice and the panels below it
    app.toggle(key=Keys.PLANES).set_value(True)
    _run(app)
    assert len(app.get("image")) == shut + 2
    captions = [i.captions[0] for i in app.get("image")]
    assert captions[1].startswith("Coronal 117 of 233 · superior at the top, the patient's right on the left")
    assert captions[2].startswith("Sagittal 99 of 197 · superior at the top, anterior on the left")
    app.slider(key=Keys.CORONAL).set_value(60)
    _run(app)
    assert app.get("image")[1].captions[0].startswith("Coronal 60 of 233")
    assert len(counted_scoring) == runs  # moving through the views re-runs no model


def test_a_flagged_volume_states_its_unsafe_volume_in_ml(app):
    import re

    _run(app)  # MNI152, 1 mm voxels
    app.slider(key=Keys.TAU).set_value(0.0)  # everything above 0 z is unsafe: the volume is flagged
    _run(app)
    found = re.search(r"Unsafe volume (\d+\.\d\d) ml in (\d+) region\(s\)", app.error[0].value)
    assert found and float(found[1]) > 0 and int(found[2]) >= 1, app.error[0].value


def test_the_unsafe_extent_is_the_masks_voxels_times_the_voxel_volume():
    from types import SimpleNamespace

    import numpy as np

    from ui.review import unsafe_extent

    mask = np.zeros((10, 10, 6), np.uint8)
    mask[1:3, 1:3, 1:3] = 1  # 8 voxels
    mask[6:9, 6:9, 4] = 1  # 9 voxels, a second region
    result = SimpleNamespace(heatmap=np.zeros((10, 10, 6)), pixel_maps=True, spacing=(2.0, 2.0, 5.0),
                             mask_at=lambda tau: mask)
    assert unsafe_extent(result, 1.0) == " Unsafe volume 0.34 ml in 2 region(s)."  # 17 x 20 mm3
    assert unsafe_extent(SimpleNamespace(**{**vars(result), "heatmap": np.zeros((10, 10))}), 1.0) == ""
    assert unsafe_extent(SimpleNamespace(**{**vars(result), "pixel_maps": False}), 1.0) == ""


# ---------------------------------------------------------------------------------------------
# Batch screening page: the table's labels, its CSV, the p-value's floor
# ---------------------------------------------------------------------------------------------


def test_the_batch_table_shows_labels_and_groups_and_its_csv_keeps_the_machine_names(monkeypatch, tmp_path):
    import io
    import json
    import shutil

    import numpy as np
    import pandas as pd
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    from core.benchmark.generated_set import GENERATED_SET_DIR
    from core.head_scoring import load_detector
    from workflows.screening import COLUMNS, reference_scores
    from tests.test_generated_set import small_set
    from tests.test_screening import batch_page_on_folder

    downloads = {}
    original = MemoryMediaFileStorage.load_and_get_id

    def keep(self, data, mimetype, kind, filename=None):
        downloads[filename] = data
        return original(self, data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", keep)
    picked = small_set(tmp_path / "set")  # four files of three groups, and their manifest
    shutil.copy(GENERATED_SET_DIR / "vae-01.png", tmp_path / "set" / "unlisted.png")  # not in the manifest
    at = batch_page_on_folder(tmp_path / "set", finish=True, timeout=300)
    ranked = at.dataframe[1]  # after the group summary
    groups = dict(zip(ranked.value["file"], ranked.value["group"], strict=True))
    assert groups == {**dict(zip(picked["file"], picked["group"], strict=True)), "unlisted.png": ""}
    labels = shown_labels(ranked)
    assert (labels["group"], labels["p_value"], labels["worst_slice"], labels["seconds"]) == (
        "Group", "p-value", "Worst slice", "Time (s)")
    configs = json.loads(ranked.proto.columns)
    hidden = {name for name, config in configs.items() if config.get("hidden")} - {"_index"}
    # the head has no components; warnings show when one of the files has one (the appearance check)
    assert {"score_diffusion", "score_autoencoder", "error"} <= hidden <= {"score_diffusion", "score_autoencoder",
                                                                         "warnings", "error"}
    csv = pd.read_csv(io.BytesIO(downloads["safegen_screening.csv"]), keep_default_na=False)
    assert list(csv.columns) == ["file", "group", *COLUMNS[1:]]  # the machine names, with the group after the file
    assert dict(zip(csv["file"], csv["group"], strict=True)) == groups
    n = len(reference_scores(load_detector(profile="mri_t1")))  # the calibration loaded now
    note = next(c.value for c in at.caption if "calibration slices can give" in c.value)
    assert note.startswith(f"p = {1 / (n + 1):.2g} is the smallest p {n} calibration slices can give, 1/({n} + 1)")
    at_floor = int(np.isclose(ranked.value["p_value"].astype(float), 1 / (n + 1)).sum())
    assert (f"{at_floor} file(s) here have it" in note) == (at_floor > 0)


@pytest.fixture
def gated_batch(monkeypatch):
    """Holds each file a background batch reads until the test releases it (one release, one file), so the
    test sees the batch running whatever the machine's speed; everything is released at the end to let a
    job left running finish."""
    import threading

    import ui.batch

    class Gate:
        """``release(n)`` lets ``n`` more files through; ``waiting``: the batch threads held at the gate now."""

        def __init__(self) -> None:
            self.files, self.waiting = threading.Semaphore(0), 0

        def release(self, n: int = 1) -> None:
            self.files.release(n)

        def passed(self) -> bool:
            self.waiting += 1
            try:
                return self.files.acquire(timeout=300)
            finally:
                self.waiting -= 1

    gate = Gate()
    original = ui.batch.screened_files

    def gated(*args, **kwargs):
        files = original(*args, **kwargs)
        while gate.passed() and (item := next(files, None)) is not None:
            yield item

    monkeypatch.setattr(ui.batch, "screened_files", gated)
    yield gate
    gate.release(10_000)


def _until(done, timeout: float = 300) -> None:
    """Wait (not rerunning anything) until ``done()`` or the timeout."""
    import time

    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert done(), "the background batch did not get there in time"


def test_a_batch_runs_in_the_background_and_cancel_keeps_the_files_scored_so_far(gated_batch, tmp_path):
    import re

    from core.head_scoring import load_detector
    from core.io import load_volume
    from workflows.score_folder import find_inputs
    from workflows.screening import screen
    from tests.test_generated_set import small_set
    from tests.test_screening import batch_page_on_folder, finish_batch

    small_set(tmp_path / "set")  # four files of three groups, and their manifest
    at = batch_page_on_folder(tmp_path / "set", score=True, timeout=300)  # returns while the first file waits
    first = at.session_state[Keys.BATCH_JOB]
    _until(lambda: gated_batch.waiting == 1)  # its thread holds the models, waiting at the gate
    at.button(key=Keys.BATCH_RUN).click()
    _run(at)  # another batch cancels the one running: one per session
    job = at.session_state[Keys.BATCH_JOB]
    assert job is not first and first.cancelled
    gated_batch.release(1)  # the first batch's thread holds the models: it scores one file and stops
    _until(lambda: first.finished)
    assert len(first.rows) == 1
    bar = at.get("progress")
    assert len(bar) == 1 and bar[0].proto.text == "Scoring: 0 of 4 files"
    assert at.button(key=Keys.BATCH_CANCEL).proto.label == "Cancel"
    assert not at.dataframe and not at.metric  # nothing of this batch scored yet
    gated_batch.release(2)
    _until(lambda: len(job.rows) == 2)
    _run(at)
    assert re.fullmatch(r"Scoring: 2 of 4 files, (about \d+ s|under a second) left", at.get("progress")[0].proto.text)
    assert any(c.value.startswith("Running: the figures and the table show the 2 of 4 files") for c in at.caption)
    assert len(at.dataframe[-1].value) == 2 and {m.label: m.value for m in at.metric}["Files"] == "2"
    at.button(key=Keys.BATCH_CANCEL).click()
    _run(at)
    assert "stopping after the file being scored" in at.get("progress")[0].proto.text
    gated_batch.release(10_000)  # the file being read now is scored, then the thread stops
    _until(lambda: job.finished)
    _run(at)
    assert len(job.rows) == 3 and not at.get("progress")
    assert any(c.value.startswith("Partial batch: stopped after 3 of 4 files") for c in at.caption)
    assert sorted(at.dataframe[-1].value["file"]) == sorted(row["file"] for row in job.rows)
    assert Keys.BATCH_RESULT not in at.session_state  # a partial batch is not kept as the finished one

    at.button(key=Keys.BATCH_RUN).click()  # the whole batch, ungated now
    _run(at)
    finish_batch(at)
    assert Keys.BATCH_JOB not in at.session_state and not at.get("progress")
    assert not any(c.value.startswith(("Partial batch", "Running")) for c in at.caption)
    paths = find_inputs(tmp_path / "set")
    expected = screen([(p.name, lambda p=p: load_volume(p)) for p in paths], load_detector(profile="mri_t1"))
    shown = at.dataframe[-1].value
    assert shown["file"].tolist() == expected.table["file"].tolist()
    assert shown["score"].tolist() == pytest.approx(expected.table["score"].tolist())
    kept = at.session_state[Keys.BATCH_RESULT]
    _run(at)  # another visit: the finished batch is kept, nothing runs
    assert at.session_state[Keys.BATCH_RESULT] is kept and Keys.BATCH_JOB not in at.session_state
    assert at.dataframe[-1].value["file"].tolist() == shown["file"].tolist()


def test_the_niivue_viewer_gets_the_scan_its_heatmap_and_mask_outline_without_rescoring(app, counted_scoring):
    """The NiiVue choice hands the component the scan on its own grid and affine, opening in the chosen
    window, and the heatmap and the mask's outline at tau as overlays; the page follows its crosshair."""
    import base64
    import gzip
    import json
    import re

    import nibabel as nib
    import numpy as np

    from core.masks import slice_outline
    from core.viewer_layers import heat_above
    from ui.analysis import _shared_results
    from ui.resources import demo_volume
    from ui.viewer import VIEWER_NIIVUE, VIEWER_SLICES

    def component_args() -> dict:
        (component,) = app.get("component_instance")
        return json.loads(component.proto.json_args)

    def nifti(data: str) -> nib.Nifti1Image:
        return nib.Nifti1Image.from_bytes(gzip.decompress(base64.b64decode(data)))

    _run(app)  # MNI152, 197 x 233 x 189 at 1 mm
    runs = len(counted_scoring)
    app.slider(key=Keys.TAU).set_value(0.5)  # low enough for a mask to outline
    app.radio(key=Keys.VIEWER).set_value(VIEWER_NIIVUE)
    _run(app)
    assert not [s for s in app.slider if s.key == Keys.SLICE]  # NiiVue scrolls by itself
    crosshair = next(c.value for c in app.caption if c.value.startswith("Crosshair on axial slice"))
    assert crosshair.startswith("Crosshair on axial slice 95 of 189 · voxels 1 x 1 x 1 mm")  # NiiVue opens there
    args = component_args()
    assert (args["view_mode"], args["settings"]["radiological"], args["settings"]["crosshair"]) == (
        "multiplanar", True, True)
    scan, volume = nifti(args["nifti_data"]), demo_volume("mni152_t1")
    np.testing.assert_array_equal(scan.affine, volume.affine)
    np.testing.assert_array_equal(np.asarray(scan.dataobj), volume.array)
    opens = next(c.value for c in app.caption if c.value.startswith("Opens at level"))
    level, width = (float(v) for v in re.search(r"level ([\d.]+), width ([\d.]+)", opens).groups())
    assert float(scan.header["cal_min"]) == pytest.approx(level - width / 2, abs=0.5)
    assert float(scan.header["cal_max"]) == pytest.approx(level + width / 2, abs=0.5)

    (result,) = [r for key, r in _shared_results().items() if key[0] == "demo:mni152_t1"]
    heat, outline = args["overlays"]
    assert (heat["colormap"], heat["opacity"]) == (app.selectbox(key=Keys.COLORMAP).value, 0.55)
    np.testing.assert_array_equal(np.asarray(nifti(heat["data"]).dataobj), heat_above(result.heatmap, 0.5))
    assert (outline["colormap"], outline["opacity"]) == ("green2cyan", 1.0)
    border = np.asarray(nifti(outline["data"]).dataobj)
    assert border.sum() > 0
    np.testing.assert_array_equal(border, slice_outline(result.mask_at(0.5)).astype(np.uint8))

    app.toggle(key=Keys.SHOW_HEATMAP).set_value(False)
    _run(app)
    assert [o["opacity"] for o in component_args()["overlays"]] == [0.0, 0.0]  # hidden, not dropped
    app.radio(key=Keys.VIEWER).set_value(VIEWER_SLICES)
    _run(app)
    assert app.slider(key=Keys.SLICE).value == 95  # the slice viewer opens where NiiVue's crosshair was
    assert len(counted_scoring) == runs  # switching viewers re-runs no model


def test_a_volume_too_large_to_send_to_niivue_falls_back_to_the_slice_viewer(app, monkeypatch):
    import ui.viewer
    from ui.viewer import VIEWER_NIIVUE

    monkeypatch.setattr(ui.viewer, "niivue_message_limit", lambda: 1_000_000)  # MNI152's layers: about 2.5 MB
    app.radio(key=Keys.VIEWER).set_value(VIEWER_NIIVUE)
    _run(app)
    assert any(w.value.startswith("This volume is too large for NiiVue here") for w in app.warning)
    assert not app.get("component_instance")
    assert app.slider(key=Keys.SLICE).max == 189  # the slice viewer, with its window selectbox once
