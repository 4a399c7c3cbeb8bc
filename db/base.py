"""The declarative base every SAFEGEN model inherits from.

Constraint names follow a fixed convention so that Alembic can find them again. SQLite cannot
``ALTER`` a constraint: Alembic's batch mode rebuilds the table and has to name each constraint
it drops or recreates. Without a convention SQLite leaves them unnamed and a later migration has
nothing stable to refer to.
"""

from __future__ import annotations

from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

# The SQLAlchemy documentation's convention ("Configuring Constraint Naming Conventions"), with
# ``column_0_N_name`` so a composite index or unique constraint (one rating per reader and image)
# names all of its columns. Names longer than the dialect's limit are truncated with a
# deterministic hash suffix by SQLAlchemy. A ``CheckConstraint`` must be given ``name=``: the
# convention fills in ``%(constraint_name)s``, it does not invent one.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base for all models; its ``metadata`` is what Alembic compares against."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
