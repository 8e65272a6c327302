"""phone number changes: phone_changes history, accounts.phone_changed_at

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('phone_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('old_e164', sa.String(length=16), nullable=False),
    sa.Column('new_e164', sa.String(length=16), nullable=False),
    sa.Column('changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('call_sid', sa.String(length=64), nullable=True),
    sa.Column('mode', sa.String(length=32), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('phone_changes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_phone_changes_account_id'), ['account_id'], unique=False)

    # Nullable, so existing accounts need no backfill: they have never changed number.
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('phone_changed_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_column('phone_changed_at')

    with op.batch_alter_table('phone_changes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_phone_changes_account_id'))

    op.drop_table('phone_changes')
