"""The reader-study pages under AppTest: first admin, accounts, a study, two readers in two arms, results, export.

The drawing canvas is a custom component that AppTest cannot drive: the mask a reader would draw
is put into the page's session state (the browser test draws for real).
"""

import gzip
import io
import json
import zipfile

import nibabel as nib
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from tests.test_app import APP, shown_labels
from ui.state import BATCH_FOLDER, Keys


SETUP_TOKEN = "test-setup-token"
INSTRUCTIONS = "Rate each case. ![logo](http://evil.example/x.png)"  # a markdown image: fetched on every view


@pytest.fixture
def study_env(monkeypatch, tmp_path):
    monkeypatch.setenv("SAFEGEN_DB_URL", f"sqlite:///{tmp_path / 'study.db'}")
    monkeypatch.setenv("SAFEGEN_STUDIES_DIR", str(tmp_path / "studies"))
    monkeypatch.setenv("SAFEGEN_SETUP_TOKEN", SETUP_TOKEN)  # else a random one, printed to the server's log
    return tmp_path


def _run(at: AppTest) -> AppTest:
    at.run(timeout=120)
    assert not at.exception, [e.value for e in at.exception]
    return at


def _button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def _answer(at: AppTest, answers: dict) -> AppTest:
    """Answer the reading page's questions: Likert / choice by their buttons, yes-no by its radio."""
    for key, value in answers.items():
        radios = [r for r in at.radio if r.key.endswith(f".{key}")]
        if radios:
            radios[0].set_value(value)
            continue
        buttons = [b for b in at.button if b.key and f".{key}.button." in b.key]
        assert buttons, f"no widget for {key}"
        next(b for b in buttons if b.label.split(" ")[0] == str(value)).click()
        _run(at)
    return at


def _questions(at: AppTest) -> list[str]:
    """The question keys on the reading page, in order."""
    keys = [r.key for r in at.radio] + [b.key.split(".button.")[0] for b in at.button if b.key and ".button." in b.key]
    return sorted({k.rsplit(".", 1)[-1] for k in keys})


def _table(at: AppTest, column: str, without: str | None = None):
    """The one dataframe on the page with ``column`` (and without ``without``)."""
    found = [d.value for d in at.dataframe if column in d.value.columns and (without is None or without not in d.value)]
    assert len(found) == 1, [list(d.value.columns) for d in at.dataframe]
    return found[0]


def _sign_in(at: AppTest, username: str, password: str, token: str | None = None) -> AppTest:
    """Fill the sign-in form (on an empty database also the setup token) and submit it."""
    if token is not None:
        at.text_input(key=Keys.STUDY_SETUP_TOKEN).input(token)
    at.text_input(key=Keys.STUDY_USERNAME).input(username)
    at.text_input(key=Keys.STUDY_PASSWORD).input(password)
    at.button[0].click()
    return _run(at)


def _signed_in(page: str, username: str, password: str, token: str | None = None) -> AppTest:
    at = _run(AppTest.from_file(APP, default_timeout=120))
    at.switch_page(page)
    return _sign_in(_run(at), username, password, token)


def test_a_study_is_created_read_in_two_arms_and_summarised(study_env):
    from sqlalchemy import select

    from db.models import CaseRead, Reader
    from db.repository import read_masks
    from ui.study import session

    admin = _signed_in("pages/study_admin.py", "admin", "admin-pass-1", SETUP_TOKEN)  # an empty database: the first admin
    assert "Signed in as **admin** (admin)" in [c.value for c in admin.caption]
    for name in ("ann", "bob"):
        admin.text_input(key=Keys.ADMIN_NEW_USERNAME).input(name)
        admin.text_input(key=Keys.ADMIN_NEW_PASSWORD).input(f"{name}-password")
        _button(admin, "Add account").click()
        _run(admin)
    admin.text_input(key=Keys.ADMIN_TITLE).input("Pilot")
    admin.text_area(key=Keys.ADMIN_INSTRUCTIONS).input(INSTRUCTIONS)
    admin.text_input(key=Keys.ADMIN_FOLDER).input(str(study_env / "no-such-folder"))
    _button(admin, "Create study").click()
    _run(admin)
    assert "is not a folder on the server" in admin.error[0].value  # refused; nothing was created
    admin.text_input(key=Keys.ADMIN_FOLDER).input("")
    admin.multiselect(key=Keys.ADMIN_DEMOS).select("ct_small")
    readers = admin.multiselect(key=Keys.ADMIN_READERS)
    assert list(readers.options) == ["ann", "bob"]
    readers.select("ann").select("bob")  # alternate arms: ann sees the AI heatmap, bob does not
    _button(admin, "Create study").click()
    _run(admin)
    assert "Study 'Pilot' created with 1 case(s)." in [s.value for s in admin.success]
    assert admin.selectbox(key=Keys.ADMIN_STUDY).options == ["Pilot"]  # the Studies tab lists it at once

    ann = _signed_in("pages/reading.py", "ann", "ann-password")
    shown = [m.value for m in ann.markdown if "Rate each case" in m.value]  # as typed: no image fetched, no link
    assert shown == ["Rate each case\\. \\!\\[logo\\]\\(http\\://evil\\.example/x\\.png\\)"]
    assert [t.label for t in ann.toggle] == ["Show SAFEGEN heatmap"]
    case_id = ann.selectbox(key=Keys.STUDY_CASE).value
    assert _questions(ann) == ["actionable", "artifact_present", "heatmap_useful", "realism"]
    _answer(ann, {"realism": 4, "heatmap_useful": 5, "actionable": 3, "artifact_present": "yes"})
    drawn = np.zeros((128, 128), bool)
    drawn[10:20, 30:50] = True
    ann.session_state[Keys.STUDY_MASKS] = {(case_id, "ai", 0): drawn}
    _button(ann, "Save and next").click()
    _run(ann)
    assert ann.get("progress")[0].proto.text == "1 of 1 cases done"

    bob = _signed_in("pages/reading.py", "bob", "bob-password")
    assert not bob.toggle  # the blinded arm has no heatmap switch ...
    assert _questions(bob) == ["actionable", "artifact_present", "realism"]  # ... nor its question
    _answer(bob, {"realism": 2, "artifact_present": "no", "actionable": 2})
    _button(bob, "Save and next").click()
    _run(bob)

    with session() as s:
        reads = {s.get(Reader, r.reader_id).username: r for r in s.scalars(select(CaseRead))}
        assert {a.question: a.value_int for a in reads["ann"].answers} == {
            "realism": 4, "heatmap_useful": 5, "actionable": 3, "artifact_present": 1}
        assert np.array_equal(read_masks(reads["ann"])[0], drawn) and read_masks(reads["bob"]) == {}
        assert reads["ann"].submitted_at is not None and reads["ann"].seconds_spent >= 0

    results = _signed_in("pages/study_results.py", "admin", "admin-pass-1")
    metrics = {m.label: m.value for m in results.metric}
    assert metrics["Mean heatmap usefulness (1-5)"] == "5.00"
    summary = _table(results, "answers")
    assert summary.loc["realism", "mean"] == 3.0 and summary.loc["realism", "answers"] == 2
    questions = shown_labels(next(d for d in results.dataframe if "q25" in d.value.columns))
    assert (questions["_pos:0"], questions["q25"], questions["n_5"]) == ("Question", "25th percentile", "n(5)")
    agreement = next(d for d in results.dataframe if "icc_2_1" in d.value.columns)  # the data keeps the names ...
    assert [shown_labels(agreement)[c] for c in ("kappa_quadratic", "krippendorff_alpha_ordinal", "icc_2_1")] == [
        "Cohen's κ (quadratic)", "Krippendorff's α (ordinal)", "ICC(2,1)"]  # ... the reader sees these
    between = _table(results, "reader_a")  # ann drew, bob left the case empty: Dice 0
    assert between[["reader_a", "reader_b"]].values.tolist() == [["ann", "bob"]] and between["dice"].tolist() == [0.0]
    against = _table(results, "dice", without="reader_a").set_index("reader")["dice"]  # against SAFEGEN's mask at tau
    assert set(against.index) == {"ann", "bob"} and 0.0 <= against["ann"] <= 1.0

    admin = _signed_in("pages/study_admin.py", "admin", "admin-pass-1")
    _button(admin, "Prepare the export (answers CSV, NIfTI and DICOM-SEG masks, summary)").click()
    _run(admin)
    _, payload = admin.session_state[Keys.ADMIN_EXPORT_ZIP]
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        names = set(archive.namelist())
        assert {"answers.csv", "summary.json", "masks/case-001_ann.nii.gz"} <= names
        mask = nib.Nifti1Image.from_bytes(gzip.decompress(archive.read("masks/case-001_ann.nii.gz")))
    assert int(np.asarray(mask.dataobj).sum()) == int(drawn.sum())


def test_readers_cannot_open_the_admin_page_and_wrong_passwords_are_refused(study_env):
    from db.models import Role
    from db.repository import create_account
    from ui.study import session

    with session() as s:
        create_account(s, "admin", "admin-pass-1", Role.ADMIN)
        create_account(s, "ann", "ann-password")
    wrong = _signed_in("pages/reading.py", "ann", "not-her-password")
    assert [e.value for e in wrong.error] == ["Unknown user name or wrong password."]
    ann = _signed_in("pages/study_admin.py", "ann", "ann-password")
    assert [e.value for e in ann.error] == ["Only a study admin can open this page."]
    reading = _signed_in("pages/reading.py", "ann", "ann-password")
    assert "not a reader of any study" in reading.info[0].value


def test_an_anonymous_visitor_cannot_make_the_first_admin_without_the_servers_setup_token(study_env):
    from sqlalchemy import func, select

    from db.models import Reader
    from ui.study import session

    at = _signed_in("pages/reading.py", "mallory", "mallory-password", token="guessed-token")
    assert [e.value for e in at.error] == [
        "Wrong setup token: it is printed in the log of the server that runs the dashboard."]
    at = _signed_in("pages/reading.py", "mallory", "mallory-password")  # no token at all
    assert at.error and "Wrong setup token" in at.error[0].value
    with session() as s:
        assert s.scalar(select(func.count(Reader.id))) == 0
    admin = _signed_in("pages/reading.py", "chief", "password", SETUP_TOKEN)  # the token, a weak password
    assert "too easy to guess" in admin.error[0].value
    admin = _signed_in("pages/reading.py", "chief", "chief-password", SETUP_TOKEN)
    assert "Signed in as **chief** (admin)" in [c.value for c in admin.caption]
    late = _signed_in("pages/reading.py", "mallory", "mallory-password")  # accounts exist: a sign-in form
    assert [e.value for e in late.error] == ["Unknown user name or wrong password."]


def test_one_browser_session_is_throttled_after_five_failed_sign_ins_whatever_the_names(study_env):
    from db.repository import FREE_FAILURES, create_account
    from ui.study import session

    with session() as s:
        create_account(s, "ann", "ann-password")
    at = _run(AppTest.from_file(APP, default_timeout=120))
    at.switch_page("pages/reading.py")
    _run(at)
    for i in range(FREE_FAILURES):  # a different name each time: no name reaches its own lock-out
        assert [e.value for e in _sign_in(at, f"guess{i}", "not-a-password").error] == [
            "Unknown user name or wrong password."]
    refused = _sign_in(at, "ann", "ann-password")
    assert len(refused.error) == 1 and refused.error[0].value.startswith("Too many failed sign-ins in this browser")
    assert "Signed in as" not in " ".join(c.value for c in refused.caption)
    fresh = _signed_in("pages/reading.py", "ann", "ann-password")  # another browser session is not held up
    assert "Signed in as **ann** (reader)" in [c.value for c in fresh.caption]


def test_study_text_is_shown_as_typed_never_as_a_remote_image_link_or_html():
    from ui.study import plain_markdown

    text = "Rate ![x](http://evil.example/a.png) [here](http://x.example) <img src=x> :red[hi]\nline 2"
    assert plain_markdown(text) == ("Rate \\!\\[x\\]\\(http\\://evil\\.example/a\\.png\\) \\[here\\]\\(http\\://x\\.example\\) "
                                    "\\<img src=x\\> \\:red\\[hi\\]  \nline 2")


@pytest.mark.parametrize("page", ["pages/scan_review.py", "pages/batch_screening.py", "pages/evaluation.py"])
def test_once_a_server_runs_studies_the_screening_pages_are_for_signed_in_admins_only(study_env, page):
    from db.models import Role
    from db.repository import create_account
    from ui.study import session

    scores_on_arrival = page == "pages/scan_review.py"  # it scores its demo scan at once (30 s or more): not here
    if not scores_on_arrival:
        demo = _run(AppTest.from_file(APP, default_timeout=120))
        demo.switch_page(page)
        assert not any(t.key == Keys.STUDY_USERNAME for t in _run(demo).text_input)  # no accounts (a demo): open
    with session() as s:
        create_account(s, "chief", "chief-password", Role.ADMIN)
        create_account(s, "ann", "ann-password")
    anonymous = _run(AppTest.from_file(APP, default_timeout=120))
    anonymous.switch_page(page)
    _run(anonymous)
    assert [t.key for t in anonymous.text_input] == [Keys.STUDY_USERNAME, Keys.STUDY_PASSWORD]  # only the form
    assert not anonymous.button or [b.label for b in anonymous.button] == ["Sign in"]
    reader = _signed_in(page, "ann", "ann-password")
    assert [e.value for e in reader.error] == ["This server runs reader studies: scoring scans is for study admins. "
                                               "Your studies are on the Reading page."]
    if not scores_on_arrival:
        admin = _signed_in(page, "chief", "chief-password")
        assert not admin.error and "Signed in as **chief** (admin)" in [c.value for c in admin.caption]


def test_batch_screening_reads_only_the_folders_the_server_shares(study_env, monkeypatch, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    monkeypatch.setenv("SAFEGEN_DATA_ROOTS", str(study_env))  # this test's folder only
    at = _run(AppTest.from_file(APP, default_timeout=120))
    at.switch_page("pages/batch_screening.py")
    _run(at)
    at.radio(key=Keys.BATCH_SOURCE).set_value(BATCH_FOLDER)
    _run(at)
    at.text_input(key=Keys.BATCH_FOLDER).input(str(outside))
    _run(at)
    assert at.error[0].value.startswith(f"{outside} is outside the folders this server shares ({study_env})")
    at.text_input(key=Keys.BATCH_FOLDER).input(str(study_env / ".." / outside.name))  # no way round by ..
    _run(at)
    assert "is outside the folders this server shares" in at.error[0].value
    at.text_input(key=Keys.BATCH_FOLDER).input(str(study_env))
    _run(at)
    assert not at.error and "holds no .nii.gz, .nii, .dcm, .png, .jpg, .jpeg, .inv3 files" in at.warning[0].value


def test_a_reload_mid_case_loses_nothing_the_open_form_is_autosaved_and_restored(study_env):
    from pydicom.data import get_testdata_file

    from db.models import Arm, Reader, Role
    from db.repository import create_account, load_draft, open_case
    from workflows.studies import create_study_from_files
    from ui.study import session

    with session() as s:
        admin = create_account(s, "admin", "admin-pass-1", Role.ADMIN)
        ann = create_account(s, "ann", "ann-password")
        create_study_from_files(s, admin, "Drafts", [get_testdata_file("CT_small.dcm")], {ann.id: Arm.UNAIDED},
                                studies_dir=study_env / "studies")
        ann_id = ann.id
    first = _signed_in("pages/reading.py", "ann", "ann-password")
    case_id = first.selectbox(key=Keys.STUDY_CASE).value
    _answer(first, {"realism": 2, "artifact_present": "yes"})  # two of three answers, no save
    drawn = np.zeros((128, 128), bool)
    drawn[40:60, 50:90] = True  # 800 pixels
    first.session_state[Keys.STUDY_MASKS] = {(case_id, "unaided", 0): drawn}
    _run(first)
    with session() as s:
        reader = s.get(Reader, ann_id)
        answers, masks, _ = load_draft(s, reader, case_id)
        assert answers == {"realism": 2, "artifact_present": 1} and int(masks[0].sum()) == 800
        assert open_case(s, reader, case_id).version == 0  # autosaved, not saved

    reloaded = _signed_in("pages/reading.py", "ann", "ann-password")  # a new browser session: the reload
    assert any(i.value.startswith("Restored the answers and marks you had not saved yet") for i in reloaded.info)
    assert [r.value for r in reloaded.radio if r.key.endswith(".artifact_present")] == ["yes"]
    realism = [b for b in reloaded.button if b.key and ".realism.button." in b.key]
    assert [b.label.split(" ")[0] for b in realism if b.proto.type == "primary"] == ["2"]  # the chosen button
    assert any("marked pixels on this slice: 800" in c.value for c in reloaded.caption)
    _answer(reloaded, {"actionable": 4})
    _button(reloaded, "Save and next").click()
    _run(reloaded)
    assert reloaded.get("progress")[0].proto.text == "1 of 1 cases done"
    with session() as s:
        reader = s.get(Reader, ann_id)
        read = open_case(s, reader, case_id)
        assert {a.question: a.value_int for a in read.answers} == {"realism": 2, "artifact_present": 1, "actionable": 4}
        assert load_draft(s, reader, case_id) is None


def test_without_a_configured_setup_token_a_random_one_is_printed_to_the_server_log_once(monkeypatch, capsys):
    from ui.study import _random_setup_token, setup_token

    monkeypatch.delenv("SAFEGEN_SETUP_TOKEN", raising=False)
    _random_setup_token.clear()
    token = setup_token()
    assert len(token) >= 20 and setup_token() == token  # one per server process
    err = capsys.readouterr().err
    assert err.count(f"enter the setup token {token}") == 1 and "python -m db.admin create-admin NAME" in err
    _random_setup_token.clear()


def test_a_reader_idle_for_thirty_minutes_is_signed_out(study_env):
    import time

    from db.repository import create_account
    from ui.study import IDLE_TIMEOUT_S, session

    with session() as s:
        create_account(s, "ann", "ann-password")
    at = _signed_in("pages/reading.py", "ann", "ann-password")
    assert "Signed in as **ann** (reader)" in [c.value for c in at.caption]
    at.session_state[Keys.STUDY_LAST_ACTION] = time.time() - IDLE_TIMEOUT_S - 1
    _run(at)
    assert "You were signed out after 30 minutes without activity." in [i.value for i in at.info]
    assert [t.key for t in at.text_input] == [Keys.STUDY_USERNAME, Keys.STUDY_PASSWORD]


def test_the_drawing_canvas_keeps_true_aspect_and_a_pen_unlike_safegens_outline():
    from core.render import MASK_OUTLINE_RGB
    from ui.study import CANVAS_SIDE, PEN_RGB, canvas_size

    assert canvas_size(128, 128) == (CANVAS_SIDE, CANVAS_SIDE)
    # the held-out T1's display slice: 62 rows of 3 mm, 128 columns of 2 mm -> 186 x 256 mm, not 62 x 128 px
    assert canvas_size(62, 128, (3.0, 2.0)) == (round(CANVAS_SIDE * 186 / 256), CANVAS_SIDE)
    assert canvas_size(200, 100, (0.5, 2.0)) == (CANVAS_SIDE // 2, CANVAS_SIDE)  # 100 x 200 mm
    pen = tuple(int(PEN_RGB[i : i + 2], 16) for i in (1, 3, 5))
    assert sum(abs(a - b) for a, b in zip(pen, MASK_OUTLINE_RGB)) > 300  # far from cyan


def _niivue_args(at: AppTest) -> dict:
    """The arguments the page gave the NiiVue component (the drawing canvas is the other component)."""
    found = [args for args in (json.loads(c.proto.json_args) for c in at.get("component_instance"))
             if "nifti_data" in args]
    assert len(found) == 1, len(found)
    return found[0]


def _nifti(data: str) -> np.ndarray:
    import base64

    return np.asarray(nib.Nifti1Image.from_bytes(gzip.decompress(base64.b64decode(data))).dataobj)


def test_niivue_on_the_reading_page_shows_a_blinded_reader_the_scan_only_and_moves_the_canvas(study_env):
    """A 3-D case read in NiiVue: the blinded arm's viewer gets the scan and nothing of SAFEGEN; the AI
    arm's gets the stored heatmap above the case's tau and the outline of the stored mask rule (slice
    flags included); the drawing canvas follows the crosshair and a mask drawn there is saved on it."""
    from sqlalchemy import select

    from core.masks import slice_outline, unsafe_mask
    from core.viewer_layers import heat_above
    from db.models import Arm, CaseRead, Reader, Role
    from db.repository import CaseSpec, create_account, create_study, read_masks
    from ui.study import session
    from ui.viewer import VIEWER_NIIVUE

    scan = np.random.default_rng(0).uniform(0, 200, size=(24, 20, 6)).astype(np.float32)
    nib.save(nib.Nifti1Image(scan, np.diag([1.0, 1.5, 2.0, 1.0])), study_env / "scan.nii.gz")
    heatmap = np.zeros(scan.shape, np.float32)
    heatmap[4:12, 5:12, 1:4] = 3.0  # above tau on slices 1-3 ...
    flags = [False, True, False, True, False, False]  # ... flagged on 1 and 3 only: no outline on slice 2
    np.save(study_env / "heat.npy", heatmap)
    with session() as s:
        admin = create_account(s, "admin", "admin-pass-1", Role.ADMIN)
        ann, bob = create_account(s, "ann", "ann-password"), create_account(s, "bob", "bob-password")
        spec = CaseSpec("case-001", str(study_env / "scan.nii.gz"), (20, 24, 6), str(study_env / "heat.npy"), 0.9,
                        ai_tau=1.0, ai_flags=flags)
        create_study(s, admin, "Volumes", [spec], {ann.id: Arm.AI, bob.id: Arm.UNAIDED})

    bob_page = _signed_in("pages/reading.py", "bob", "bob-password")
    assert not any("nifti_data" in c.proto.json_args for c in bob_page.get("component_instance"))  # the canvas alone
    bob_page.radio(key=Keys.STUDY_VIEWER).set_value(VIEWER_NIIVUE)
    _run(bob_page)
    blinded = _niivue_args(bob_page)
    assert not blinded.get("overlays") and not blinded.get("meshes") and not blinded.get("paired_data")
    np.testing.assert_array_equal(_nifti(blinded["nifti_data"]), scan)  # the scan, nothing derived from SAFEGEN
    assert "safegen" not in json.dumps(blinded).lower()

    ann_page = _signed_in("pages/reading.py", "ann", "ann-password")
    case_id = ann_page.selectbox(key=Keys.STUDY_CASE).value
    ann_page.radio(key=Keys.STUDY_VIEWER).set_value(VIEWER_NIIVUE)
    _run(ann_page)
    assert not [s for s in ann_page.slider if s.key.startswith(Keys.STUDY_SLICE)]  # NiiVue scrolls by itself
    heat, outline = _niivue_args(ann_page)["overlays"]
    np.testing.assert_array_equal(_nifti(heat["data"]), heat_above(heatmap, 1.0))
    border = _nifti(outline["data"])
    np.testing.assert_array_equal(border, slice_outline(unsafe_mask(heatmap, 1.0, np.array(flags))).astype(np.uint8))
    assert border[..., 1].any() and border[..., 3].any() and not border[..., 2].any()
    assert (heat["opacity"], outline["colormap"], outline["opacity"]) == (0.5, "green2cyan", 1.0)
    assert any(c.value.startswith("case-001 · slice 4 of 6 (at NiiVue's crosshair)") for c in ann_page.caption)

    # the reader scrolls NiiVue to slice 2 (index 1): the canvas follows, and a mask drawn there is saved there
    ann_page.session_state[f"{Keys.NIIVUE}.study:{case_id}:ai"] = {"type": "voxel_click", "voxel": [5, 5, 1]}
    drawn = np.zeros((20, 24), bool)
    drawn[3:8, 4:10] = True
    ann_page.session_state[Keys.STUDY_MASKS] = {(case_id, "ai", 1): drawn}
    _run(ann_page)
    assert any(c.value.startswith("case-001 · slice 2 of 6 (at NiiVue's crosshair) · marked pixels on this slice: 30")
               for c in ann_page.caption)
    ann_page.toggle(key=Keys.STUDY_SHOW_AI).set_value(False)
    _run(ann_page)
    assert [o["opacity"] for o in _niivue_args(ann_page)["overlays"]] == [0.0, 0.0]  # hidden, crosshair kept
    _button(ann_page, "Save draft").click()
    _run(ann_page)
    with session() as s:
        (read,) = s.scalars(select(CaseRead).where(CaseRead.reader_id == s.scalar(
            select(Reader.id).where(Reader.username == "ann"))))
        assert list(read_masks(read)) == [1] and np.array_equal(read_masks(read)[1], drawn)
