"""voicemail: messages callers left, for agents

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('voicemails',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('call_sid', sa.String(length=64), nullable=False),
    sa.Column('recording_sid', sa.String(length=64), nullable=False),
    sa.Column('recording_url', sa.String(length=500), nullable=False),
    sa.Column('duration', sa.Integer(), nullable=True),
    sa.Column('caller', sa.String(length=32), nullable=False),
    sa.Column('caller_key', sa.String(length=64), nullable=True),
    sa.Column('account_id', sa.Integer(), nullable=True),
    sa.Column('verification', sa.String(length=10), nullable=False),
    sa.Column('methods', sa.JSON(), nullable=False),
    sa.Column('language', sa.String(length=16), nullable=False),
    sa.Column('flow', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('handled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('handled_by', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('recording_sid')
    )
    op.create_index('ix_voicemails_created_at', 'voicemails', ['created_at'], unique=False)
    op.create_index(op.f('ix_voicemails_call_sid'), 'voicemails', ['call_sid'], unique=False)
    op.create_index(op.f('ix_voicemails_caller_key'), 'voicemails', ['caller_key'], unique=False)
    op.create_index(op.f('ix_voicemails_account_id'), 'voicemails', ['account_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_voicemails_account_id'), table_name='voicemails')
    op.drop_index(op.f('ix_voicemails_caller_key'), table_name='voicemails')
    op.drop_index(op.f('ix_voicemails_call_sid'), table_name='voicemails')
    op.drop_index('ix_voicemails_created_at', table_name='voicemails')
    op.drop_table('voicemails')
