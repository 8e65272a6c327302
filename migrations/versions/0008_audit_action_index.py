"""audit action index: the ops console's audit page reads the newest events of a few
actions without scanning every call's events

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from alembic import op


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_audit_events_action_id', 'audit_events', ['action', 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_audit_events_action_id', table_name='audit_events')
