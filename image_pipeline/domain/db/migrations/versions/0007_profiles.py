"""profiles: tenants' output profiles, the profile frozen into each request, every rendition made per URL

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 08:10:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table(
        'profiles',
        sa.Column('id', ID, primary_key=True, autoincrement=True),
        sa.Column('owner', sa.String(64), nullable=False),
        sa.Column('name', sa.String(32), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint('owner', 'name', name='uq_profiles_owner_name'),
    )
    op.add_column('requests', sa.Column('profile', sa.Text(), nullable=True))
    op.add_column('image_results', sa.Column('renditions', sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column('image_results', 'renditions')
    op.drop_column('requests', 'profile')
    op.drop_table('profiles')
