"""Engines and sessions, built from a URL on demand.

Nothing is connected at import time: callers build one engine per process with
:func:`make_engine` (the Streamlit app caches it as a resource, a CLI builds it in ``main``) and
one session factory on top of it with :func:`make_session_factory`. An engine must not cross a
``fork``; a process started with ``spawn`` builds its own.

SQLite is the default and is tuned for several processes writing at once (Streamlit sessions, a
scoring CLI, a test run):

* ``journal_mode=WAL`` lets readers proceed while one writer commits.
* ``busy_timeout`` makes a connection that finds the database locked wait instead of failing at
  once with "database is locked".

Two kinds of transactions, each one short unit of work:

* **Writes** (:func:`session_scope`) begin with ``BEGIN IMMEDIATE``, which takes the write lock
  *before* the first read. The stdlib driver would otherwise begin lazily (only at the first
  INSERT/UPDATE), so two processes could both read a counter, both write ``value + 1`` and lose an
  update; or a deferred transaction holding a read snapshot would fail with ``SQLITE_BUSY`` on
  upgrade, which ``busy_timeout`` cannot wait out. With the lock taken up front, read-modify-write
  transactions queue behind each other and each sees the previous one's commit. The cost: they run
  one at a time per database file; they are short in this app.
* **Reads** (:func:`read_scope`: page loads, reading lists, exports) begin with a plain, deferred
  ``BEGIN``: with WAL they read a snapshot of the last commit without any lock a writer holds, so
  they never queue behind (or hold up) a save, however many readers click at once. They cannot
  write (a flush, ORM DML or a commit raises :class:`ReadOnlyError`) and they always roll back.

Any other URL (e.g. ``postgresql+psycopg://...``) is passed to SQLAlchemy unchanged, with
``pool_pre_ping`` so connections dropped by the server are replaced instead of raising. There a
write is an ordinary transaction (row locks, ``SELECT ... FOR UPDATE``, do the queuing) and a read
is one declared ``READ ONLY``, so the server refuses a write too.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import OperationalError  # also for ui/, which imports nothing of SQLAlchemy itself
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from core.resources import PROJECT_ROOT

T = TypeVar("T")

URL_ENV_VAR = "SAFEGEN_DB_URL"
DEFAULT_DB_PATH = PROJECT_ROOT / "data" / "safegen.db"
DEFAULT_BUSY_TIMEOUT_MS = 5000
READ_ONLY_OPTION = "safegen_read_only"
"""The execution option :func:`read_scope` sets on its connection: SQLite then begins with a deferred ``BEGIN``."""


class ReadOnlyError(RuntimeError):
    """A write (flush, ORM INSERT/UPDATE/DELETE, commit) attempted in a :func:`read_scope` unit of work."""


def default_url() -> str:
    """The database URL to use when none is given: ``$SAFEGEN_DB_URL``, else the project's file.

    Read at call time, so setting the variable after import (in a test, a launcher) still counts.
    """
    return os.environ.get(URL_ENV_VAR) or f"sqlite:///{DEFAULT_DB_PATH}"


DEFAULT_URL = default_url()
"""The URL as resolved at import; :func:`make_engine` re-reads the environment via :func:`default_url`."""


def make_engine(
    url: str | URL | None = None,
    *,
    echo: bool = False,
    busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
) -> Engine:
    """Build an engine for ``url`` (default :func:`default_url`).

    Args:
        url: any SQLAlchemy URL. ``sqlite:///path`` gets WAL, ``busy_timeout``, foreign keys and
            ``BEGIN IMMEDIATE`` transactions (``BEGIN`` for a :func:`read_scope`), and the file's
            parent folder is created.
            ``sqlite://`` (in memory) gets a single shared connection (``StaticPool``), so every
            session sees the same database, foreign keys and ``BEGIN IMMEDIATE``, but no WAL
            (memory databases have no journal file). Other URLs pass through with
            ``pool_pre_ping=True``.
        echo: log every statement (SQLAlchemy's ``echo``).
        busy_timeout_ms: how long a SQLite connection waits for another writer's lock before
            raising ``OperationalError: database is locked``.

    Returns:
        The engine. Nothing has connected yet; the first checkout opens the first connection.
    """
    url = make_url(url if url is not None else default_url())
    if url.get_backend_name() != "sqlite":
        return create_engine(url, echo=echo, pool_pre_ping=True)

    if _is_sqlite_memory(url):
        engine = create_engine(
            url,
            echo=echo,
            poolclass=StaticPool,
            # StaticPool hands its one connection to whichever thread asks (Streamlit runs each
            # session in its own thread); sqlite3 refuses that unless the check is off.
            connect_args={"check_same_thread": False},
        )
        _install_sqlite_listeners(engine, busy_timeout_ms=busy_timeout_ms, wal=False)
        return engine

    _sqlite_file_path(url).parent.mkdir(parents=True, exist_ok=True)
    # The default pool (5 + 10 connections, a 30 s wait) is kept on purpose: it is also the queue in
    # front of SQLite's write lock. With 100 connections, 50 readers x 50 saves had 102 saves and 2
    # sign-ins fail on "database is locked" (busy waits are polls, not a queue), against none.
    engine = create_engine(url, echo=echo)
    _install_sqlite_listeners(engine, busy_timeout_ms=busy_timeout_ms, wal=True)
    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """A ``sessionmaker`` bound to ``engine``; build one per process, next to the engine.

    ``expire_on_commit=False`` keeps loaded attributes readable after the commit, so a page can
    show the row it just saved without a second round trip (and without a detached-instance
    error once the session is closed).
    """
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit if the block finishes, roll back if it raises, always close.

    Example::

        with session_scope(factory) as session:
            session.add(rating)
    """
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@contextmanager
def read_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One read-only unit of work: never commits (it always rolls back), always closes.

    On SQLite its transaction begins with a deferred ``BEGIN`` instead of ``BEGIN IMMEDIATE``: in WAL
    mode it reads the last committed snapshot without waiting for a writer or holding one up. On
    PostgreSQL it is declared ``READ ONLY``. A write inside it raises :class:`ReadOnlyError` (a
    flush, autoflush included, an ORM ``insert``/``update``/``delete`` or a commit); nothing could be
    stored anyway, as the unit of work rolls back. Objects loaded in it stay readable after the block
    (their loaded attributes; lazy relationships are not loaded then).

    A deferred read on WAL meets ``SQLITE_BUSY`` only in rare moments: while another connection
    recovers the WAL index (the first open after a crash) or, as the last connection to close,
    cleans it up, or holds the database in exclusive locking mode. ``busy_timeout`` waits those out,
    so a page read needs no retry. A pool timeout (every pooled connection in use) can still meet
    any unit of work; wrap the block in :func:`retry_when_busy` where that matters: a read is always
    safe to run again.

    Example::

        with read_scope(factory) as session:
            titles = [study.title for study in studies_of(session, reader)]
    """
    session = factory()
    try:
        connection = session.connection(execution_options={READ_ONLY_OPTION: True})  # before the BEGIN
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("SET TRANSACTION READ ONLY")
        for name, guard in (("before_flush", _refuse_flush), ("do_orm_execute", _refuse_dml),
                            ("before_commit", _refuse_commit)):
            event.listen(session, name, guard)
        yield session
    finally:
        session.close()  # rolls back, without expiring what was loaded


def _refuse_flush(_session: Session, _context: Any, _instances: Any) -> None:
    raise ReadOnlyError("a read-only unit of work (read_scope) cannot store changes: use session_scope")


def _refuse_dml(state: Any) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        raise ReadOnlyError("a read-only unit of work (read_scope) cannot INSERT, UPDATE or DELETE: use session_scope")


def _refuse_commit(_session: Session) -> None:
    raise ReadOnlyError("a read-only unit of work (read_scope) never commits: use session_scope")


def is_busy(error: BaseException) -> bool:
    """True for the errors of a database that is only busy: SQLite's "database is locked" after its
    busy timeout, or no free connection in the pool within its timeout."""
    if isinstance(error, PoolTimeoutError):
        return True
    return isinstance(error, OperationalError) and "locked" in str(error.orig if error.orig else error).lower()


def retry_when_busy(work: Callable[[], T], *, attempts: int = 6, first_wait: float = 0.1) -> T:
    """Run ``work`` (one whole unit of work, e.g. a ``session_scope`` block) again when the database
    was busy (:func:`is_busy`), waiting 0.1, 0.2, 0.4 ... s (with jitter) between attempts; the last
    attempt's error is raised. Only for units that change nothing when they fail: SQLite's lock is
    taken at ``BEGIN IMMEDIATE`` and a pool timeout happens before the first statement; and any
    :func:`read_scope` block."""
    for attempt in range(attempts):
        try:
            return work()
        except (OperationalError, PoolTimeoutError) as error:
            if attempt == attempts - 1 or not is_busy(error):
                raise
            time.sleep(first_wait * 2**attempt * random.uniform(0.5, 1.5))
    raise AssertionError("unreachable")


def _is_sqlite_memory(url: URL) -> bool:
    """True for ``sqlite://``, ``sqlite:///:memory:`` and ``?mode=memory`` URIs."""
    return url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"


def _sqlite_file_path(url: URL) -> Path:
    """The file a SQLite URL points at, also for ``sqlite:///file:path?uri=true`` URLs."""
    database = url.database or ""
    if database.startswith("file:"):
        database = database.removeprefix("file:").split("?", 1)[0]
    return Path(database)


def _install_sqlite_listeners(engine: Engine, *, busy_timeout_ms: int, wal: bool) -> None:
    """Attach the per-connection pragmas and the ``BEGIN IMMEDIATE`` / ``BEGIN`` hook.

    This is the recipe from SQLAlchemy's SQLite dialect notes ("Enabling Non-Legacy SQLite
    Transactional Modes"): the driver stops issuing its own lazy ``BEGIN`` and SQLAlchemy issues
    ours at the start of each transaction. A side effect we want: DDL and SAVEPOINTs become
    transactional too (Alembic migrations roll back as a whole).
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _connection_record: Any) -> None:
        # Stop sqlite3 from emitting BEGIN itself (it would do so only before DML, too late to
        # protect a read that precedes the write). It still sends COMMIT/ROLLBACK correctly.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # busy_timeout first: switching a fresh file to WAL needs a lock that another
            # process may be holding at that moment.
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            if wal:
                cursor.execute("PRAGMA journal_mode=WAL")
                # In WAL mode NORMAL is still crash-safe for the database; a power cut can lose
                # the last commits, not corrupt the file. It avoids an fsync per commit.
                cursor.execute("PRAGMA synchronous=NORMAL")
            # SQLite leaves foreign keys off by default, per connection.
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # A read_scope set its option on this connection before the transaction began.
        read_only = connection.get_execution_options().get(READ_ONLY_OPTION, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
