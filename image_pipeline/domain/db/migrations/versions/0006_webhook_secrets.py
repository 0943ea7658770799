"""webhook secrets: one Standard Webhooks signing secret per tenant, rotatable with an overlap

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 17:50:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table(
        'webhook_secrets',
        sa.Column('id', ID, primary_key=True, autoincrement=True),
        sa.Column('owner', sa.String(64), nullable=False),
        sa.Column('api_key_id', ID, sa.ForeignKey('api_keys.id', ondelete='SET NULL'), nullable=True),
        sa.Column('secret', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('retire_at', sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index('ix_webhook_secrets_owner', 'webhook_secrets', ['owner'])


def downgrade() -> None:
    op.drop_index('ix_webhook_secrets_owner', table_name='webhook_secrets')
    op.drop_table('webhook_secrets')
