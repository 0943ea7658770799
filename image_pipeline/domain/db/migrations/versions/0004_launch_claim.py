"""launch claim: requests.launch_claimed_at (one run per request when the API fast path and the sensor race)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 05:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('requests') as batch:
        batch.add_column(sa.Column('launch_claimed_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('requests') as batch:
        batch.drop_column('launch_claimed_at')
