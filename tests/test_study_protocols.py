"""Study protocols: crossed two-arm sessions, minimum reading time, the new question kinds, the 0001 -> 0002
migration of stored reads, case lists, and the results of a visual Turing test and a two-arm study
computed end to end from the database (known answers)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.mrmc import obuchowski_rockette
from core.study_stats import answers_frame, roc_frame, turing_frame
from db.migrate import upgrade
from db.models import Arm, Role, StudyKind
from db.repository import (
    DEFAULT_QUESTIONS,
    TURING_QUESTIONS,
    TWO_ARM_QUESTIONS,
    CaseSpec,
    StudyError,
    answers_table,
    assignments,
    create_account,
    create_study,
    next_case,
    open_case,
    progress,
    quality_questions,
    reading_list,
    save_read,
    shows_ai,
)
from db.session import make_engine, make_session_factory, session_scope
from workflows.studies import analyse_study, export_study, read_case_list


@pytest.fixture
def db(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'study.db'}")
    upgrade(engine)
    yield make_session_factory(engine)
    engine.dispose()


def _people(s, *names):
    admin = create_account(s, "admin", "admin-pass-1", Role.ADMIN)
    return admin, [create_account(s, name, f"{name}-password") for name in names]


def _get(s, reader_id):
    from db.models import Reader

    return s.get(Reader, reader_id)


# -- crossed sessions ------------------------------------------------------------------------------


def test_a_crossed_study_gives_every_reader_both_arms_in_counterbalanced_sessions(db):
    with session_scope(db) as s:
        admin, (ann, bob) = _people(s, "ann", "bob")
        cases = [CaseSpec(f"c{i}", f"/x/c{i}.png", (4, 5, 1), truth="artifact" if i % 2 else "clean") for i in range(3)]
        study = create_study(s, admin, "Two arms", cases, {ann.id: Arm.AI, bob.id: Arm.UNAIDED},
                             questions=TWO_ARM_QUESTIONS, kind=StudyKind.TWO_ARM,
                             settings={"crossed": True, "roc_question": "artifact_confidence"})
        ids, study_id = (ann.id, bob.id), study.id
    with session_scope(db) as s:
        ann, bob = _get(s, ids[0]), _get(s, ids[1])
        assert [(a.arm, a.block) for a in assignments(s, ann, study_id)] == [(Arm.AI, 0), (Arm.UNAIDED, 1)]
        assert [(a.arm, a.block) for a in assignments(s, bob, study_id)] == [(Arm.UNAIDED, 0), (Arm.AI, 1)]
        first, second = (sorted(a.case_order) for a in assignments(s, ann, study_id))
        assert first == second  # every case in both sessions ...
        assert shows_ai(s, ann, study_id) and not shows_ai(s, bob, study_id)  # ... each reader starts in their own arm
        assert progress(s, _get(s, 1), study_id) == {"ann": (0, 6), "bob": (0, 6)}  # the admin, account 1
        later = reading_list(s, ann, study_id, Arm.UNAIDED)[0][0]
        with pytest.raises(StudyError, match=r"finish session 1 first \(3 case"):
            open_case(s, ann, later.id, Arm.UNAIDED)  # session 2 opens only when session 1 is done
        for case, _ in reading_list(s, ann, study_id):
            save_read(s, ann, case.id, expected_version=0, answers={"artifact_confidence": 5, "heatmap_useful": 4})
        assert not shows_ai(s, ann, study_id)  # now in the unaided session
        case = next_case(s, ann, study_id)
        with pytest.raises(StudyError, match="only asked with the AI heatmap"):
            save_read(s, ann, case.id, expected_version=0, answers={"heatmap_useful": 4})
        save_read(s, ann, case.id, expected_version=0, answers={"artifact_confidence": 2})
        rows = answers_table(s, ann, study_id)
    assert progress_after(db, study_id) == {"ann": (4, 6), "bob": (0, 6)}
    per_arm = {(r["case_id"], r["arm"], r["session"]) for r in rows if r["question"] == "artifact_confidence"}
    assert len(per_arm) == 4 and {(a, n) for _, a, n in per_arm} == {("ai", 1), ("unaided", 2)}
    assert all(r["truth"] is None for r in rows)  # a reader never gets the truth


def progress_after(factory, study_id):
    with session_scope(factory) as s:
        return progress(s, _get(s, 1), study_id)  # the admin, account 1


def test_minimum_reading_time_refuses_an_early_submit_but_keeps_drafts(db):
    with session_scope(db) as s:
        admin, (ann,) = _people(s, "ann")
        study = create_study(s, admin, "Slow", [CaseSpec("c0", "/x/c0.png", (4, 5, 1))], {ann.id: Arm.UNAIDED},
                             settings={"min_read_seconds": 30}, questions=DEFAULT_QUESTIONS[:1])  # realism only
        study_id, ann_id = study.id, ann.id
    with session_scope(db) as s:
        ann = _get(s, ann_id)
        case = next_case(s, ann, study_id)
        with pytest.raises(StudyError, match=r"at least 30 s per case .*\(18 s to go\)"):
            save_read(s, ann, case.id, expected_version=0, answers={"realism": 3}, seconds=12.0)
        save_read(s, ann, case.id, expected_version=0, answers={"realism": 3}, seconds=12.0, submit=False)  # a draft
        read = save_read(s, ann, case.id, expected_version=1, answers={"realism": 4}, seconds=18.0)  # 12 + 18 = 30
        assert read.submitted_at is not None and read.seconds_spent == 30.0
    with session_scope(db) as s, pytest.raises(StudyError, match="0 to 3600 seconds"):
        create_study(s, _get(s, 1), "Bad", [CaseSpec("c0", "/x/c0.png", (4, 5, 1))], {}, settings={"min_read_seconds": -1})


def test_choice_checklist_and_four_level_scales_are_validated_and_stored(db):
    questions = TURING_QUESTIONS + quality_questions("MRIQC 1-4", ["blur", "checkerboard", "other"])[:2]
    with session_scope(db) as s:
        admin, (ann,) = _people(s, "ann")
        study = create_study(s, admin, "Kinds", [CaseSpec("c0", "/x/c0.png", (4, 5, 1), truth="synthetic")],
                             {ann.id: Arm.UNAIDED}, questions=questions, kind=StudyKind.VISUAL_TURING)
        study_id, ann_id = study.id, ann.id
    for answers, message in [({"origin": "fake"}, "one of real, synthetic"), ({"quality": 5}, "from 1 to 4"),
                             ({"artifacts": ["blur", "motion"]}, r"\['motion'\] are not options")]:
        with session_scope(db) as s, pytest.raises(StudyError, match=message):
            save_read(s, _get(s, ann_id), next_case(s, _get(s, ann_id), study_id).id, expected_version=0,
                      answers=answers)
    with session_scope(db) as s:
        ann = _get(s, ann_id)
        case = next_case(s, ann, study_id)
        save_read(s, ann, case.id, expected_version=0,
                  answers={"origin": "synthetic", "confidence": 4, "quality": 2, "artifacts": ["other", "blur"]})
        rows = {r["question"]: (r["value"], r["text"]) for r in answers_table(s, ann, study_id)}
    assert rows == {"origin": (None, "synthetic"), "confidence": (4, None), "quality": (2, None),
                    "artifacts": (None, json.dumps(["blur", "other"]))}  # ticked items in the checklist's order
    with session_scope(db) as s:
        for bad, message in [([{"key": "q", "text": "?", "kind": "likert", "levels": 11}], "2 to 10 levels"),
                             ([{"key": "q", "text": "?", "kind": "choice", "options": ["a"]}], "distinct options"),
                             ([{"key": "q", "text": "?", "kind": "likert", "levels": 3, "labels": ["a"]}], "one label")]:
            with pytest.raises(StudyError, match=message):
                create_study(s, _get(s, 1), "Bad", [CaseSpec("c0", "/x/c0.png", (4, 5, 1))], {}, questions=bad)


# -- the 0002 migration keeps what 0001 stored -----------------------------------------------------


def test_migrating_a_0001_database_keeps_every_read_and_gives_it_its_readers_arm(tmp_path):
    path = tmp_path / "old.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine, "0001")
    engine.dispose()
    with sqlite3.connect(path) as c:  # what a 0001 deployment holds: two readers in two arms, one answer each
        c.execute("INSERT INTO reader VALUES (1, 'admin', 'x', 'admin', '2026-01-01'), (2, 'ann', 'x', 'reader', "
                  "'2026-01-01'), (3, 'bob', 'x', 'reader', '2026-01-01')")
        c.execute("INSERT INTO study VALUES (1, 'Old', '', '[]', 0, 1, '2026-01-01')")
        c.execute("INSERT INTO study_case VALUES (1, 1, 0, 'c0', '/x.png', '[4, 5, 1]', NULL, NULL)")
        c.execute("INSERT INTO assignment VALUES (1, 1, 2, 'ai', '[1]'), (2, 1, 3, 'unaided', '[1]')")
        c.execute("INSERT INTO case_read VALUES (1, 1, 2, '2026-01-01', '2026-01-01', 5.0, 1), "
                  "(2, 1, 3, '2026-01-01', NULL, 2.0, 1)")
        c.execute("INSERT INTO answer VALUES (1, 1, 'realism', 4, NULL), (2, 2, 'realism', 2, NULL)")
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    with sqlite3.connect(path) as c:
        assert c.execute("SELECT id, reader_id, arm, seconds_spent FROM case_read ORDER BY id").fetchall() == [
            (1, 2, "ai", 5.0), (2, 3, "unaided", 2.0)]
        assert c.execute("SELECT kind, settings FROM study").fetchall() == [("rating", "{}")]
        assert c.execute("SELECT block FROM assignment").fetchall() == [(0,), (0,)]
        assert c.execute("SELECT COUNT(*) FROM answer").fetchone() == (2,)
        with pytest.raises(sqlite3.IntegrityError):  # the new key: one read per case, reader and arm
            c.execute("INSERT INTO case_read VALUES (3, 1, 2, '2026-01-01', NULL, 0, 0, 'ai')")


# -- case lists ------------------------------------------------------------------------------------


def test_a_case_list_reads_truths_labels_and_masks_and_draws_a_balanced_subset(tmp_path):
    for name in ("a.png", "b.png", "c.png", "d.png", "m.png"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "list.csv").write_text("image,label,mask\na.png,1,m.png\nb.png,0,m.png\nc.png,1,m.png\nd.png,0,\n")
    files, truths, masks = read_case_list(tmp_path / "list.csv")
    assert [f.name for f in files] == ["a.png", "b.png", "c.png", "d.png"]
    assert truths == ["artifact", "clean", "artifact", "clean"]
    assert [m and m.name for m in masks] == ["m.png", None, "m.png", None]  # a clean case has no truth mask
    _, truths, _ = read_case_list(tmp_path / "list.csv", limit=2, seed=3)
    assert sorted(truths) == ["artifact", "clean"]  # balanced
    (tmp_path / "bad.csv").write_text("image,truth\na.png,fake\n")
    with pytest.raises(StudyError, match="unknown truth"):
        read_case_list(tmp_path / "bad.csv")
    (tmp_path / "gone.csv").write_text("image\nnot-there.png\n")
    with pytest.raises(StudyError, match="does not exist"):
        read_case_list(tmp_path / "gone.csv")


# -- results from the database: known answers ------------------------------------------------------


def test_visual_turing_results_from_the_database(db):
    # 4 images (2 real, 2 synthetic), 2 readers. Ann is right 3 of 4 times, Bob 2 of 4.
    truths = ["real", "real", "synthetic", "synthetic"]
    answers = {"ann": ["real", "synthetic", "synthetic", "synthetic"], "bob": ["synthetic", "real", "real", "synthetic"]}
    with session_scope(db) as s:
        admin, readers = _people(s, "ann", "bob")
        study = create_study(s, admin, "VTT", [CaseSpec(f"c{i}", f"/x/c{i}.png", (4, 5, 1), truth=t)
                                               for i, t in enumerate(truths)],
                             {r.id: Arm.UNAIDED for r in readers}, questions=TURING_QUESTIONS,
                             kind=StudyKind.VISUAL_TURING, settings={"roc_question": "origin"})
        study_id, case_ids = study.id, [c.id for c in study.cases]
        for reader in readers:
            for case_id, answer in zip(case_ids, answers[reader.username], strict=True):
                save_read(s, reader, case_id, expected_version=0, answers={"origin": answer, "confidence": 5})
        report = analyse_study(s, admin, study_id)
    table = report.turing_table
    assert table.loc["ann", "accuracy"] == 0.75 and table.loc["bob", "accuracy"] == 0.5
    assert table.loc["pooled", "accuracy"] == 0.625 and table.loc["pooled", "readings"] == 8
    assert table.loc["ann", "sensitivity"] == 1.0 and table.loc["ann", "specificity"] == 0.5
    assert table.loc["pooled", "p_value"] == pytest.approx(0.7265625)  # P(|X - 4| >= 1), X ~ Bin(8, 1/2)
    # Fleiss: the readers agree on image 4 only -> P_bar 1/4; p(real) 3/8 -> P_e 34/64; kappa -0.6.
    assert report.turing_line == ("2 readers, 4 images: accuracy 62.5% (exact binomial p = 0.727), Fleiss' kappa "
                                  "-0.60")
    aucs = report.reader_aucs.set_index("reader")["auc"]  # certain answers: rating 1 (real) or 10 (synthetic)
    assert aucs["ann"] == 0.75 and aucs["bob"] == 0.5  # ann: (1 + 1 + 0.5 + 0.5) / 4; bob: 2 of 4 pairs
    assert report.mrmc is None and report.notes == []  # one arm: nothing to compare, and nothing to apologise for


def test_two_arm_results_mrmc_and_masks_against_the_truth_from_the_database(db, tmp_path):
    # 6 cases (3 artifact with a truth mask of 4 pixels, 3 clean), 2 readers, each reads every case in both arms.
    truth = np.zeros((1, 4, 5), bool)
    truth[0, 1:3, 1:3] = True
    np.save(tmp_path / "truth.npy", truth)
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (4, 5), dtype=np.uint8)).save(tmp_path / "c.png")
    cases = [CaseSpec(f"c{i}", str(tmp_path / "c.png"), (4, 5, 1), truth="artifact" if i < 3 else "clean",
                      truth_mask_path=str(tmp_path / "truth.npy") if i < 3 else None) for i in range(6)]
    ratings = {  # (reader, arm) -> rating per case; AI makes both readers separate better
        ("ann", "ai"): [5, 4, 5, 1, 2, 1], ("ann", "unaided"): [4, 2, 3, 3, 1, 2],
        ("bob", "ai"): [4, 5, 3, 2, 1, 1], ("bob", "unaided"): [3, 2, 2, 3, 2, 1],
    }
    exact, half = truth[0].copy(), np.zeros((4, 5), bool)
    half[1, 1:3] = True  # 2 of the 4 truth pixels: Dice 2 * 2 / (2 + 4) = 2/3
    with session_scope(db) as s:
        admin, readers = _people(s, "ann", "bob")
        study = create_study(s, admin, "Arms", cases, {readers[0].id: Arm.AI, readers[1].id: Arm.UNAIDED},
                             questions=TWO_ARM_QUESTIONS, kind=StudyKind.TWO_ARM,
                             settings={"crossed": True, "roc_question": "artifact_confidence"})
        study_id, ids = study.id, [c.id for c in study.cases]
        for reader in readers:
            for session_ in assignments(s, reader, study_id):
                arm = session_.arm
                for case_id in session_.case_order:
                    i = ids.index(case_id)
                    masks = {}
                    if reader.username == "ann" and arm is Arm.AI and i == 0:
                        masks = {0: exact}
                    if reader.username == "ann" and arm is Arm.UNAIDED and i == 0:
                        masks = {0: half}
                    if reader.username == "bob" and arm is Arm.UNAIDED and i == 3:
                        masks = {0: exact}  # a mark on a clean case
                    save_read(s, reader, case_id, expected_version=0, masks=masks, arm=arm,
                              answers={"artifact_confidence": ratings[(reader.username, arm.value)][i]}
                              | ({"heatmap_useful": 3} if arm is Arm.AI else {}))  # required in the AI arm
        report = analyse_study(s, admin, study_id)
        export = export_study(s, admin, study_id, tmp_path / "export")
        frame = answers_frame(answers_table(s, admin, study_id))
    aucs = report.reader_aucs.set_index(["reader", "arm"])["auc"]
    assert aucs[("ann", "ai")] == 1.0 and aucs[("bob", "ai")] == 1.0
    # ann unaided, artifact ratings 4, 2, 3 against clean 3, 1, 2: 4 wins 3 pairs, 2 wins 1 and ties 1,
    # 3 ties 1 and wins 2 -> 7 / 9. bob unaided, 3, 2, 2 against 3, 2, 1: 2.5 + 1.5 + 1.5 -> 5.5 / 9.
    assert aucs[("ann", "unaided")] == pytest.approx(7 / 9)
    assert aucs[("bob", "unaided")] == pytest.approx(5.5 / 9)
    expected = obuchowski_rockette(roc_frame(frame, "artifact_confidence"))
    assert report.mrmc.treatment_means.to_dict() == expected.treatment_means.to_dict()
    assert report.mrmc.analyses["RRRC"].p_value == expected.analyses["RRRC"].p_value
    assert report.mrmc.summary_line().startswith("2 readers, 6 cases (3 positive): AUC 1.000 vs 0.694")
    per_reader = report.masks_vs_truth_per_reader.set_index(["reader", "arm"])
    assert per_reader.loc[("ann", "ai"), "mean_dice"] == pytest.approx(1 / 3)  # Dice 1 on c0, 0 on c1, c2
    assert per_reader.loc[("ann", "unaided"), "mean_dice"] == pytest.approx(2 / 9)
    assert per_reader.loc[("ann", "unaided"), "hit_rate"] == pytest.approx(1 / 3)
    assert per_reader.loc[("bob", "unaided"), "false_mark_rate"] == pytest.approx(1 / 3)
    assert per_reader.loc[("bob", "ai"), "false_mark_rate"] == 0.0
    summary = json.loads(Path(export["summary"]).read_text())
    assert summary["kind"] == "two_arm" and summary["mrmc_summary"]["RRRC"] == report.mrmc.summary_line("RRRC")
    readings = pd.read_csv(export["readings"])
    assert len(readings) == 2 * 2 * 6 and set(readings["session"]) == {1, 2}
    assert {k for k in export if k.startswith("mask:")} == {"mask:c0:ann:ai", "mask:c0:ann:unaided", "mask:c3:bob:unaided"}
    assert export["mask:c0:ann:ai"].name == "c0_ann_ai.nii.gz"


def test_turing_and_roc_frames_map_answers_to_ratings():
    rows = [
        {"case_id": 1, "case": "a", "truth": "real", "reader": "r", "arm": "unaided", "session": 1,
         "question": "origin", "value": None, "text": "real", "seconds": 1.0, "submitted_at": None},
        {"case_id": 1, "case": "a", "truth": "real", "reader": "r", "arm": "unaided", "session": 1,
         "question": "confidence", "value": 5, "text": None, "seconds": 1.0, "submitted_at": None},
        {"case_id": 2, "case": "b", "truth": "synthetic", "reader": "r", "arm": "unaided", "session": 1,
         "question": "origin", "value": None, "text": "synthetic", "seconds": 1.0, "submitted_at": None},
        {"case_id": 2, "case": "b", "truth": "synthetic", "reader": "r", "arm": "unaided", "session": 1,
         "question": "confidence", "value": 2, "text": None, "seconds": 1.0, "submitted_at": None},
    ]
    frame = answers_frame(rows)
    turing = turing_frame(frame)
    assert turing["rating"].tolist() == [1.0, 7.0]  # real & certain -> 1; synthetic & confidence 2 -> 5 + 2
    roc = roc_frame(frame, "origin")
    assert roc[["truth", "rating"]].values.tolist() == [[0, 1.0], [1, 7.0]]
