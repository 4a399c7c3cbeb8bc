"""Engine and session foundation: SQLite pragmas, foreign keys, concurrent writers, rollback.

The tables here are test-only and live on their own ``MetaData`` so ``db.base.Base.metadata``
(what Alembic compares against) never sees them.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
from sqlalchemy import (
    Column,
    ForeignKey,
    Integer,
    MetaData,
    Table,
    create_engine,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import StaticPool

from db.base import NAMING_CONVENTION, Base
from db.session import (
    DEFAULT_DB_PATH,
    URL_ENV_VAR,
    default_url,
    make_engine,
    make_session_factory,
    session_scope,
)

N_PROCESSES = 4
INCREMENTS_PER_PROCESS = 100


class _TestBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class _Parent(_TestBase):
    __tablename__ = "parent"
    id: Mapped[int] = mapped_column(primary_key=True)


class _Child(_TestBase):
    __tablename__ = "child"
    id: Mapped[int] = mapped_column(primary_key=True)
    parent_id: Mapped[int] = mapped_column(ForeignKey("parent.id"))


_counter_metadata = MetaData()
counter = Table(
    "counter",
    _counter_metadata,
    Column("id", Integer, primary_key=True),
    Column("value", Integer, nullable=False),
)


def _sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def _pragma(connection: Connection, name: str) -> object:
    return connection.exec_driver_sql(f"PRAGMA {name}").scalar()


def _create_counter(url: str, *, use_listeners: bool) -> None:
    engine = make_engine(url) if use_listeners else create_engine(url)
    _counter_metadata.create_all(engine)
    with session_scope(make_session_factory(engine)) as session:
        session.execute(counter.insert().values(id=1, value=0))
    engine.dispose()


def _read_counter(url: str) -> int:
    engine = create_engine(url)
    with engine.connect() as connection:
        value = connection.execute(select(counter.c.value).where(counter.c.id == 1)).scalar_one()
    engine.dispose()
    return value


def _increment_worker(url: str, use_listeners: bool, barrier, results) -> None:
    """Run in a spawned process: select the counter, write it back plus one, commit; repeat.

    Failed increments ("database is locked") are counted, not raised, so the parent can tell
    lost updates from errors.
    """
    engine = make_engine(url) if use_listeners else create_engine(url)
    factory = make_session_factory(engine)
    errors = 0
    barrier.wait(timeout=60)  # start together, or the first process may finish alone
    for _ in range(INCREMENTS_PER_PROCESS):
        try:
            with session_scope(factory) as session:
                value = session.execute(
                    select(counter.c.value).where(counter.c.id == 1)
                ).scalar_one()
                session.execute(update(counter).where(counter.c.id == 1).values(value=value + 1))
        except OperationalError:
            errors += 1
    engine.dispose()
    results.put(errors)


def _run_concurrent_increments(url: str, *, use_listeners: bool) -> tuple[int, int]:
    """Returns ``(final counter, failed increments)`` after 4 spawned processes x 100 increments."""
    _create_counter(url, use_listeners=use_listeners)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(N_PROCESSES)
    results = ctx.Queue()
    processes = [
        ctx.Process(target=_increment_worker, args=(url, use_listeners, barrier, results))
        for _ in range(N_PROCESSES)
    ]
    for process in processes:
        process.start()
    errors = sum(results.get(timeout=120) for _ in processes)
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0, f"worker exited with {process.exitcode}"
    return _read_counter(url), errors


def test_file_database_pragmas(tmp_path: Path) -> None:
    engine = make_engine(_sqlite_url(tmp_path / "pragmas.db"))
    with engine.connect() as connection:
        assert _pragma(connection, "journal_mode") == "wal"
        assert _pragma(connection, "foreign_keys") == 1
        assert _pragma(connection, "busy_timeout") == 5000
        assert _pragma(connection, "synchronous") == 1  # NORMAL
    engine.dispose()


def test_busy_timeout_is_configurable(tmp_path: Path) -> None:
    engine = make_engine(_sqlite_url(tmp_path / "timeout.db"), busy_timeout_ms=1234)
    with engine.connect() as connection:
        assert _pragma(connection, "busy_timeout") == 1234
    engine.dispose()


def test_parent_folder_is_created_with_the_engine(tmp_path: Path) -> None:
    db_path = tmp_path / "nested" / "deeper" / "safegen.db"
    engine = make_engine(_sqlite_url(db_path))
    assert db_path.parent.is_dir()
    assert not db_path.exists(), "building the engine must not connect"
    with engine.connect():
        pass
    assert db_path.exists()
    engine.dispose()


def test_default_url_reads_environment_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(URL_ENV_VAR, raising=False)
    assert default_url() == f"sqlite:///{DEFAULT_DB_PATH}"
    assert DEFAULT_DB_PATH.parent.name == "data"
    monkeypatch.setenv(URL_ENV_VAR, "sqlite://")
    assert default_url() == "sqlite://"
    engine = make_engine()
    assert engine.url.database is None  # in memory, from the variable
    engine.dispose()


def test_base_carries_naming_convention() -> None:
    assert set(NAMING_CONVENTION) == {"ix", "uq", "ck", "fk", "pk"}
    for key, template in NAMING_CONVENTION.items():
        assert Base.metadata.naming_convention[key] == template


def test_foreign_keys_are_enforced_and_named(tmp_path: Path) -> None:
    engine = make_engine(_sqlite_url(tmp_path / "fk.db"))
    _TestBase.metadata.create_all(engine)
    factory = make_session_factory(engine)

    with session_scope(factory) as session:
        session.add(_Parent(id=1))
    with session_scope(factory) as session:
        session.add(_Child(id=1, parent_id=1))
    with pytest.raises(IntegrityError, match="FOREIGN KEY constraint failed"):
        with session_scope(factory) as session:
            session.add(_Child(id=2, parent_id=999))

    with session_scope(factory) as session:
        assert session.scalars(select(_Child.id)).all() == [1]
    [foreign_key] = inspect(engine).get_foreign_keys("child")
    assert foreign_key["name"] == "fk_child_parent_id_parent"
    assert inspect(engine).get_pk_constraint("parent")["name"] == "pk_parent"
    engine.dispose()


def test_session_scope_rolls_back_on_error(tmp_path: Path) -> None:
    engine = make_engine(_sqlite_url(tmp_path / "rollback.db"))
    _TestBase.metadata.create_all(engine)
    factory = make_session_factory(engine)

    with pytest.raises(RuntimeError, match="boom"):
        with session_scope(factory) as session:
            session.add(_Parent(id=7))
            session.flush()  # the row really reached the database before the error
            raise RuntimeError("boom")

    with session_scope(factory) as session:
        assert session.get(_Parent, 7) is None
    engine.dispose()


def test_session_scope_commits_and_keeps_attributes_loaded(tmp_path: Path) -> None:
    engine = make_engine(_sqlite_url(tmp_path / "commit.db"))
    _TestBase.metadata.create_all(engine)
    factory = make_session_factory(engine)
    with session_scope(factory) as session:
        parent = _Parent(id=3)
        session.add(parent)
    assert parent.id == 3  # readable after close: expire_on_commit=False
    with session_scope(factory) as session:
        assert session.get(_Parent, 3) is not None
    engine.dispose()


def test_in_memory_engine_shares_one_database() -> None:
    engine = make_engine("sqlite://")
    assert isinstance(engine.pool, StaticPool)
    _TestBase.metadata.create_all(engine)
    factory = make_session_factory(engine)
    with session_scope(factory) as session:
        session.add(_Parent(id=1))
    with session_scope(factory) as session:
        assert session.get(_Parent, 1) is not None
    with engine.connect() as connection:
        assert _pragma(connection, "journal_mode") == "memory"
        assert _pragma(connection, "foreign_keys") == 1
    engine.dispose()


def test_non_sqlite_url_builds_engine_without_connecting() -> None:
    url = "postgresql+psycopg://u:p@localhost/db"
    try:
        engine = make_engine(url)
    except ModuleNotFoundError as exc:
        reason = f"building a {url.split(':')[0]} engine needs its driver, not installed: {exc}"
        print(reason)
        pytest.skip(reason)
    assert engine.dialect.name == "postgresql"
    assert engine.pool._pre_ping is True
    assert engine.pool.checkedout() == 0
    engine.dispose()


@pytest.mark.timeout(120)
def test_concurrent_read_modify_write_keeps_every_increment(tmp_path: Path) -> None:
    final, errors = _run_concurrent_increments(
        _sqlite_url(tmp_path / "counter.db"), use_listeners=True
    )
    print(f"with listeners: counter={final}, failed increments={errors}")
    assert errors == 0
    assert final == N_PROCESSES * INCREMENTS_PER_PROCESS


@pytest.mark.timeout(120)
def test_plain_engine_loses_increments_under_the_same_load(tmp_path: Path) -> None:
    """The counterfactual: default driver behaviour (lazy BEGIN, rollback journal) loses updates.

    The read runs outside any transaction, so two processes read the same value and both write
    it back plus one.
    """
    final, errors = _run_concurrent_increments(
        _sqlite_url(tmp_path / "counter_plain.db"), use_listeners=False
    )
    print(f"without listeners: counter={final}, failed increments={errors}")
    assert final < N_PROCESSES * INCREMENTS_PER_PROCESS
