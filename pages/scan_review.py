"""Scan review: load a demo scan or an upload, score it once, read verdict and heatmap slice by slice."""

import streamlit as st

from core.demo import available_cases
from core.errors import InputError
from core.io import check_scorable
from core.profiles import DEFAULT_PROFILE
from core.render import apply_window, window_presets
from core.types import SAFEGEN_METHOD
from ui.analysis import explained_result, scan_result
from ui.resources import UPLOAD_TYPES, demo_volume, uploaded_volume
from ui.review import (
    apply_chart_pick,
    dicom_seg_download,
    explainer_choice,
    heatmap_controls,
    make_overlay,
    make_plane_overlay,
    mask_download,
    method_choice,
    niivue_overlays,
    panels,
    pixel_size_choice,
    profile_choice,
    slice_score_chart,
    summary_downloads,
    verdict,
)
from ui.router import through_the_router
from ui.state import SOURCE_DEMO, SOURCE_UPLOAD, Keys
from ui.study import require_screening_access
from ui.viewer import scan_views, volume_facts

through_the_router()  # before anything is drawn: a page run alone reruns through app.py
st.title("Scan review")
require_screening_access()  # once the server runs reader studies: admins only

cases = {case.key: case for case in available_cases()}
with st.sidebar:
    source = st.radio("Scan source", [SOURCE_DEMO, SOURCE_UPLOAD], key=Keys.SOURCE_KIND)

volume, scan_key, upload = None, None, None
if source == SOURCE_DEMO:
    key = st.selectbox(
        "Demo scan", list(cases), format_func=lambda k: cases[k].title, key=Keys.DEMO_CASE
    )
    st.caption(f"{cases[key].description} Source: {cases[key].provenance}.")
    volume, scan_key = demo_volume(key), f"demo:{key}"
else:
    upload = st.file_uploader(
        "NIfTI (.nii, .nii.gz), DICOM file (.dcm), zipped DICOM series (.zip), PNG, JPEG or InVesalius (.inv3)",
        type=[*UPLOAD_TYPES, "zip"],  # a zipped DICOM series too: one scan, read whole
        key=Keys.UPLOAD,
    )
    if upload is not None:
        try:
            volume, scan_key = uploaded_volume(upload), f"upload:{upload.file_id}"
            if not volume.spacing_known and not volume.is_3d:  # a picture: read at the size asked for
                if (pixel_mm := pixel_size_choice(Keys.UPLOAD_PIXEL_MM)) is not None:
                    volume, scan_key = volume.with_pixel_size(pixel_mm), f"{scan_key}|{pixel_mm:g} mm"
            check_scorable(volume)
        except InputError as error:
            volume = None
            st.error(f"**{upload.name}** cannot be used: {error}")

if volume is not None:
    volume_facts(volume)
    result = None
    method = method_choice()
    profile = profile_choice(volume) if method == SAFEGEN_METHOD else DEFAULT_PROFILE.name
    try:
        result = scan_result(scan_key, volume, shared=source == SOURCE_DEMO, method=method, profile=profile)
    except FileNotFoundError as error:
        st.error(f"The models are missing, so this scan is shown without scores: {error}")
    except ValueError as error:
        st.error(f"This scan could not be scored: {error}")

    if result is not None and method != SAFEGEN_METHOD:
        st.sidebar.caption("A baseline shows its own map; the explainers explain SAFEGEN's score.")
    elif result is not None:
        try:
            result = explained_result(scan_key, volume, result, explainer_choice(result), shared=source == SOURCE_DEMO)
        except (FileNotFoundError, ValueError) as error:
            st.error(f"This explainer is not available, the residual map is shown: {error}")

    if result is None:
        index = scan_views(volume, scan_key)
    else:
        show, tau, opacity, cmap = heatmap_controls(result, f"{scan_key}|{result.method}|{result.profile}")
        verdict(result, tau)
        apply_chart_pick(volume.n_slices)
        index = scan_views(
            volume, scan_key,
            overlay=make_overlay(result, volume, tau, opacity, cmap) if show else None,
            plane_overlay=make_plane_overlay(result, volume, tau, opacity, cmap) if show else None,
            niivue_overlays=lambda: niivue_overlays(result, volume, scan_key, tau, opacity, cmap, shown=show),
        )
        if volume.is_3d:
            slice_score_chart(result, tau, index)
        window = window_presets(volume)[st.session_state[Keys.WINDOW]]
        panels(result, volume, index, apply_window(volume.display_slice(index), window), tau, cmap)
        mask_download(result, volume, tau)
        dicom_seg_download(result, volume, tau, upload)
        summary_downloads(result, volume, tau, index, window, cmap, opacity)
