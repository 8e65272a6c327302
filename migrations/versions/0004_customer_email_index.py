"""customers: an index on lower(email), which the CSV importer matches customers by

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_customers_email_lower', 'customers', [sa.text('lower(email)')])


def downgrade() -> None:
    op.drop_index('ix_customers_email_lower', table_name='customers')
