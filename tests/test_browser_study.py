"""Two readers read a study in two browsers, one draws a mask on the canvas, the admin exports it.

Headless Debian Chromium against a real `streamlit run` (see conftest.py). The study is set up
through the repository (the admin page's own test is in test_study_pages.py); everything a
reader does happens by mouse and keyboard in the browser.
"""

import gzip
import re
import zipfile

import nibabel as nib
import numpy as np
import pytest

from tests.browser_helpers import answer_button, choose, pick, progress, save_and_see, settled, sign_in


@pytest.fixture(scope="module")
def pilot_study(server_data):
    from pydicom.data import get_testdata_file

    from db.migrate import upgrade
    from db.models import Arm, Role
    from db.repository import create_account
    from db.session import make_engine, make_session_factory, session_scope
    from workflows.studies import create_study_from_files

    engine = make_engine(server_data["db_url"])
    upgrade(engine)
    with session_scope(make_session_factory(engine)) as s:
        admin = create_account(s, "chief", "chief-password", Role.ADMIN)
        ann, bob = create_account(s, "ann", "ann-password"), create_account(s, "bob", "bob-password")
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
    progress(ann, "0 of 1 cases done")
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
    save_and_see(ann, "1 of 1 cases done")
    ann.screenshot(path=str(artifacts_dir / "study_reading_ann.png"), full_page=True)
    context.close()

    context, bob = sign_in(browser, streamlit_server, "Reading", "bob", "bob-password")
    progress(bob, "0 of 1 cases done")
    assert bob.get_by_text("How useful is the heatmap").count() == 0  # the blinded arm
    _answer(bob, "realism", "2")
    _answer(bob, "Is there an artifact", "no")
    _answer(bob, "actionable", "2")
    save_and_see(bob, "1 of 1 cases done")
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


def test_a_reload_mid_case_keeps_the_reader_signed_in_and_their_unsaved_answers(browser, streamlit_server,
                                                                                server_data, artifacts_dir):
    from playwright.sync_api import expect
    from pydicom.data import get_testdata_file

    from db.migrate import upgrade
    from db.models import Arm, Role
    from db.repository import create_account
    from db.session import make_engine, make_session_factory, session_scope
    from workflows.studies import create_study_from_files

    engine = make_engine(server_data["db_url"])
    upgrade(engine)
    with session_scope(make_session_factory(engine)) as s:
        admin = create_account(s, "reload-admin", "reload-admin-password", Role.ADMIN)
        fay = create_account(s, "fay", "fay-password")
        create_study_from_files(s, admin, "Reload", [get_testdata_file("CT_small.dcm")], {fay.id: Arm.UNAIDED},
                                studies_dir=server_data["studies_dir"])
    engine.dispose()
    context, fay = sign_in(browser, streamlit_server, "Reading", "fay", "fay-password")
    progress(fay, "0 of 1 cases done")
    _answer(fay, "realism", "2")
    _answer(fay, "Is there an artifact", "yes")
    _wait_for_draft(server_data["db_url"], "fay", {"realism": 2, "artifact_present": 1})
    fay.reload()  # F5 in the middle of the case
    fay.get_by_text("Signed in as fay").wait_for()  # no sign-in form: the session cookie
    fay.get_by_text("Restored the answers and marks you had not saved yet").wait_for()
    settled(fay)
    chosen = answer_button(fay, "realism", 1).and_(fay.locator("[data-testid='stBaseButton-primary']"))
    chosen.wait_for()  # "2" is still chosen (the restored run may land after the page settled once)
    group = fay.get_by_role("radiogroup", name=re.compile("Is there an artifact"))
    # "yes" is restored too (unanswered, the question has no choice: index None). Like the rating, it may
    # be drawn a moment after the page settled once, and while Streamlit redraws, the group can be in the
    # page twice (seen in two full runs: unchecked at the first look; then two checked copies), so wait
    # until a checked "yes" is there and no "no" is checked.
    expect(group.get_by_role("radio", name="yes", checked=True)).not_to_have_count(0, timeout=30_000)
    expect(group.get_by_role("radio", name="no", checked=True)).to_have_count(0)
    fay.screenshot(path=str(artifacts_dir / "study_reading_after_reload.png"), full_page=True)
    for page_name in ("Batch screening", "Scan review"):  # a reader cannot score the study's cases elsewhere
        fay.get_by_role("link", name=page_name).click()
        fay.get_by_text("This server runs reader studies: scoring scans is for study admins.").wait_for()
        fay.get_by_text("Signed in as fay").wait_for()  # signed in, and still refused
        settled(fay)
        assert fay.get_by_role("button", name=re.compile("^Score")).count() == 0
    fay.get_by_role("link", name="Reading").click()
    fay.get_by_role("heading", name="Reading", exact=True).wait_for()
    settled(fay)  # a click on the last page's Sign out button, while Reading is drawn, is lost
    fay.get_by_role("button", name="Sign out").click()
    fay.get_by_role("button", name="Sign in").wait_for()
    settled(fay)
    fay.wait_for_timeout(1000)  # the frame that deletes the cookie loads after the run
    fay.reload()  # signed out: the cookie is gone
    fay.get_by_role("button", name="Sign in").wait_for()
    assert fay.get_by_text("Signed in as fay").count() == 0
    context.close()


def _wait_for_draft(url: str, username: str, answers: dict, timeout: float = 20.0) -> None:
    """Wait until the reader's autosaved draft holds ``answers`` (the radio's rerun lands a moment after the click)."""
    import time

    from sqlalchemy import select

    from db.models import Reader
    from db.repository import load_draft, reading_list, studies_of
    from db.session import make_engine, make_session_factory, session_scope

    engine = make_engine(url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            with session_scope(make_session_factory(engine)) as s:
                reader = s.scalar(select(Reader).where(Reader.username == username))
                study = studies_of(s, reader)[0]
                case = reading_list(s, reader, study.id)[0][0]
                draft = load_draft(s, reader, case.id)
            if draft is not None and draft[0] == answers:
                return
            assert time.monotonic() < deadline, f"no draft {answers} after {timeout} s: {draft and draft[0]}"
            time.sleep(0.2)
    finally:
        engine.dispose()


def test_the_mouse_wheel_over_niivue_moves_the_drawing_canvas_to_its_slice(browser, streamlit_server, server_data,
                                                                        artifacts_dir, tmp_path):
    from db.migrate import upgrade
    from db.models import Arm, Role
    from db.repository import create_account
    from db.session import make_engine, make_session_factory, session_scope
    from workflows.studies import create_study_from_files

    z = np.arange(40)[None, None, :]
    scan = (np.indices((64, 64))[0][..., None] * 2 + 5 * z).astype(np.float32)  # each slice unlike the next
    nib.save(nib.Nifti1Image(scan, np.diag([2.0, 2.0, 3.0, 1.0])), tmp_path / "volume.nii.gz")
    engine = make_engine(server_data["db_url"])
    upgrade(engine)
    with session_scope(make_session_factory(engine)) as s:
        admin = create_account(s, "niivue-admin", "niivue-admin-password", Role.ADMIN)
        gus = create_account(s, "gus", "gus-password")
        create_study_from_files(s, admin, "Volume", [tmp_path / "volume.nii.gz"], {gus.id: Arm.UNAIDED},
                                studies_dir=server_data["studies_dir"])
    engine.dispose()
    context, gus = sign_in(browser, streamlit_server, "Reading", "gus", "gus-password")
    progress(gus, "0 of 1 cases done")
    gus.get_by_text("NiiVue (scroll, drag window/level, zoom)").click()
    frame = gus.frame_locator("iframe[title*='niivue']")
    frame.get_by_text("matrix size: 64 x 64 x 40").wait_for(timeout=120_000)  # the volume has loaded
    caption = gus.get_by_text(re.compile(r"case-001 · slice \d+ of 40 \(at NiiVue's crosshair\)"))
    assert "slice 21 of 40" in caption.inner_text()  # NiiVue opens at the centre voxel
    settled(gus)
    canvas = frame.locator("canvas")
    canvas.scroll_into_view_if_needed()
    gus.screenshot(path=str(artifacts_dir / "study_reading_niivue.png"), full_page=True)
    box = canvas.bounding_box()
    gus.mouse.move(box["x"] + 0.23 * box["width"], box["y"] + 0.73 * box["height"])  # the axial view, bottom left
    for _ in range(5):
        gus.mouse.wheel(0, -100)
        gus.wait_for_timeout(150)
    gus.wait_for_function("() => !document.body.innerText.includes('slice 21 of 40 (at NiiVue')")
    settled(gus)
    assert re.search(r"slice (\d+) of 40", caption.inner_text()).group(1) != "21"
    gus.screenshot(path=str(artifacts_dir / "study_reading_niivue_scrolled.png"), full_page=True)
    context.close()


@pytest.mark.parametrize("case", ["slice", "volume"])
def test_the_whole_drawing_canvas_is_on_screen_in_a_1440_by_900_window(browser, streamlit_server, server_data,
                                                                       artifacts_dir, tmp_path, case):
    """A laptop window (1440 x 900): the reader draws without scrolling, on a 2-D case and on a 3-D case
    read with the slice slider (its slider and window sit above the canvas)."""
    from db.migrate import upgrade
    from db.models import Arm, Role
    from db.repository import create_account
    from db.session import make_engine, make_session_factory, session_scope
    from workflows.studies import create_study_from_files

    if case == "slice":
        from pydicom.data import get_testdata_file

        path = get_testdata_file("CT_small.dcm")  # 128 x 128
    else:
        path = tmp_path / "volume.nii.gz"  # 64 x 64 x 20, 2 x 2 x 3 mm
        scan = (np.indices((64, 64))[0][..., None] * 2 + 5 * np.arange(20)[None, None, :]).astype(np.float32)
        nib.save(nib.Nifti1Image(scan, np.diag([2.0, 2.0, 3.0, 1.0])), path)
    engine = make_engine(server_data["db_url"])
    upgrade(engine)
    with session_scope(make_session_factory(engine)) as s:
        admin = create_account(s, f"fit-admin-{case}", "fit-admin-password", Role.ADMIN)
        reader = create_account(s, f"fit-{case}", "fit-password")
        create_study_from_files(s, admin, f"Fit {case}", [path], {reader.id: Arm.AI},
                                studies_dir=server_data["studies_dir"])
    engine.dispose()
    context, page = sign_in(browser, streamlit_server, "Reading", f"fit-{case}", "fit-password",
                            viewport=(1440, 900))
    progress(page, "0 of 1 cases done")
    settled(page)
    page.evaluate("window.scrollTo(0, 0)")
    box = page.locator("canvas").last.bounding_box()  # the drawing canvas (the last one on the page)
    page.screenshot(path=str(artifacts_dir / f"study_reading_1440x900_{case}.png"))
    context.close()
    print(f"\ncanvas of the {case} case at 1440 x 900: top {box['y']:.0f} px, bottom {box['y'] + box['height']:.0f} px")
    assert box["width"] >= 400, box  # still a canvas to draw on
    assert box["y"] >= 0 and box["y"] + box["height"] <= 900, box  # top to bottom on screen, no scrolling

