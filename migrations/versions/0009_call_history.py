"""call history: each ended call's summary and the steps of its timeline

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('calls',
    sa.Column('call_sid', sa.String(length=64), nullable=False),
    sa.Column('flow', sa.String(length=64), nullable=False),
    sa.Column('version', sa.String(length=64), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('duration', sa.Integer(), nullable=True),
    sa.Column('ivr_seconds', sa.Float(), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('outcome', sa.String(length=20), nullable=False),
    sa.Column('verification', sa.String(length=10), nullable=False),
    sa.Column('methods', sa.JSON(), nullable=False),
    sa.Column('identity', sa.String(length=32), nullable=False),
    sa.Column('caller', sa.String(length=32), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=True),
    sa.Column('language', sa.String(length=16), nullable=False),
    sa.Column('transfer_reason', sa.String(length=200), nullable=True),
    sa.Column('failure', sa.String(length=64), nullable=True),
    sa.Column('last_node', sa.String(length=200), nullable=True),
    sa.Column('flags', sa.JSON(), nullable=False),
    sa.Column('caller_key', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('call_sid')
    )
    op.create_index('ix_calls_started_at', 'calls', ['started_at'], unique=False)
    op.create_index('ix_calls_flow_started_at', 'calls', ['flow', 'started_at'], unique=False)
    op.create_index(op.f('ix_calls_account_id'), 'calls', ['account_id'], unique=False)
    op.create_index(op.f('ix_calls_caller_key'), 'calls', ['caller_key'], unique=False)
    op.create_table('call_steps',
    sa.Column('call_sid', sa.String(length=64), nullable=False),
    sa.Column('seq', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('at_ms', sa.BigInteger(), nullable=False),
    sa.Column('event', sa.String(length=20), nullable=False),
    sa.Column('node', sa.String(length=200), nullable=True),
    sa.Column('exit', sa.String(length=200), nullable=True),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['call_sid'], ['calls.call_sid'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('call_sid', 'seq')
    )
    op.create_index('ix_call_steps_node_event', 'call_steps', ['node', 'event'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_call_steps_node_event', table_name='call_steps')
    op.drop_table('call_steps')
    op.drop_index(op.f('ix_calls_caller_key'), table_name='calls')
    op.drop_index(op.f('ix_calls_account_id'), table_name='calls')
    op.drop_index('ix_calls_flow_started_at', table_name='calls')
    op.drop_index('ix_calls_started_at', table_name='calls')
    op.drop_table('calls')
