"""Migration 0006: the staff second factor (TOTP columns on agent users, recovery codes)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from schema import assert_schema_matches_models

from ivr.storage.migrate import alembic_config, upgrade


def test_migration_0006_adds_and_drops_the_second_factor(scratch_database_url: str) -> None:
    url = scratch_database_url
    upgrade(url, "0005")
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO agent_users (username, password_hash, role, target, created_at)"
                    " VALUES ('alice', 'scrypt:x', 'agent', 'queue:support', CURRENT_TIMESTAMP)"
                )
            )
        upgrade(url, "0006")
        with engine.begin() as connection:
            row = connection.execute(
                sa.text("SELECT username, totp_secret, totp_last_step FROM agent_users")
            ).one()
            assert tuple(row) == ("alice", None, None)  # existing accounts: no second factor yet
            connection.execute(
                sa.text(
                    "INSERT INTO agent_recovery_codes (user_id, code_hash, created_at)"
                    " SELECT id, 'h', CURRENT_TIMESTAMP FROM agent_users"
                )
            )
        command.downgrade(alembic_config(url), "0005")
        with engine.connect() as connection:
            inspector = sa.inspect(connection)
            assert "agent_recovery_codes" not in inspector.get_table_names()
            columns = {column["name"] for column in inspector.get_columns("agent_users")}
            assert not {"totp_secret", "totp_last_step"} & columns
            assert connection.execute(sa.text("SELECT username FROM agent_users")).scalar() == (
                "alice"
            )
        upgrade(url)  # and up again, to the head
        with engine.connect() as connection:
            assert_schema_matches_models(connection)
    finally:
        engine.dispose()
