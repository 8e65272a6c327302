"""agent line: staff PINs and the queue's takes

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # issue 15 groundwork: filled in with the table(s)


def downgrade() -> None:
    pass
