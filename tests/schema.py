"""Checks that the migrations at their head build exactly what the models declare."""

from __future__ import annotations

import warnings

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import ivr.storage.models  # noqa: F401  (the tables must be on the metadata)
from ivr.storage.db import Base


def expression_indexes() -> set[str]:
    """Names of the models' indexes on expressions (e.g. lower(email)), not plain columns."""
    return {
        index.name
        for table in Base.metadata.tables.values()
        for index in table.indexes
        if index.name and not all(isinstance(e, sa.Column) for e in index.expressions)
    }


def index_names(connection: sa.Connection) -> set[str]:
    """Every index in the database, by name, read from the catalogue (reflection skips
    expression indexes on some dialects)."""
    if connection.dialect.name == "sqlite":
        query = "SELECT name FROM sqlite_master WHERE type = 'index'"
    else:
        query = "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
    return set(connection.execute(sa.text(query)).scalars())


def assert_schema_matches_models(connection: sa.Connection) -> None:
    """Nothing left for autogenerate to do, and every expression index present by name
    (Alembic cannot compare those and says so in a warning)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*expression-based index")
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    assert expression_indexes() <= index_names(connection)
