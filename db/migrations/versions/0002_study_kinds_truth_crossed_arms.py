"""Study kinds and settings, case truth, crossed arms (one assignment and one read per reader and arm).

* ``study.kind`` (rating, visual_turing, two_arm) and ``study.settings`` (JSON); existing studies
  become ``rating`` studies with empty settings.
* ``study_case.truth`` and ``study_case.truth_mask_path`` (nullable).
* ``assignment.block`` (the reader's session number, 0 for existing rows); the unique key becomes
  (study, reader, arm).
* ``case_read.arm``, filled for existing reads from the reader's assignment; the unique key
  becomes (case, reader, arm).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 12:40:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0002'
down_revision: Union[str, Sequence[str], None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('study', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.Enum('rating', 'visual_turing', 'two_arm', name='studykind',
                                                      native_enum=False, length=32),
                                      nullable=False, server_default='rating'))
        batch_op.add_column(sa.Column('settings', sa.JSON(), nullable=False, server_default=sa.text("'{}'")))

    with op.batch_alter_table('study_case', schema=None) as batch_op:
        batch_op.add_column(sa.Column('truth', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('truth_mask_path', sa.String(length=1024), nullable=True))

    with op.batch_alter_table('assignment', schema=None) as batch_op:
        batch_op.add_column(sa.Column('block', sa.Integer(), nullable=False, server_default='0'))
        batch_op.drop_constraint('uq_assignment_study_id_reader_id', type_='unique')
        batch_op.create_unique_constraint(batch_op.f('uq_assignment_study_id_reader_id_arm'),
                                          ['study_id', 'reader_id', 'arm'])

    with op.batch_alter_table('case_read', schema=None) as batch_op:
        batch_op.add_column(sa.Column('arm', sa.Enum('unaided', 'ai', name='arm', native_enum=False, length=16),
                                      nullable=True))
    # Until now a reader had one arm per study: copy it onto their reads.
    op.execute(
        "UPDATE case_read SET arm = (SELECT assignment.arm FROM assignment JOIN study_case "
        "ON study_case.study_id = assignment.study_id WHERE study_case.id = case_read.case_id "
        "AND assignment.reader_id = case_read.reader_id)"
    )
    op.execute("UPDATE case_read SET arm = 'unaided' WHERE arm IS NULL")
    with op.batch_alter_table('case_read', schema=None) as batch_op:
        batch_op.alter_column('arm', existing_type=sa.Enum('unaided', 'ai', name='arm', native_enum=False,
                                                            length=16), nullable=False)
        batch_op.drop_constraint('uq_case_read_case_id_reader_id', type_='unique')
        batch_op.create_unique_constraint(batch_op.f('uq_case_read_case_id_reader_id_arm'),
                                          ['case_id', 'reader_id', 'arm'])


def downgrade() -> None:
    # A crossed study's second arm has no place in the old schema: its reads are dropped.
    op.execute("DELETE FROM case_read WHERE id NOT IN (SELECT MIN(id) FROM case_read GROUP BY case_id, reader_id)")
    op.execute("DELETE FROM assignment WHERE id NOT IN (SELECT MIN(id) FROM assignment GROUP BY study_id, reader_id)")
    with op.batch_alter_table('case_read', schema=None) as batch_op:
        batch_op.drop_constraint('uq_case_read_case_id_reader_id_arm', type_='unique')
        batch_op.create_unique_constraint('uq_case_read_case_id_reader_id', ['case_id', 'reader_id'])
        batch_op.drop_column('arm')
    with op.batch_alter_table('assignment', schema=None) as batch_op:
        batch_op.drop_constraint('uq_assignment_study_id_reader_id_arm', type_='unique')
        batch_op.create_unique_constraint('uq_assignment_study_id_reader_id', ['study_id', 'reader_id'])
        batch_op.drop_column('block')
    with op.batch_alter_table('study_case', schema=None) as batch_op:
        batch_op.drop_column('truth_mask_path')
        batch_op.drop_column('truth')
    with op.batch_alter_table('study', schema=None) as batch_op:
        batch_op.drop_column('settings')
        batch_op.drop_column('kind')
