"""failure_class: why a URL failed, as a class (transient, permanent, refused, invalid_image, timeout, internal)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 01:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('image_results', sa.Column('failure_class', sa.String(16), nullable=True))


def downgrade() -> None:
    op.drop_column('image_results', 'failure_class')
