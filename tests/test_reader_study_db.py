"""Reader-study persistence: the Alembic schema, the repository's rules, concurrent writers, a killed writer.

Every test runs on SQLite and on a real PostgreSQL (the ``db_url`` fixture of ``conftest.py``
starts a throw-away cluster).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sqlite3
import time

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, inspect, select
from sqlalchemy.engine import make_url

from db.base import Base
from db.migrate import upgrade
from db.models import Answer, Arm, CaseRead, Mask, Reader, Role
from db.repository import (
    CaseSpec,
    StudyError,
    answers_table,
    authenticate,
    case_order,
    create_reader,
    create_study,
    next_case,
    open_case,
    progress,
    read_masks,
    reading_list,
    save_read,
    shows_ai,
    study_masks,
)
from db.session import make_engine, make_session_factory, session_scope


def _factory(url: str):
    engine = make_engine(url)
    upgrade(engine)
    return engine, make_session_factory(engine)


@pytest.fixture
def db(db_url):
    engine, factory = _factory(db_url)
    yield factory
    engine.dispose()


def _study(factory, n_cases: int = 3, shape=(4, 5, 2)):
    """An admin, two readers (AI arm and unaided) and a study of ``n_cases`` cases; returns their ids."""
    with session_scope(factory) as s:
        admin = create_reader(s, "admin", "admin-pass-1", Role.ADMIN)
        ann = create_reader(s, "ann", "ann-password")
        bob = create_reader(s, "bob", "bob-password")
        cases = [CaseSpec(f"case{i}", f"/scans/case{i}.nii.gz", shape) for i in range(n_cases)]
        study = create_study(s, admin, "Synthetic brains", cases, {ann.id: Arm.AI, bob.id: Arm.UNAIDED}, seed=7)
        return admin.id, ann.id, bob.id, study.id


def _get(s, reader_id):
    return s.get(Reader, reader_id)


def test_migrations_build_exactly_the_models_schema(db_url):
    engine, _ = _factory(db_url)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata)
        assert diff == [], diff
        tables = set(inspect(connection).get_table_names())
    assert {"reader", "study", "study_case", "assignment", "case_read", "answer", "mask", "alembic_version"} <= tables
    upgrade(engine)  # a second upgrade is a no-op
    engine.dispose()


def test_passwords_are_argon2_hashes_and_authenticate(db):
    with session_scope(db) as s:
        reader = create_reader(s, "carol", "correct horse")
        assert reader.password_hash.startswith("$argon2id$") and "correct horse" not in reader.password_hash
        assert authenticate(s, "carol", "correct horse").id == reader.id
        assert authenticate(s, "carol", "wrong horse") is None
        assert authenticate(s, "nobody", "correct horse") is None
        with pytest.raises(StudyError, match="taken"):
            create_reader(s, "carol", "another password")
        with pytest.raises(StudyError, match="8 characters"):
            create_reader(s, "dave", "short")


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
    _, ann_id, _, study_id = _study(db)
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
        assert progress(s, study_id) == {"ann": (1, 3), "bob": (0, 3)}


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
        stranger = create_reader(s, "eve", "eve-password")
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
        admin = create_reader(s, "admin", "admin-pass-1", Role.ADMIN)
        readers = [create_reader(s, f"r{i:02d}", "reader-password") for i in range(N_WRITERS)]
        cases = [CaseSpec(f"c{i}", f"/c{i}", (2, 2, 1)) for i in range(N_ANSWERS)]
        study_id = create_study(s, admin, "load", cases, {r.id: Arm.UNAIDED for r in readers}).id
    context = mp.get_context("spawn")
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
    context = mp.get_context("spawn")
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
    context = mp.get_context("spawn")
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
            create_reader(s, username, "a-long-password")
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
    context = mp.get_context("spawn")
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
