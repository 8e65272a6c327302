"""Migrations without a journey of their own: 0004 (the importer's email index),
0005 (the flow version store), 0007 and 0008 (the console's drafts, the audit index)."""

from __future__ import annotations

import pytest
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
        command.downgrade(alembic_config(url), "0003")
        with engine.connect() as connection:
            assert EMAIL_INDEX not in index_names(connection)
            assert connection.execute(sa.text("SELECT count(*) FROM customers")).scalar() == 1
        upgrade(url)  # and up again, to the head
        with engine.connect() as connection:
            assert_schema_matches_models(connection)
    finally:
        engine.dispose()


FLOW_TABLES = {"flow_versions", "flow_version_files", "live_flows"}


def test_migration_0005_adds_and_drops_the_flow_version_store(scratch_database_url: str) -> None:
    url = scratch_database_url
    upgrade(url, "0004")
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            assert not FLOW_TABLES & set(sa.inspect(connection).get_table_names())
        upgrade(url, "0005")
        with engine.begin() as connection:
            assert set(sa.inspect(connection).get_table_names()) >= FLOW_TABLES
            connection.execute(
                sa.text(
                    "INSERT INTO flow_versions (id, flow, version, published_at, published_by,"
                    " message) VALUES (1, 'support', 'abc123', CURRENT_TIMESTAMP, 'ops', '')"
                )
            )
            with pytest.raises(sa.exc.IntegrityError), connection.begin_nested():
                connection.execute(  # one row per (flow, version)
                    sa.text(
                        "INSERT INTO flow_versions (id, flow, version, published_at,"
                        " published_by, message)"
                        " VALUES (2, 'support', 'abc123', CURRENT_TIMESTAMP, 'ops', '')"
                    )
                )
        command.downgrade(alembic_config(url), "0004")
        with engine.connect() as connection:
            assert not FLOW_TABLES & set(sa.inspect(connection).get_table_names())
        upgrade(url)
        with engine.connect() as connection:
            assert_schema_matches_models(connection)
    finally:
        engine.dispose()


def test_migrations_0007_and_0008_add_and_drop_the_drafts_and_the_audit_index(
    scratch_database_url: str,
) -> None:
    url = scratch_database_url
    upgrade(url, "0006")
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            assert "flow_drafts" not in sa.inspect(connection).get_table_names()
            assert "ix_audit_events_action_id" not in index_names(connection)
        upgrade(url)
        with engine.begin() as connection:
            assert "flow_drafts" in sa.inspect(connection).get_table_names()
            assert "ix_audit_events_action_id" in index_names(connection)
            assert_schema_matches_models(connection)
            connection.execute(
                sa.text(
                    "INSERT INTO flow_drafts (flow, based_on, files, revision, created_at,"
                    " created_by, updated_at, updated_by) VALUES ('support', NULL,"
                    ' \'{"flows/support.yaml": "name: support"}\', 1, CURRENT_TIMESTAMP,'
                    " 'ops:olga', CURRENT_TIMESTAMP, 'ops:olga')"
                )
            )
        command.downgrade(alembic_config(url), "0006")
        with engine.connect() as connection:
            assert "flow_drafts" not in sa.inspect(connection).get_table_names()
            assert "ix_audit_events_action_id" not in index_names(connection)
        upgrade(url)
        with engine.connect() as connection:
            assert_schema_matches_models(connection)
    finally:
        engine.dispose()
