"""The reader-study pages under AppTest: first admin, accounts, a study, two readers in two arms, results, export.

The drawing canvas is a custom component that AppTest cannot drive: the mask a reader would draw
is put into the page's session state (the browser test draws for real).
"""

import gzip
import io
import zipfile

import nibabel as nib
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from tests.test_app import APP
from ui.state import Keys


@pytest.fixture
def study_env(monkeypatch, tmp_path):
    monkeypatch.setenv("SAFEGEN_DB_URL", f"sqlite:///{tmp_path / 'study.db'}")
    monkeypatch.setenv("SAFEGEN_STUDIES_DIR", str(tmp_path / "studies"))
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


def _signed_in(page: str, username: str, password: str) -> AppTest:
    at = _run(AppTest.from_file(APP, default_timeout=120))
    at.switch_page(page)
    _run(at)
    at.text_input(key=Keys.STUDY_USERNAME).input(username)
    at.text_input(key=Keys.STUDY_PASSWORD).input(password)
    at.button[0].click()
    return _run(at)


def test_a_study_is_created_read_in_two_arms_and_summarised(study_env):
    from sqlalchemy import select

    from db.models import CaseRead, Reader
    from db.repository import read_masks
    from ui.study import session

    admin = _signed_in("pages/study_admin.py", "admin", "admin-pass-1")  # an empty database: the first admin
    assert "Signed in as **admin** (admin)" in [c.value for c in admin.caption]
    for name in ("ann", "bob"):
        admin.text_input(key=Keys.ADMIN_NEW_USERNAME).input(name)
        admin.text_input(key=Keys.ADMIN_NEW_PASSWORD).input(f"{name}-password")
        _button(admin, "Add account").click()
        _run(admin)
    admin.text_input(key=Keys.ADMIN_TITLE).input("Pilot")
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

    ann = _signed_in("pages/reading.py", "ann", "ann-password")
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
    between = _table(results, "reader_a")  # ann drew, bob left the case empty: Dice 0
    assert between[["reader_a", "reader_b"]].values.tolist() == [["ann", "bob"]] and between["dice"].tolist() == [0.0]
    against = _table(results, "dice", without="reader_a").set_index("reader")["dice"]  # against SAFEGEN's mask at tau
    assert set(against.index) == {"ann", "bob"} and 0.0 <= against["ann"] <= 1.0

    admin = _signed_in("pages/study_admin.py", "admin", "admin-pass-1")
    _button(admin, "Prepare the export (answers CSV, NIfTI masks, summary)").click()
    _run(admin)
    _, payload = admin.session_state[Keys.ADMIN_EXPORT_ZIP]
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        names = set(archive.namelist())
        assert {"answers.csv", "summary.json", "masks/case-001_ann.nii.gz"} <= names
        mask = nib.Nifti1Image.from_bytes(gzip.decompress(archive.read("masks/case-001_ann.nii.gz")))
    assert int(np.asarray(mask.dataobj).sum()) == int(drawn.sum())


def test_readers_cannot_open_the_admin_page_and_wrong_passwords_are_refused(study_env):
    from db.models import Role
    from db.repository import create_reader
    from ui.study import session

    with session() as s:
        create_reader(s, "admin", "admin-pass-1", Role.ADMIN)
        create_reader(s, "ann", "ann-password")
    wrong = _signed_in("pages/reading.py", "ann", "not-her-password")
    assert [e.value for e in wrong.error] == ["Unknown user name or wrong password."]
    ann = _signed_in("pages/study_admin.py", "ann", "ann-password")
    assert [e.value for e in ann.error] == ["Only a study admin can open this page."]
    reading = _signed_in("pages/reading.py", "ann", "ann-password")
    assert "not a reader of any study" in reading.info[0].value
