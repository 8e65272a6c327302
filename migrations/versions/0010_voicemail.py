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
    pass  # issue 15 groundwork: filled in with the table(s)


def downgrade() -> None:
    pass
