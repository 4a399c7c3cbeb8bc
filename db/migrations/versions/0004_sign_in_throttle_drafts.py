"""Failed sign-ins per user name, and autosaved drafts of open cases.

* ``sign_in_throttle``: ``username`` (primary key; not a foreign key, so unknown names are
  throttled too), ``failures``, ``locked_until`` (nullable), ``last_failure_at``; for the
  back-off / lock-out of ``db.repository.sign_in``.
* ``draft``: one per case read (``read_id``, primary key, cascades with the read), the read's
  ``base_version``, ``answers`` and ``masks`` (JSON), ``updated_at``; ``db.repository.save_draft``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 19:40:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0004'
down_revision: Union[str, Sequence[str], None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        'sign_in_throttle',
        sa.Column('username', sa.String(length=64), nullable=False),
        sa.Column('failures', sa.Integer(), nullable=False),
        sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_failure_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('username'),
    )
    op.create_table(
        'draft',
        sa.Column('read_id', sa.Integer(), nullable=False),
        sa.Column('base_version', sa.Integer(), nullable=False),
        sa.Column('answers', sa.JSON(), nullable=False),
        sa.Column('masks', sa.JSON(), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['read_id'], ['case_read.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('read_id'),
    )


def downgrade() -> None:
    op.drop_table('draft')
    op.drop_table('sign_in_throttle')
