"""Two readers read a study in two browsers, one draws a mask on the canvas, the admin exports it.

Headless Debian Chromium against a real `streamlit run` (see conftest.py). The study is set up
through the repository (the admin page's own test is in test_study_pages.py); everything a
reader does happens by mouse and keyboard in the browser.
"""

import io
import re
import zipfile
import gzip

import nibabel as nib
import numpy as np
import pytest

from tests.browser_helpers import choose, pick, sign_in


@pytest.fixture(scope="module")
def pilot_study(server_data):
    from pydicom.data import get_testdata_file

    from db.migrate import upgrade
    from db.models import Arm, Role
    from db.repository import create_reader
    from db.session import make_engine, make_session_factory, session_scope
    from db.studies import create_study_from_files

    engine = make_engine(server_data["db_url"])
    upgrade(engine)
    with session_scope(make_session_factory(engine)) as s:
        admin = create_reader(s, "chief", "chief-password", Role.ADMIN)
        ann, bob = create_reader(s, "ann", "ann-password"), create_reader(s, "bob", "bob-password")
        create_study_from_files(s, admin, "Browser pilot", [get_testdata_file("CT_small.dcm")],
                                {ann.id: Arm.AI, bob.id: Arm.UNAIDED}, studies_dir=server_data["studies_dir"])
    engine.dispose()


def _answer(page, question: str, choice: str) -> None:
    """A yes/no radio by its text, or a Likert button by the question's key (buttons carry it as a class)."""
    if choice in ("yes", "no"):
        group = page.get_by_role("radiogroup", name=re.compile(re.escape(question)))
        group.get_by_text(choice, exact=True).click()
        return
    choose(page, question, int(choice) - 1)


def test_two_readers_rate_one_draws_and_the_admin_exports_the_mask(browser, streamlit_server, pilot_study,
                                                                  artifacts_dir, tmp_path):
    context, ann = sign_in(browser, streamlit_server, "Reading", "ann", "ann-password")
    ann.get_by_text("0 of 1 cases done").wait_for()
    canvas = ann.locator("canvas").last
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    y = box["y"] + 0.5 * box["height"]
    ann.mouse.move(box["x"] + 0.2 * box["width"], y)
    ann.mouse.down()
    for step in range(1, 21):
        ann.mouse.move(box["x"] + (0.2 + 0.01 * step) * box["width"], y)
    ann.mouse.up()
    ann.get_by_text(re.compile(r"marked pixels on this slice: [1-9]\d*")).wait_for()
    _answer(ann, "realism", "4")
    _answer(ann, "Is there an artifact", "yes")
    _answer(ann, "heatmap_useful", "5")
    _answer(ann, "actionable", "3")
    ann.get_by_role("button", name="Save and next").click()
    ann.get_by_text("1 of 1 cases done").wait_for()
    ann.get_by_role("button", name="Save and next").wait_for()  # the page has settled after its rerun
    ann.wait_for_timeout(1000)
    ann.screenshot(path=str(artifacts_dir / "study_reading_ann.png"), full_page=True)
    context.close()

    context, bob = sign_in(browser, streamlit_server, "Reading", "bob", "bob-password")
    bob.get_by_text("0 of 1 cases done").wait_for()
    assert bob.get_by_text("How useful is the heatmap").count() == 0  # the blinded arm
    _answer(bob, "realism", "2")
    _answer(bob, "Is there an artifact", "no")
    _answer(bob, "actionable", "2")
    bob.get_by_role("button", name="Save and next").click()
    bob.get_by_text("1 of 1 cases done").wait_for()
    context.close()

    context, chief = sign_in(browser, streamlit_server, "Study admin", "chief", "chief-password")
    pick(chief, "Study", "Browser pilot")  # the server may hold other tests' studies
    chief.get_by_role("button", name="Prepare the export").click()
    with chief.expect_download() as info:
        chief.get_by_role("button", name="Download the export (.zip)").click()
    target = tmp_path / info.value.suggested_filename
    info.value.save_as(target)
    chief.screenshot(path=str(artifacts_dir / "study_admin_export.png"), full_page=True)
    context.close()
    with zipfile.ZipFile(target) as archive:
        assert "masks/case-001_bob.nii.gz" not in archive.namelist()
        answers = archive.read("answers.csv").decode()
        mask = nib.Nifti1Image.from_bytes(gzip.decompress(archive.read("masks/case-001_ann.nii.gz")))
    assert answers.count(",ann,") == 4 and answers.count(",bob,") == 3
    pixels = np.argwhere(np.asarray(mask.dataobj) > 0)
    assert len(pixels) > 20
    # The stroke ran along the canvas's middle row from 20 % to 40 % of its width: on the 128 x 128
    # slice, around row 64 and columns 26 to 51.
    rows, cols = pixels[:, 0], pixels[:, 1]
    assert abs(rows.mean() - 63.5) < 4 and cols.min() >= 20 and cols.max() <= 58 and cols.max() - cols.min() > 15
