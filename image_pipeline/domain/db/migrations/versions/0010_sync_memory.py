"""sync memory: per tenant, what each source URL gave (validators, content hash) and the outputs made from it

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 01:10:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'sync_sources',
        sa.Column('owner', sa.String(64), primary_key=True),
        sa.Column('url_hash', sa.String(64), primary_key=True),
        sa.Column('url', sa.Text(), nullable=False),
        sa.Column('etag', sa.Text(), nullable=True),
        sa.Column('last_modified', sa.String(64), nullable=True),
        sa.Column('content_hash', sa.String(64), nullable=False),
        sa.Column('bytes', sa.BigInteger(), nullable=False),
        sa.Column('seen_at', sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        'sync_outputs',
        sa.Column('owner', sa.String(64), primary_key=True),
        sa.Column('content_hash', sa.String(64), primary_key=True),
        sa.Column('settings_hash', sa.String(64), primary_key=True),
        sa.Column('outputs', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index('ix_sync_outputs_last_used', 'sync_outputs', ['last_used_at'])
    op.add_column('requests', sa.Column('force', sa.Boolean(), nullable=False, server_default=sa.false()))
    for column in (
        sa.Column('sync_status', sa.String(10), nullable=True),
        sa.Column('sync_via', sa.String(20), nullable=True),
        sa.Column('content_hash', sa.String(64), nullable=True),
        sa.Column('etag', sa.Text(), nullable=True),
        sa.Column('last_modified', sa.String(64), nullable=True),
    ):
        op.add_column('image_results', column)
    op.create_index('ix_image_results_content_hash', 'image_results', ['content_hash'])


def downgrade() -> None:
    op.drop_index('ix_image_results_content_hash', 'image_results')
    for name in ('last_modified', 'etag', 'content_hash', 'sync_via', 'sync_status'):
        op.drop_column('image_results', name)
    op.drop_column('requests', 'force')
    op.drop_index('ix_sync_outputs_last_used', 'sync_outputs')
    op.drop_table('sync_outputs')
    op.drop_table('sync_sources')
