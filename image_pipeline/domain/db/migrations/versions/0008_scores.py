"""scores: the perceptual score (SSIMULACRA2) of a URL's first output, on the sampled URLs

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 01:20:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('image_results', sa.Column('score', sa.Float(), nullable=True))


def downgrade() -> None:
    op.drop_column('image_results', 'score')
