"""re-runs: requests.reruns and requests.rerun_open (a re-run of a final request sends request.updated)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 17:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('requests') as batch:
        batch.add_column(sa.Column('reruns', sa.Integer(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('rerun_open', sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table('requests') as batch:
        batch.drop_column('rerun_open')
        batch.drop_column('reruns')
