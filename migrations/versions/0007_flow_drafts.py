"""flow drafts: the ops console's draft of each flow, kept in the database

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('flow_drafts',
    sa.Column('flow', sa.String(length=64), nullable=False),
    sa.Column('based_on', sa.String(length=64), nullable=True),
    sa.Column('files', sa.JSON(), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_by', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('flow')
    )


def downgrade() -> None:
    op.drop_table('flow_drafts')
