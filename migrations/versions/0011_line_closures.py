"""line hours: the emergency closure ops switch on and off

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # issue 15 groundwork: filled in with the table(s)


def downgrade() -> None:
    pass
