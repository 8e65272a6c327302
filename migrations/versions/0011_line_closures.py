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
    op.create_table('line_closures',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('line', sa.String(length=64), nullable=False),
    sa.Column('message', sa.String(length=100), nullable=False),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('closed_by', sa.String(length=64), nullable=False),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('opened_by', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    # At most one closure of a line is in force (not yet opened again).
    op.create_index('uq_line_closures_current', 'line_closures', ['line'], unique=True,
                    sqlite_where=sa.text('opened_at IS NULL'),
                    postgresql_where=sa.text('opened_at IS NULL'))


def downgrade() -> None:
    op.drop_index('uq_line_closures_current', table_name='line_closures',
                  sqlite_where=sa.text('opened_at IS NULL'),
                  postgresql_where=sa.text('opened_at IS NULL'))
    op.drop_table('line_closures')
