"""A study case keeps the tolerance, profile and slice flags its AI heatmap was scored with.

* ``study_case.ai_tau`` (float), ``study_case.ai_profile`` (string) and ``study_case.ai_flags``
  (JSON list of bools, one per display slice), all nullable: cases made before this revision keep
  NULL and are shown at the committed calibration's tau, as before.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06 14:00:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0003'
down_revision: Union[str, Sequence[str], None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('study_case', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ai_tau', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('ai_profile', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('ai_flags', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('study_case', schema=None) as batch_op:
        batch_op.drop_column('ai_flags')
        batch_op.drop_column('ai_profile')
        batch_op.drop_column('ai_tau')
