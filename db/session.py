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
* ``BEGIN IMMEDIATE`` at the start of every transaction takes the write lock *before* the first
  read. The stdlib driver would otherwise begin lazily (only at the first INSERT/UPDATE), so two
  processes could both read a counter, both write ``value + 1`` and lose an update; or a deferred
  transaction holding a read snapshot would fail with ``SQLITE_BUSY`` on upgrade, which
  ``busy_timeout`` cannot wait out. With the lock taken up front, read-modify-write transactions
  queue behind each other and each sees the previous one's commit. The cost: transactions on one
  database file, read-only ones included, run one at a time; they are short in this app.

Any other URL (e.g. ``postgresql+psycopg://...``) is passed to SQLAlchemy unchanged, with
``pool_pre_ping`` so connections dropped by the server are replaced instead of raising.
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
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from core.resources import PROJECT_ROOT

T = TypeVar("T")

URL_ENV_VAR = "SAFEGEN_DB_URL"
DEFAULT_DB_PATH = PROJECT_ROOT / "data" / "safegen.db"
DEFAULT_BUSY_TIMEOUT_MS = 5000


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
            ``BEGIN IMMEDIATE`` transactions, and the file's parent folder is created.
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
    taken at ``BEGIN IMMEDIATE`` and a pool timeout happens before the first statement."""
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
    """Attach the per-connection pragmas and the ``BEGIN IMMEDIATE`` hook.

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
        connection.exec_driver_sql("BEGIN IMMEDIATE")
