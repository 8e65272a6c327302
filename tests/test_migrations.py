"""Migrations without a journey of their own: 0004 (the importer's email index)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from schema import assert_schema_matches_models, index_names

from ivr.storage.migrate import alembic_config, upgrade

EMAIL_INDEX = "ix_customers_email_lower"


def test_migration_0004_adds_and_drops_the_email_index(scratch_database_url: str) -> None:
    url = scratch_database_url
    upgrade(url, "0003")
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            assert EMAIL_INDEX not in index_names(connection)
            connection.execute(
                sa.text(
                    "INSERT INTO customers (name, email, created_at)"
                    " VALUES ('Jane Doe', 'Jane@Example.com', CURRENT_TIMESTAMP)"
                )
            )
        upgrade(url, "0004")
        with engine.connect() as connection:
            assert EMAIL_INDEX in index_names(connection)
            found = connection.execute(
                sa.text("SELECT name FROM customers WHERE lower(email) = 'jane@example.com'")
            )
            assert found.scalars().all() == ["Jane Doe"]  # rows kept, found by the index's key
            assert_schema_matches_models(connection)
        command.downgrade(alembic_config(url), "0003")
        with engine.connect() as connection:
            assert EMAIL_INDEX not in index_names(connection)
            assert connection.execute(sa.text("SELECT count(*) FROM customers")).scalar() == 1
    finally:
        engine.dispose()
