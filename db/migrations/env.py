"""Alembic environment: migrates the database of ``db.session.default_url()`` (or the connection passed in).

``db.migrate.upgrade`` hands over an open connection (``config.attributes["connection"]``), so the
app, the tests and ``alembic upgrade head`` all run the same scripts. ``render_as_batch`` lets
SQLite alter tables by rebuilding them.
"""

from alembic import context
from db import models  # noqa: F401  (registers the tables on Base.metadata)
from db.base import Base
from db.session import default_url, make_engine

target_metadata = Base.metadata


def run_migrations_offline() -> None:
    context.configure(url=default_url(), target_metadata=target_metadata, literal_binds=True,
                      render_as_batch=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True,
                          compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine()
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True,
                          compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
