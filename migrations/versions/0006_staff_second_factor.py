"""staff second factor: TOTP secret and last accepted step on agent users, recovery codes;
when their sessions were last ended

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: existing accounts have no second factor until `ivr users totp-reset`.
    op.add_column('agent_users', sa.Column('totp_secret', sa.String(length=255), nullable=True))
    op.add_column('agent_users', sa.Column('totp_last_step', sa.BigInteger(), nullable=True))
    op.add_column('agent_users', sa.Column('sessions_valid_after', sa.Float(), nullable=True))
    op.create_table('agent_recovery_codes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['agent_users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_agent_recovery_codes_user_id'), 'agent_recovery_codes', ['user_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_agent_recovery_codes_user_id'), table_name='agent_recovery_codes')
    op.drop_table('agent_recovery_codes')
    # batch mode: SQLite cannot drop a column in place.
    with op.batch_alter_table('agent_users') as batch:
        batch.drop_column('sessions_valid_after')
        batch.drop_column('totp_last_step')
        batch.drop_column('totp_secret')
