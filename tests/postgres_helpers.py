"""A throw-away PostgreSQL cluster for the database tests, from Debian's ``postgresql`` package.

``make system-deps`` installs the package; :class:`ThrowawayPostgres` runs ``initdb`` into a fresh
temporary folder, starts the server on a free loopback port (no Unix socket outside that folder),
hands out one fresh database per test and removes everything on :meth:`stop`. Run as root, the
server runs as the ``postgres`` user (``runuser``), as PostgreSQL refuses root.

``fsync=off``: the tests kill client processes, never the server or the machine, so durability of
the server's files across a power cut is not what they measure; the server runs faster without it.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

DRIVER = "postgresql+psycopg"


def postgres_bin() -> Path | None:
    """The newest installed ``/usr/lib/postgresql/N/bin`` holding ``initdb`` and ``pg_ctl``, or None."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True)
    return next((c for c in candidates if (c / "initdb").is_file() and (c / "pg_ctl").is_file()), None)


def why_unavailable() -> str | None:
    """None when a throw-away cluster can be started here, else the reason."""
    if postgres_bin() is None:
        return "PostgreSQL server binaries not found: run `make system-deps` as root (apt-get install postgresql)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without `runuser`: cannot start PostgreSQL as the postgres user"
    try:
        import psycopg  # noqa: F401
    except ModuleNotFoundError:
        return "the psycopg driver is not installed (it is pinned in requirements.txt: run `make setup`)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThrowawayPostgres:
    """One cluster for a test session (see the module docstring)."""

    def __init__(self) -> None:
        self.bin = postgres_bin()
        self.folder = Path(tempfile.mkdtemp(prefix="safegen-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self.port = _free_port()
        self._names = itertools.count()
        self._as_postgres = os.geteuid() == 0

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_postgres else []
        done = subprocess.run([*prefix, *command], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            log = self.log.read_text()[-2000:] if self.log.is_file() else ""
            raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-2000:]}\n{log}")

    def start(self) -> "ThrowawayPostgres":
        if self._as_postgres:
            shutil.chown(self.folder, "postgres", "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                  "--no-sync")
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start")
        return self

    def url(self, database: str = "postgres") -> str:
        return f"{DRIVER}://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; its SQLAlchemy URL."""
        import psycopg

        name = f"t{next(self._names)}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
