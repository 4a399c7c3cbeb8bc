"""Reader-study persistence: the Alembic schema, the repository's rules, concurrent writers, a killed writer.

Every test runs on SQLite and on a real PostgreSQL (the ``db_url`` fixture of ``conftest.py``
starts a throw-away cluster).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import sqlite3
import time

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import delete, func, inspect, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from db.base import Base
from db.migrate import upgrade
from db.models import Answer, Arm, CaseRead, Mask, Reader, Role, SignInThrottle
from db.repository import (
    DEFAULT_QUESTIONS,
    FREE_FAILURES,
    WRONG_SIGN_IN,
    CaseSpec,
    SignInRefused,
    StudyError,
    answers_table,
    case_order,
    create_account,
    create_first_admin,
    create_reader,
    create_study,
    find_read,
    load_draft,
    next_case,
    open_case,
    progress,
    read_masks,
    reader_case,
    reading_list,
    save_draft,
    save_read,
    shows_ai,
    sign_in,
    study_masks,
)
from db.session import ReadOnlyError, make_engine, make_session_factory, read_scope, session_scope


def _factory(url: str):
    engine = make_engine(url)
    upgrade(engine)
    return engine, make_session_factory(engine)


@pytest.fixture
def db(db_url):
    engine, factory = _factory(db_url)
    yield factory
    engine.dispose()


# The default questions with only "realism" required, so these tests can save one answer per case
# (the required-question rule has its own test below, on the default questions).
ONLY_REALISM_REQUIRED = [q if q["key"] == "realism" else {**q, "optional": True} for q in DEFAULT_QUESTIONS]


def _study(factory, n_cases: int = 3, shape=(4, 5, 2)):
    """An admin, two readers (AI arm and unaided) and a study of ``n_cases`` cases; returns their ids."""
    with session_scope(factory) as s:
        admin = create_account(s, "admin", "admin-pass-1", Role.ADMIN)
        ann = create_account(s, "ann", "ann-password")
        bob = create_account(s, "bob", "bob-password")
        cases = [CaseSpec(f"case{i}", f"/scans/case{i}.nii.gz", shape) for i in range(n_cases)]
        study = create_study(s, admin, "Synthetic brains", cases, {ann.id: Arm.AI, bob.id: Arm.UNAIDED}, seed=7,
                             questions=ONLY_REALISM_REQUIRED)
        return admin.id, ann.id, bob.id, study.id


def _get(s, reader_id):
    return s.get(Reader, reader_id)


def test_migrations_build_exactly_the_models_schema(db_url):
    engine, _ = _factory(db_url)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata)
        assert diff == [], diff
        tables = set(inspect(connection).get_table_names())
    assert {"reader", "study", "study_case", "assignment", "case_read", "answer", "mask", "sign_in_throttle", "draft",
            "alembic_version"} <= tables
    upgrade(engine)  # a second upgrade is a no-op
    engine.dispose()


def test_passwords_are_argon2_hashes_and_sign_in_checks_them(db):
    with session_scope(db) as s:
        reader = create_account(s, "carol", "correct horse")
        assert reader.password_hash.startswith("$argon2id$") and "correct horse" not in reader.password_hash
    assert sign_in(lambda: session_scope(db), " carol ", "correct horse") == reader.id
    for name, password in (("carol", "wrong horse"), ("nobody", "correct horse")):  # the same answer for both
        with pytest.raises(SignInRefused, match=WRONG_SIGN_IN) as refused:
            sign_in(lambda: session_scope(db), name, password)
        assert refused.value.retry_after == 0.0
    with session_scope(db) as s:
        with pytest.raises(StudyError, match="taken"):
            create_account(s, "carol", "another password")
        with pytest.raises(StudyError, match="8 characters"):
            create_account(s, "dave", "short")
        for name in ("a/b", "../admin", "![x](http://evil.example/a.png)", "=cmd", "", "x" * 65):
            with pytest.raises(StudyError, match="1 to 64 characters: letters, digits"):
                create_account(s, name, "a-long-password")


@pytest.mark.parametrize("password", ["        ", "  short   ", "password", "Password1", "12345678", "qwertyuiop", "letmein123",
                                      "davedave", "dave1234", "safegen1"])
def test_blank_common_and_name_based_passwords_are_refused(db, password):
    with session_scope(db) as s, pytest.raises(StudyError, match="8 characters|too easy to guess"):
        create_account(s, "dave", password)
    with session_scope(db) as s:
        assert s.scalar(select(func.count(Reader.id))) == 0


def test_wrong_passwords_lock_a_name_with_a_doubling_back_off_known_or_not(db, caplog):
    from datetime import UTC, datetime, timedelta

    with session_scope(db) as s:
        create_account(s, "carol", "correct horse")
    t0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)

    def attempt(name, password, seconds):
        return sign_in(lambda: session_scope(db), name, password, now=t0 + timedelta(seconds=seconds))

    for name in ("carol", "mallory"):  # an unknown name is locked the same way: lock-outs do not reveal names
        waits = []
        for i in range(FREE_FAILURES):
            with pytest.raises(SignInRefused, match=WRONG_SIGN_IN) as refused:
                attempt(name, f"guess number {i}", 0)
            waits.append(refused.value.retry_after)
        assert waits == [0, 0, 0, 0, 30.0]  # the 5th failure in a row locks the name for 30 s
        with pytest.raises(SignInRefused, match="try again in 20 s"):
            attempt(name, "correct horse", 10)  # locked: the right password is not even checked
        with pytest.raises(SignInRefused, match=WRONG_SIGN_IN) as refused:
            attempt(name, "one more guess", 31)  # the lock is over; the 6th failure doubles it
        assert refused.value.retry_after == 60.0
        with pytest.raises(SignInRefused, match="try again in 45 s") as refused:
            attempt(name, "correct horse", 46)
        assert refused.value.retry_after == 45.0
    assert attempt("carol", "correct horse", 92) is not None  # after the lock: signed in, the count is cleared
    with pytest.raises(SignInRefused) as refused:
        attempt("carol", "one more guess", 93)
    assert refused.value.retry_after == 0.0
    assert sum("sign-in failed for 'carol'" in r.getMessage() for r in caplog.records) == FREE_FAILURES + 2
    assert any("locked for 30 s" in r.getMessage() for r in caplog.records)


def test_the_first_admin_only_on_an_empty_database(db):
    with session_scope(db) as s:
        admin = create_first_admin(s, "chief", "chief-password")
        assert admin.role is Role.ADMIN
    with session_scope(db) as s, pytest.raises(StudyError, match="has accounts already"):
        create_first_admin(s, "mallory", "mallory-password")
    with session_scope(db) as s:
        assert s.scalars(select(Reader.username)).all() == ["chief"]


def test_db_admin_creates_an_admin_and_unlocks_a_name(db_url, monkeypatch, capsys):
    import io

    from db.admin import EXIT_REFUSED, main

    monkeypatch.setattr("sys.stdin", io.StringIO("chief-password\n"))
    assert main(["create-admin", "chief", "--password-stdin", "--url", db_url]) == 0
    assert "admin account 'chief' created" in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO("password\n"))
    assert main(["create-admin", "chief2", "--password-stdin", "--url", db_url]) == EXIT_REFUSED
    assert "too easy to guess" in capsys.readouterr().err
    engine, factory = _factory(db_url)
    for _ in range(FREE_FAILURES):
        with pytest.raises(SignInRefused):
            sign_in(lambda: session_scope(factory), "chief", "not the password")
    with pytest.raises(SignInRefused, match="try again"):
        sign_in(lambda: session_scope(factory), "chief", "chief-password")
    assert main(["unlock", "chief", "--url", db_url]) == 0
    assert "'chief': unlocked" in capsys.readouterr().out
    with session_scope(factory) as s:
        assert sign_in(lambda: session_scope(factory), "chief", "chief-password") == s.scalar(select(Reader.id))
    engine.dispose()


def test_only_admins_create_studies_and_orders_are_seeded_per_reader(db):
    admin_id, ann_id, bob_id, study_id = _study(db, n_cases=6)
    with session_scope(db) as s:
        ann = _get(s, ann_id)
        with pytest.raises(StudyError, match="only an admin"):
            create_study(s, ann, "mine", [CaseSpec("x", "/x", (2, 2, 1))], {ann.id: Arm.AI})
        ann_order = [c.id for c, _ in reading_list(s, ann, study_id)]
        bob_order = [c.id for c, _ in reading_list(s, _get(s, bob_id), study_id)]
        assert sorted(ann_order) == sorted(bob_order) and ann_order != bob_order
        assert ann_order == case_order(7, ann_id, sorted(ann_order))  # reproducible from the seed
        assert shows_ai(s, ann, study_id) and not shows_ai(s, _get(s, bob_id), study_id)


def test_a_save_round_trips_answers_masks_and_time_and_advances_the_reader(db):
    admin_id, ann_id, _, study_id = _study(db)
    mask = np.zeros((4, 5), bool)
    mask[1:3, 2:4] = True
    with session_scope(db) as s:
        ann = _get(s, ann_id)
        first = next_case(s, ann, study_id)
        read = save_read(s, ann, first.id, expected_version=0, seconds=12.5, masks={1: mask},
                         answers={"realism": 4, "artifact_present": True, "heatmap_useful": 5, "comment": "smear"})
        assert read.version == 1 and read.submitted_at is not None
    with session_scope(db) as s:
        ann = _get(s, ann_id)
        read = open_case(s, ann, first.id)
        stored = {a.question: (a.value_int, a.value_text) for a in read.answers}
        assert stored == {"realism": (4, None), "artifact_present": (1, None), "heatmap_useful": (5, None),
                          "comment": (None, "smear")}
        assert np.array_equal(read_masks(read)[1], mask) and read.seconds_spent == 12.5
        assert next_case(s, ann, study_id).id != first.id
        # Go back and edit: change one answer, clear the mask, add time.
        save_read(s, ann, first.id, expected_version=1, answers={"realism": 2}, masks={1: np.zeros((4, 5), bool)},
                  seconds=3.0)
    with session_scope(db) as s:
        read = open_case(s, _get(s, ann_id), first.id)
        assert {a.question: a.value_int for a in read.answers}["realism"] == 2
        assert read_masks(read) == {} and read.seconds_spent == 15.5 and read.version == 2
        assert progress(s, _get(s, admin_id), study_id) == {"ann": (1, 3), "bob": (0, 3)}
        with pytest.raises(StudyError, match="only an admin"):
            progress(s, _get(s, ann_id), study_id)


@pytest.mark.parametrize("kwargs, message", [
    ({"answers": {"realism": 6}}, "from 1 to 5"),
    ({"answers": {"realism": 2.5}}, "whole number"),
    ({"answers": {"realism": True}}, "whole number"),
    ({"answers": {"artifact_present": 3}}, "yes or no"),
    ({"answers": {"colour": 3}}, "no question"),
    ({"answers": {"realism": 3}, "masks": {0: np.ones((5, 4), bool)}}, "must be 4 x 5"),
    ({"answers": {"realism": 3}, "masks": {2: np.ones((4, 5), bool)}}, "outside"),
    ({"answers": {"realism": 3}, "seconds": -1.0}, "non-negative"),
    ({"answers": {"realism": 3}, "expected_version": 5}, "saved again"),
])
def test_bad_input_is_refused_with_a_message_and_changes_nothing(db, kwargs, message):
    _, ann_id, _, study_id = _study(db)
    with session_scope(db) as s:
        ann = _get(s, ann_id)
        case = next_case(s, ann, study_id)
        save_read(s, ann, case.id, expected_version=0, answers={"realism": 4}, masks={0: np.eye(4, 5, dtype=bool)})
    with pytest.raises(StudyError, match=message):
        with session_scope(db) as s:
            save_read(s, _get(s, ann_id), case.id, **{"expected_version": 1, **kwargs})
    with session_scope(db) as s:
        read = open_case(s, _get(s, ann_id), case.id)
        assert read.version == 1 and [(a.question, a.value_int) for a in read.answers] == [("realism", 4)]
        assert np.array_equal(read_masks(read)[0], np.eye(4, 5, dtype=bool))


def test_double_submit_unknown_case_blinded_question_and_strangers_are_refused(db):
    _, ann_id, bob_id, study_id = _study(db)
    with session_scope(db) as s:
        stranger = create_account(s, "eve", "eve-password")
        ann, bob = _get(s, ann_id), _get(s, bob_id)
        case = next_case(s, ann, study_id)
        save_read(s, ann, case.id, expected_version=0, answers={"realism": 3})
        with pytest.raises(StudyError, match="saved again"):  # the same form submitted twice
            save_read(s, ann, case.id, expected_version=0, answers={"realism": 3})
        with pytest.raises(StudyError, match="no case 999"):
            save_read(s, ann, 999, expected_version=0, answers={})
        with pytest.raises(StudyError, match="only asked with the AI heatmap"):
            save_read(s, bob, case.id, expected_version=0, answers={"heatmap_useful": 4})
        with pytest.raises(StudyError, match="not a reader of this study"):
            save_read(s, stranger, case.id, expected_version=0, answers={"realism": 1})


def test_readers_see_only_their_own_answers_and_only_admins_export_masks(db):
    admin_id, ann_id, bob_id, study_id = _study(db)
    with session_scope(db) as s:
        ann, bob = _get(s, ann_id), _get(s, bob_id)
        case = next_case(s, ann, study_id)
        save_read(s, ann, case.id, expected_version=0, answers={"realism": 5}, masks={0: np.ones((4, 5), bool)})
        save_read(s, bob, case.id, expected_version=0, answers={"realism": 1})
        assert {r["reader"] for r in answers_table(s, ann, study_id)} == {"ann"}
        assert {r["reader"] for r in answers_table(s, _get(s, admin_id), study_id)} == {"ann", "bob"}
        with pytest.raises(StudyError, match="only an admin"):
            study_masks(s, ann, study_id)
        exported = study_masks(s, _get(s, admin_id), study_id)
        assert [(c.id, name, arm, sorted(m)) for c, name, arm, m in exported] == [(case.id, "ann", "ai", [0])]


# -- concurrency and crashes -----------------------------------------------------------------------

N_WRITERS, N_ANSWERS = 20, 100


def _processes():
    """The writer processes' start method: forkserver, with this module imported once in the server.

    Each worker is still a fresh process with its own engine and connections (nothing is inherited
    from pytest's process, as with spawn), but it is forked from a server that has imported this
    module already, instead of starting Python and importing numpy, SQLAlchemy and the app (about
    2 s of CPU) once per worker: 20 spawned writers spent most of the test starting up.
    """
    context = mp.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def _writer(url: str, reader_name: str, study_id: int, start: mp.Event) -> None:
    """One reader process: saves every one of the study's cases (one answer each) as fast as it can."""
    engine = make_engine(url, busy_timeout_ms=60_000)
    factory = make_session_factory(engine)
    start.wait()
    with session_scope(factory) as s:
        reader = s.scalar(select(Reader).where(Reader.username == reader_name))
        order = [c.id for c, _ in reading_list(s, reader, study_id)]
        reader_id = reader.id
    for i, case_id in enumerate(order):
        with session_scope(factory) as s:
            save_read(s, s.get(Reader, reader_id), case_id, expected_version=0, answers={"realism": 1 + i % 5})
    engine.dispose()


def test_twenty_concurrent_writers_store_every_answer_exactly_once(db_url):
    engine, factory = _factory(db_url)
    with session_scope(factory) as s:
        admin = create_account(s, "admin", "admin-pass-1", Role.ADMIN)
        first = create_account(s, "r00", "reader-password")
        # The writers never sign in: the other readers share r00's argon2 hash instead of spending
        # about 0.1 s of CPU each on one of their own (accounts have their own tests above).
        readers = [first, *(Reader(username=f"r{i:02d}", password_hash=first.password_hash, role=Role.READER)
                            for i in range(1, N_WRITERS))]
        s.add_all(readers)
        s.flush()
        cases = [CaseSpec(f"c{i}", f"/c{i}", (2, 2, 1)) for i in range(N_ANSWERS)]
        study_id = create_study(s, admin, "load", cases, {r.id: Arm.UNAIDED for r in readers},
                                questions=ONLY_REALISM_REQUIRED).id
    context = _processes()
    start = context.Event()
    workers = [context.Process(target=_writer, args=(db_url, f"r{i:02d}", study_id, start)) for i in range(N_WRITERS)]
    for w in workers:
        w.start()
    begun = time.perf_counter()
    start.set()
    for w in workers:
        w.join(timeout=300)
    assert all(w.exitcode == 0 for w in workers), [w.exitcode for w in workers]
    with session_scope(factory) as s:
        assert s.scalar(select(func.count(Answer.id))) == N_WRITERS * N_ANSWERS
        assert s.scalar(select(func.count(CaseRead.id)).where(CaseRead.version == 1)) == N_WRITERS * N_ANSWERS
        pairs = s.execute(select(CaseRead.reader_id, CaseRead.case_id)).all()
        assert len(set(pairs)) == len(pairs) == N_WRITERS * N_ANSWERS
    print(f"{N_WRITERS} writers x {N_ANSWERS} saves in {time.perf_counter() - begun:.1f} s")
    engine.dispose()


def _crashing_writer(url: str, reader_id: int, case_ids: list[int], ready: mp.Event) -> None:
    """Commits the first case, then holds an unfinished save of the second until it is killed."""
    engine = make_engine(url)
    factory = make_session_factory(engine)
    with session_scope(factory) as s:
        save_read(s, s.get(Reader, reader_id), case_ids[0], expected_version=0, answers={"realism": 5},
                  masks={0: np.ones((4, 5), bool)})
    session = factory()
    save_read(session, session.get(Reader, reader_id), case_ids[1], expected_version=0, answers={"realism": 1},
              masks={0: np.ones((4, 5), bool)})  # flushed to the database file's WAL, never committed
    ready.set()
    time.sleep(600)


def test_a_writer_killed_mid_transaction_loses_only_its_unfinished_save(db_url):
    engine, factory = _factory(db_url)
    _, ann_id, _, study_id = _study(factory)
    with session_scope(factory) as s:
        order = [c.id for c, _ in reading_list(s, _get(s, ann_id), study_id)]
    context = _processes()
    ready = context.Event()
    writer = context.Process(target=_crashing_writer, args=(db_url, ann_id, order, ready))
    writer.start()
    assert ready.wait(timeout=120)
    os.kill(writer.pid, signal.SIGKILL)
    writer.join()
    assert writer.exitcode == -signal.SIGKILL
    if db_url.startswith("sqlite"):
        with sqlite3.connect(make_url(db_url).database) as raw:
            assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with session_scope(factory) as s:
        reads = {r.case_id: r for r in s.scalars(select(CaseRead))}
        assert reads[order[0]].version == 1 and [a.value_int for a in reads[order[0]].answers] == [5]
        assert order[1] not in reads  # the killed save left nothing behind
        assert s.scalar(select(func.count(Mask.id))) == 1
        # The database takes new writes at once: the lock died with the process.
        save_read(s, _get(s, ann_id), order[1], expected_version=0, answers={"realism": 2})
    engine.dispose()


N_RACERS, N_ROUNDS = 8, 4


def _racer(url: str, reader_id: int, case_id: int, barrier, results) -> None:
    """One tab of the same reader. Each round: wait for every tab, save the case from that round's
    version at once, report the outcome, wait for every tab again."""
    engine = make_engine(url, busy_timeout_ms=60_000)
    factory = make_session_factory(engine)
    with engine.connect():  # connect before the race, so connecting is not what orders the tabs
        pass
    for version in range(N_ROUNDS):
        barrier.wait()
        try:
            with session_scope(factory) as s:
                save_read(s, s.get(Reader, reader_id), case_id, expected_version=version, answers={"realism": 3})
            results.put((version, "saved"))
        except StudyError as error:
            results.put((version, "refused" if "saved again" in str(error) else f"other StudyError: {error}"))
        except Exception as error:  # noqa: BLE001 - the outcome the test must never see
            results.put((version, f"{type(error).__name__}: {error}"))
        barrier.wait()
    engine.dispose()


def test_racing_saves_of_one_case_store_exactly_one_per_version(db_url):
    """Eight tabs of one reader save the same case from the same version at once, four rounds (the
    first creates the read): each round exactly one is stored, the others are refused with the
    stale-version message; nothing raises a raw database error and no update is lost."""
    engine, factory = _factory(db_url)
    _, ann_id, _, study_id = _study(factory, n_cases=1)
    with session_scope(factory) as s:
        case_id = reading_list(s, _get(s, ann_id), study_id)[0][0].id
    context = _processes()
    barrier, results = context.Barrier(N_RACERS), context.Queue()
    racers = [context.Process(target=_racer, args=(db_url, ann_id, case_id, barrier, results))
              for _ in range(N_RACERS)]
    for r in racers:
        r.start()
    outcomes = [results.get(timeout=300) for _ in range(N_RACERS * N_ROUNDS)]
    for r in racers:
        r.join(timeout=60)
    for version in range(N_ROUNDS):
        this_round = sorted(o for v, o in outcomes if v == version)
        assert this_round == ["refused"] * (N_RACERS - 1) + ["saved"], (version, this_round)
    with session_scope(factory) as s:
        assert [r.version for r in s.scalars(select(CaseRead))] == [N_ROUNDS]
        assert s.scalar(select(func.count(Answer.id))) == 1
    engine.dispose()


def _signup(url: str, username: str, barrier, results) -> None:
    engine = make_engine(url, busy_timeout_ms=60_000)
    factory = make_session_factory(engine)
    with engine.connect():
        pass
    barrier.wait()
    try:
        with session_scope(factory) as s:
            create_account(s, username, "a-long-password")
        results.put("created")
    except StudyError as error:
        results.put("taken" if "taken" in str(error) else f"other StudyError: {error}")
    except Exception as error:  # noqa: BLE001
        results.put(f"{type(error).__name__}: {error}")
    engine.dispose()


def test_racing_sign_ups_for_one_username_create_one_account(db_url):
    """Six sign-ups for one name at once: one account; the others get the "taken" refusal (on
    PostgreSQL they all pass the check and meet at the unique constraint), no raw IntegrityError."""
    engine, factory = _factory(db_url)
    context = _processes()
    barrier, results = context.Barrier(6), context.Queue()
    racers = [context.Process(target=_signup, args=(db_url, "zoe", barrier, results)) for _ in range(6)]
    for r in racers:
        r.start()
    outcomes = sorted(results.get(timeout=120) for _ in racers)
    for r in racers:
        r.join(timeout=60)
    assert outcomes == ["created"] + ["taken"] * 5, outcomes
    with session_scope(factory) as s:
        assert s.scalar(select(func.count()).select_from(Reader)) == 1
    engine.dispose()


def test_a_submit_needs_every_required_question_of_its_arm_a_draft_does_not(db):
    with session_scope(db) as s:
        admin = create_account(s, "admin", "admin-pass-1", Role.ADMIN)
        ann, bob = create_account(s, "ann", "ann-password"), create_account(s, "bob", "bob-password")
        study = create_study(s, admin, "Required", [CaseSpec("case0", "/scans/case0.nii.gz", (4, 5, 2))],
                             {ann.id: Arm.AI, bob.id: Arm.UNAIDED}, seed=7)  # the default questions
        case_id, ann_id, bob_id = study.cases[0].id, ann.id, bob.id
    with session_scope(db) as s:
        ann, bob = _get(s, ann_id), _get(s, bob_id)
        with pytest.raises(StudyError, match="still open: How realistic is this image.*heatmap.*actionable"):
            save_read(s, ann, case_id, expected_version=0, answers={"artifact_present": True})
        with pytest.raises(StudyError, match="still open"):  # an empty submit (Ctrl+Enter on a blank form)
            save_read(s, bob, case_id, expected_version=0, answers={"realism": None})
        draft = save_read(s, ann, case_id, expected_version=0, answers={"realism": 3}, submit=False)
        assert draft.submitted_at is None and draft.version == 1
        with pytest.raises(StudyError, match="still open: How useful is the heatmap"):
            save_read(s, ann, case_id, expected_version=1, answers={"artifact_present": True, "actionable": 2})
        done = save_read(s, ann, case_id, expected_version=1,  # the stored draft answer counts; the comment is optional
                         answers={"artifact_present": True, "actionable": 2, "heatmap_useful": 4})
        assert done.submitted_at is not None
        # bob's arm is not asked the heatmap question, so it is not required of him
        assert save_read(s, bob, case_id, expected_version=0,
                         answers={"realism": 2, "artifact_present": False, "actionable": 1}).submitted_at is not None
    with session_scope(db) as s:
        assert progress(s, s.get(Reader, admin.id), study.id) == {"ann": (1, 1), "bob": (1, 1)}


def test_a_blinded_reader_is_never_handed_the_truth_or_the_ai_output(db):
    from dataclasses import fields

    with session_scope(db) as s:
        admin = create_account(s, "admin", "admin-pass-1", Role.ADMIN)
        ann, bob = create_account(s, "ann", "ann-password"), create_account(s, "bob", "bob-password")
        spec = CaseSpec("case0", "/scans/case0.nii.gz", (4, 5, 2), ai_heatmap_path="/scans/case0_heatmap.npy",
                        ai_score=0.93, ai_tau=0.8, ai_profile="mri_t1", ai_flags=[True, False], truth="artifact",
                        truth_mask_path="/scans/case0_truth.npy")
        study = create_study(s, admin, "Blind", [spec], {ann.id: Arm.AI, bob.id: Arm.UNAIDED})
        ids = study.id, study.cases[0].id, ann.id, bob.id
    study_id, case_id, ann_id, bob_id = ids
    with session_scope(db) as s:
        ann, bob = _get(s, ann_id), _get(s, bob_id)
        (blind, _), = reading_list(s, bob, study_id)
        assert blind == reader_case(s, bob, case_id) == next_case(s, bob, study_id)
        assert (blind.ai_heatmap_path, blind.ai_score, blind.ai_tau, blind.ai_flags) == (None, None, None, None)
        assert {"truth", "truth_mask_path"}.isdisjoint(f.name for f in fields(blind))
        (aided, _), = reading_list(s, ann, study_id)
        assert (aided.ai_heatmap_path, aided.ai_score, aided.ai_tau, aided.ai_flags) == (
            "/scans/case0_heatmap.npy", 0.93, 0.8, [True, False])
        assert (aided.name, aided.scan_path, aided.display_shape) == ("case0", "/scans/case0.nii.gz", (4, 5, 2))
        with pytest.raises(StudyError):
            reader_case(s, create_account(s, "eve", "eve-password"), case_id)  # not her study


def test_a_draft_autosaves_the_open_form_without_a_save_and_the_next_save_spends_it(db):
    _, ann_id, bob_id, study_id = _study(db)
    drawn = np.zeros((4, 5), bool)
    drawn[1:3, 1:4] = True
    with session_scope(db) as s:
        ann = _get(s, ann_id)
        case = next_case(s, ann, study_id)
        assert load_draft(s, ann, case.id) is None
        save_draft(s, ann, case.id, expected_version=0, answers={"realism": 2, "artifact_present": True},
                   masks={1: drawn, 0: np.zeros((4, 5), bool)})
        save_draft(s, ann, case.id, expected_version=0, answers={"realism": 4, "artifact_present": True,
                                                               "comment": "left frontal"}, masks={1: drawn})
    with session_scope(db) as s:  # a reload, or the next sign-in
        ann = _get(s, ann_id)
        answers, masks, saved_at = load_draft(s, ann, case.id)
        assert answers == {"realism": 4, "artifact_present": 1, "comment": "left frontal"}  # as answers store them
        assert list(masks) == [1] and np.array_equal(masks[1], drawn) and saved_at.tzinfo is not None
        read = open_case(s, ann, case.id)
        assert read.version == 0 and read.answers == [] and read.submitted_at is None  # a draft is not a save
        assert progress(s, _get(s, 1), study_id)["ann"] == (0, 3)
        with pytest.raises(StudyError, match="must be a whole number from 1 to 5"):
            save_draft(s, ann, case.id, expected_version=0, answers={"realism": 9})
        with pytest.raises(StudyError):  # not bob's arm's question, and not his draft to read
            save_draft(s, _get(s, bob_id), case.id, expected_version=0, answers={"heatmap_useful": 3})
        assert load_draft(s, _get(s, bob_id), case.id) is None
        save_read(s, ann, case.id, expected_version=0, answers={"realism": 4}, masks=masks)
    with session_scope(db) as s:
        assert load_draft(s, _get(s, ann_id), case.id) is None  # spent by the save
        save_draft(s, _get(s, ann_id), case.id, expected_version=0, answers={"realism": 1})  # a stale tab's form
        assert load_draft(s, _get(s, ann_id), case.id) is None  # never restored over the newer save


def test_only_an_admin_adds_accounts(db):
    with session_scope(db) as s:
        admin = create_first_admin(s, "chief", "chief-password")
        ann = create_reader(s, admin, "ann", "ann-password")
        assert (ann.role, ann.username) == (Role.READER, "ann")
        with pytest.raises(StudyError, match="only an admin"):
            create_reader(s, ann, "mallory", "mallory-password", Role.ADMIN)
        second = create_reader(s, admin, "deputy", "deputy-password", Role.ADMIN)
        assert second.role is Role.ADMIN
    with session_scope(db) as s:
        assert s.scalars(select(Reader.username).order_by(Reader.id)).all() == ["chief", "ann", "deputy"]


def test_a_sign_in_waits_out_a_database_busy_past_its_busy_timeout_and_only_busy_errors_are_retried(tmp_path):
    """SQLite's write lock held by another process past the 50 ms busy timeout: without the retry the
    sign-in raised "database is locked" (as 6 of 50 readers did in scripts/bench_reader_study.py)."""
    import threading

    from db.session import retry_when_busy

    url = f"sqlite:///{tmp_path / 'busy.db'}"
    engine, _ = _factory(url)
    engine.dispose()
    impatient = make_engine(url, busy_timeout_ms=50)
    factory = make_session_factory(impatient)
    with session_scope(factory) as s:
        create_account(s, "ann", "ann-password")
    holder = sqlite3.connect(tmp_path / "busy.db", isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock for 0.6 s
    threading.Timer(0.6, holder.rollback).start()
    began = time.perf_counter()
    assert sign_in(lambda: session_scope(factory), "ann", "ann-password") is not None
    assert time.perf_counter() - began >= 0.5  # it waited for the lock instead of failing
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise OperationalError("BEGIN IMMEDIATE", {}, sqlite3.OperationalError("database is locked"))
        return "stored"

    assert retry_when_busy(flaky, first_wait=0.01) == "stored" and len(calls) == 3
    with pytest.raises(OperationalError, match="no such table"):  # not a busy database: raised at once
        retry_when_busy(lambda: (_ for _ in ()).throw(
            OperationalError("SELECT", {}, sqlite3.OperationalError("no such table: x"))), first_wait=0.01)
    holder.close()
    impatient.dispose()


def test_a_read_scope_reads_at_once_while_another_connection_holds_the_write_lock(tmp_path):
    """A page read must not queue behind a save: a read_scope begins with a deferred BEGIN, which on
    WAL reads the last commit without the write lock. With BEGIN IMMEDIATE it would wait out the
    2 s busy timeout and fail, as a session_scope read does."""
    url = f"sqlite:///{tmp_path / 'locked.db'}"
    engine, factory = _factory(url)
    with session_scope(factory) as s:
        create_account(s, "ann", "ann-password")
    engine.dispose()
    engine = make_engine(url, busy_timeout_ms=2000)
    factory = make_session_factory(engine)
    writer = make_engine(url)
    with writer.connect() as holder:
        holder.begin()  # BEGIN IMMEDIATE: the write lock, held until the rollback below
        holder.execute(text("INSERT INTO reader (username, password_hash, role, created_at) "
                            "VALUES ('uncommitted', 'x', 'reader', CURRENT_TIMESTAMP)"))
        began = time.perf_counter()
        with read_scope(factory) as s:
            names = s.scalars(select(Reader.username)).all()
        assert time.perf_counter() - began < 0.5
        assert names == ["ann"]  # the last commit, not the writer's row
        began = time.perf_counter()
        with pytest.raises(OperationalError, match="locked"), session_scope(factory) as s:
            s.scalars(select(Reader.username)).all()
        assert time.perf_counter() - began >= 1.5  # a write unit of work waits for the lock
        holder.rollback()
    writer.dispose()
    engine.dispose()


def test_a_write_inside_a_read_scope_raises_and_stores_nothing(db):
    _, ann_id, _, study_id = _study(db)
    attempts = [
        lambda s: s.add(Reader(username="mallory", password_hash="x")),  # refused at the flush
        lambda s: setattr(_get(s, ann_id), "username", "renamed"),
        lambda s: s.execute(delete(Reader).where(Reader.id == ann_id)),  # ORM DML
        lambda s: s.execute(update(Reader).values(username="renamed")),
        lambda s: open_case(s, _get(s, ann_id), find_read_case(s)),  # creates the read on a first visit
        lambda s: s.commit(),
    ]

    def find_read_case(s):
        return reading_list(s, _get(s, ann_id), study_id)[0][0].id

    for attempt in attempts:
        with pytest.raises(ReadOnlyError), read_scope(db) as s:
            attempt(s)
            s.flush()
    postgres = db.kw["bind"].dialect.name == "postgresql"
    with pytest.raises(DBAPIError, match="read-only") if postgres else contextlib.nullcontext(), read_scope(db) as s:
        s.execute(text("DELETE FROM answer"))  # raw SQL: PostgreSQL refuses it; SQLite rolls it back
        s.execute(text("UPDATE reader SET username = username || '2'"))
    with session_scope(db) as s:
        assert s.scalars(select(Reader.username).order_by(Reader.id)).all() == ["admin", "ann", "bob"]
        assert s.scalar(select(func.count(CaseRead.id))) == 0


def test_a_read_scope_sees_what_a_session_scope_sees(db):
    admin_id, ann_id, _, study_id = _study(db)
    drawn = np.eye(4, 5, dtype=bool)  # a diagonal stroke
    with session_scope(db) as s:
        ann = _get(s, ann_id)
        first, second, third = (case.id for case, _ in reading_list(s, ann, study_id))
        save_read(s, ann, first, expected_version=0, answers={"realism": 3}, masks={1: drawn}, seconds=4.0)
        save_draft(s, ann, second, expected_version=0, answers={"realism": 5})

    def page(scope):
        """What the Reading, Study admin and Results pages load, as plain values."""
        with scope(db) as s:
            ann, admin = _get(s, ann_id), _get(s, admin_id)
            read = find_read(s, ann, first)
            shown = ([(case, None if r is None else (r.version, r.submitted_at is not None))
                      for case, r in reading_list(s, ann, study_id)],
                     read.version, read.seconds_spent, {a.question: a.value_int for a in read.answers},
                     {i: m.tolist() for i, m in read_masks(read).items()}, find_read(s, ann, second).version,
                     find_read(s, ann, third), load_draft(s, ann, second)[0], reader_case(s, ann, first),
                     progress(s, admin, study_id), answers_table(s, admin, study_id),
                     [(case.id, name, arm, {i: m.tolist() for i, m in masks.items()})
                      for case, name, arm, masks in study_masks(s, admin, study_id)])
        return ann, shown

    (ann_read, shown), (ann_written, expected) = page(read_scope), page(session_scope)
    assert shown == expected
    assert ann_read.username == ann_written.username == "ann"  # loaded objects stay readable after the block
    assert shown[1:4] == (1, 4.0, {"realism": 3}) and shown[4] == {1: drawn.tolist()}
    assert shown[6] is None and shown[7] == {"realism": 5}  # the third case was never opened: no read made
    assert sign_in(lambda: session_scope(db), "ann", "ann-password", open_read=lambda: read_scope(db)) == ann_id
    with pytest.raises(SignInRefused):  # a failure is still recorded, by sign-in's write step
        sign_in(lambda: session_scope(db), "bob", "wrong-password", open_read=lambda: read_scope(db))
    with read_scope(db) as s:
        assert s.get(SignInThrottle, "bob").failures == 1
