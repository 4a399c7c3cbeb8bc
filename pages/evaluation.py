"""Evaluation: the detector on the realistic benchmark; the seed's score, explainers and baselines on the simulated-artifact one."""

import streamlit as st

from ui.evaluation import (
    REALISTIC,
    by_group_bars,
    calibration_figure,
    choose_run,
    deletion_figure,
    grouped_bars,
    headline,
    load_run,
    readme_figure,
    realistic_headline,
    roc_figure,
    run_dir,
    unseen_volume_line,
    where_safegen_loses,
)
from ui.router import through_the_router
from ui.study import require_screening_access
from ui.tables import show_table

through_the_router()  # before anything is drawn: a page run alone reruns through app.py
st.title("Evaluation")
require_screening_access()  # once the server runs reader studies: admins only
st.header("The detector on the realistic benchmark")
st.caption("Real slices under normal variation (field of view, rotation, bias, contrast, noise, 8-bit or float files), "
           "half with one simulated artifact and its exact mask; from the training subjects' test slices and from a "
           "held-out subject no model or threshold ever saw (`core/benchmark/realistic.py`). The head is well short "
           "of its targets: read the README's section on the detector.")
realistic = load_run(REALISTIC, run_dir(REALISTIC))
if realistic is None:
    st.info("No realistic-benchmark evaluation here yet: `make evaluate` (or `python -m workflows.cli "
            "make-realistic-benchmark` then `python -m workflows.cli evaluate-realistic`; "
            f"{readme_figure('python -m workflows.cli evaluate-realistic --baselines spectral_local')}).",
            icon=":material/info:")
else:
    realistic_headline(realistic)
    overall_tab, kinds_tab, sources_tab = st.tabs(["All methods", "Per kind and severity", "Seen vs held-out subject"])
    with overall_tab:
        show_table(realistic["overall"].round(3), key="eval.realistic_overall", hide_index=True)
    with kinds_tab:
        st.plotly_chart(by_group_bars(realistic["by_kind"], "kind", "Image AUROC per artifact kind"),
                        key="eval.realistic_kind")
        st.plotly_chart(by_group_bars(realistic["by_severity"], "severity", "Image AUROC per severity"),
                        key="eval.realistic_severity")
    with sources_tab:
        show_table(realistic["by_source"].round(3), key="eval.realistic_source", hide_index=True)
        if "unseen_volumes" in realistic:
            st.markdown(unseen_volume_line(realistic["unseen_volumes"]))

st.header("The seed's reconstruction score on the simulated-artifact benchmark")
st.caption("S_diffusion, E_AE and their α-combination on the 128 grid, with their explainers, on simulated artifacts "
           "with exact masks on real slices never used for training or calibration (`core/artifacts.py`); these "
           "are the head's input channels, not the dashboard's verdict.")
source, tables = choose_run()
if tables is None:
    st.info(f"No evaluation here yet. Run `make evaluate` on the server ({readme_figure('make evaluate')}), or "
            "press **Re-run on a small set** in the sidebar.", icon=":material/info:")
    st.stop()

headline(tables)
detection, localisation, calibration, baselines = st.tabs(
    ["Detection", "Localisation (explainers)", "Calibration", "Baselines"])
with detection:
    left, right = st.columns(2)
    left.plotly_chart(roc_figure(tables["scores"]), key="eval.roc")
    right.plotly_chart(grouped_bars(tables["per_kind_auroc"], "image AUROC", "Image AUROC per artifact kind"), key="eval.kind_auroc")
    show_table(tables["summary"].round(3))
with localisation:
    if "explainer_summary" not in tables:
        st.info("This run evaluated no explainers (`evaluate --explainers all`).")
    else:
        show_table(tables["explainer_summary"].round(3))
        left, right = st.columns(2)
        left.plotly_chart(grouped_bars(tables["explainer_dice_per_kind"], "Dice at τ", "Dice at τ per kind and explainer"), key="eval.dice_kind")
        right.plotly_chart(deletion_figure(tables["explainer_deletion"]), key="eval.deletion")
with calibration:
    st.plotly_chart(calibration_figure(tables["false_alarms"], float(tables["context"]["tau"])), key="eval.calib")
    st.caption("τ is the conformal threshold that flags at most 5 % of clean calibration slices; the test "
               "curve shows how that holds on clean real slices the calibration never saw.")
with baselines:
    if "methods" not in tables:
        st.info("No comparison with the baselines in this run: `python -m workflows.cli evaluate --methods all "
                f"--out out/evaluation` (`make evaluate` runs it; {readme_figure('make evaluate')}).")
    else:
        show_table(tables["methods"].round(3), key="eval.methods")
        if "methods_subset" in tables:
            st.caption("A slow method scored only the small subset (one artifact image per kind and severity, as "
                       "many clean); every method on exactly those images:")
            show_table(tables["methods_subset"].round(3), key="eval.methods_subset")
        st.plotly_chart(grouped_bars(tables["methods_auroc_per_kind"], "image AUROC",
                                     "Image AUROC per artifact kind and method"), key="eval.methods_kind")
        losses = where_safegen_loses(tables["methods_auroc_per_kind"])
        if losses:
            st.markdown("Where a baseline beats SAFEGEN (image AUROC, by more than 0.05): " + "; ".join(losses))
        st.caption("Every method is fitted on the same real train slices, thresholded to flag at most 5 % of the "
                   "same clean calibration slices, and scored on the same benchmark in one run. What each baseline "
                   "changes from its paper: out/evaluation/methods.md and the README.")
