"""webhook deliveries (outbox with retry schedule), attempt numbering, idempotency keys

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 05:50:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('webhook_deliveries',
    sa.Column('id', ID, autoincrement=True, nullable=False),
    sa.Column('request_id', sa.String(length=36), nullable=False),
    sa.Column('event_id', sa.String(length=64), nullable=False),
    sa.Column('event_type', sa.String(length=64), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_status_code', sa.Integer(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('replay_of', ID, nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['request_id'], ['requests.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_webhook_deliveries_request_id'), ['request_id'], unique=False)
        batch_op.create_index('ix_webhook_deliveries_state_next', ['state', 'next_attempt_at'], unique=False)

    with op.batch_alter_table('webhook_attempts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('delivery_id', ID, nullable=True))
        batch_op.add_column(sa.Column('attempt_no', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_webhook_attempts_delivery_id'), ['delivery_id'], unique=False)
        batch_op.create_foreign_key(
            'fk_webhook_attempts_delivery_id', 'webhook_deliveries', ['delivery_id'], ['id'], ondelete='CASCADE'
        )

    with op.batch_alter_table('requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('idempotency_key', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('request_hash', sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint('uq_requests_owner_idempotency_key', ['owner', 'idempotency_key'])


def downgrade() -> None:
    with op.batch_alter_table('requests', schema=None) as batch_op:
        batch_op.drop_constraint('uq_requests_owner_idempotency_key', type_='unique')
        batch_op.drop_column('request_hash')
        batch_op.drop_column('idempotency_key')

    with op.batch_alter_table('webhook_attempts', schema=None) as batch_op:
        batch_op.drop_constraint('fk_webhook_attempts_delivery_id', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_webhook_attempts_delivery_id'))
        batch_op.drop_column('attempt_no')
        batch_op.drop_column('delivery_id')

    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_webhook_deliveries_state_next')
        batch_op.drop_index(batch_op.f('ix_webhook_deliveries_request_id'))

    op.drop_table('webhook_deliveries')
