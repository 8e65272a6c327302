"""agent line: staff PINs and the phone "take next call" rings

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from alembic import op
import sqlalchemy as sa


revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: existing accounts have no PIN and no phone until `ivr users pin` / `phone`.
    op.add_column("agent_users", sa.Column("line_pin_hash", sa.String(length=255), nullable=True))
    op.add_column("agent_users", sa.Column("line_phone", sa.String(length=64), nullable=True))


def downgrade() -> None:
    # batch mode: SQLite cannot drop a column in place.
    with op.batch_alter_table("agent_users") as batch:
        batch.drop_column("line_phone")
        batch.drop_column("line_pin_hash")
