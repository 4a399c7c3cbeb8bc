"""The dashboard's pages under Streamlit's AppTest (no browser): state in, elements out."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.demo import available_cases
from ui.state import Keys

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def _run(at: AppTest) -> AppTest:
    at.run(timeout=60)
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture
def app():
    return _run(AppTest.from_file(APP, default_timeout=60))


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


def test_about_page_lists_the_real_data_sources():
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("pages/about.py")
    _run(at)
    assert at.title[0].value == "About SAFEGEN"
    table = at.dataframe[0].value
    assert "mni152" in set(table["name"])
    assert bool(table.loc[table["name"] == "mni152", "present"].iloc[0])
