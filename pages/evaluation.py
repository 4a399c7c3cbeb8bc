"""Evaluation: detection, localisation and calibration on the simulated-artifact benchmark."""

import streamlit as st

from ui.evaluation import (
    calibration_figure,
    choose_run,
    deletion_figure,
    grouped_bars,
    headline,
    roc_figure,
    where_safegen_loses,
)

st.title("Evaluation")
st.caption("Simulated artifacts with exact masks on real slices never used for training or calibration "
           "(`core/artifacts.py`). Read the README's honest summary: the committed models are weak detectors.")
source, tables = choose_run()
if tables is None:
    st.info("No evaluation here yet. Run `make evaluate` on the server (about 3 minutes), or press "
            "**Re-run on a small set** in the sidebar.", icon=":material/info:")
    st.stop()

headline(tables)
detection, localisation, calibration, baselines = st.tabs(
    ["Detection", "Localisation (explainers)", "Calibration", "Baselines"])
with detection:
    left, right = st.columns(2)
    left.plotly_chart(roc_figure(tables["scores"]), key="eval.roc")
    right.plotly_chart(grouped_bars(tables["per_kind_auroc"], "image AUROC", "Image AUROC per artifact kind"), key="eval.kind_auroc")
    st.dataframe(tables["summary"].round(3))
with localisation:
    if "explainer_summary" not in tables:
        st.info("This run evaluated no explainers (`evaluate --explainers all`).")
    else:
        st.dataframe(tables["explainer_summary"].round(3))
        left, right = st.columns(2)
        left.plotly_chart(grouped_bars(tables["explainer_dice_per_kind"], "Dice at τ", "Dice at τ per kind and explainer"), key="eval.dice_kind")
        right.plotly_chart(deletion_figure(tables["explainer_deletion"]), key="eval.deletion")
with calibration:
    st.plotly_chart(calibration_figure(tables["false_alarms"], float(tables["context"]["tau"])), key="eval.calib")
    st.caption("τ is the conformal threshold that flags at most 5 % of clean calibration slices; the test "
               "curve shows how that holds on clean real slices the calibration never saw.")
with baselines:
    if "methods" not in tables:
        st.info("No comparison with the baselines in this run: `python -m core.cli evaluate --methods all "
                "--out out/evaluation` (about 3 minutes; `make evaluate` runs it).")
    else:
        st.dataframe(tables["methods"].round(3), key="eval.methods")
        if "methods_subset" in tables:
            st.caption("A slow method scored only the small subset (one artifact image per kind and severity, as "
                       "many clean); every method on exactly those images:")
            st.dataframe(tables["methods_subset"].round(3), key="eval.methods_subset")
        st.plotly_chart(grouped_bars(tables["methods_auroc_per_kind"], "image AUROC",
                                     "Image AUROC per artifact kind and method"), key="eval.methods_kind")
        losses = where_safegen_loses(tables["methods_auroc_per_kind"])
        if losses:
            st.markdown("Where a baseline beats SAFEGEN (image AUROC, by more than 0.05): " + "; ".join(losses))
        st.caption("Every method is fitted on the same real train slices, thresholded to flag at most 5 % of the "
                   "same clean calibration slices, and scored on the same benchmark in one run. What each baseline "
                   "changes from its paper: out/evaluation/methods.md and the README.")
