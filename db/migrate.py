"""Bring a database to the newest schema with Alembic (the only way tables are created).

    python -m db.migrate [URL]        # default: $SAFEGEN_DB_URL or data/safegen.db

The app calls :func:`upgrade` once per process before its first query, so a fresh machine gets
its tables on the first visit and an older database is migrated in place.
"""

from __future__ import annotations

import sys
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

from db.session import make_engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run every migration up to ``revision`` on ``engine``'s database, in one transaction.

    On SQLite, foreign keys are off while the migrations run: SQLite alters a table by rebuilding it
    (copy, ``DROP``, rename), and with foreign keys on, the ``DROP`` of a parent table would delete
    every child row through ``ON DELETE CASCADE`` (a study's answers and masks). The pragma only
    takes effect outside a transaction, so it is set before the transaction begins; before the
    commit, ``PRAGMA foreign_key_check`` must find no broken reference.
    """
    config = alembic_config()
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as connection:
        raw = connection.connection.dbapi_connection
        if sqlite:
            raw.execute("PRAGMA foreign_keys=OFF")
        try:
            with connection.begin():
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
                if sqlite and (broken := connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()):
                    raise RuntimeError(f"the migration left broken foreign keys, rolled back: {broken[:5]}")
        finally:
            if sqlite:
                raw.execute("PRAGMA foreign_keys=ON")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    engine = make_engine(args[0] if args else None)
    upgrade(engine)
    print(f"{engine.url.render_as_string(hide_password=True)} is at the newest schema")
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
