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

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run every migration up to ``revision`` on ``engine``'s database, in one transaction."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def main(argv: list[str] | None = None) -> int:
    from db.session import make_engine

    args = sys.argv[1:] if argv is None else argv
    engine = make_engine(args[0] if args else None)
    upgrade(engine)
    print(f"{engine.url.render_as_string(hide_password=True)} is at the newest schema")
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
