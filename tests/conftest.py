"""Shared fixtures: an app on real SQLite (or PostgreSQL + Redis when CI says so).

IVR_TEST_DATABASE_URL / IVR_TEST_REDIS_URL switch the whole suite to real
services; when they are set but unreachable the run stops with an error rather
than skipping, so CI can never go green without them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskCliRunner
from sqlalchemy.orm import Session

import ivr.storage.models  # noqa: F401  (the tables must be on the metadata before drop_all)
from ivr.app import create_app
from ivr.config import _normalise_database_url
from ivr.storage import db as ivr_db
from ivr.storage import kv
from ivr.storage.db import Base
from ivr.storage.migrate import upgrade

TEST_DATABASE_URL = os.environ.get("IVR_TEST_DATABASE_URL", "").strip()
TEST_REDIS_URL = os.environ.get("IVR_TEST_REDIS_URL", "").strip()

PUBLIC_URL = "https://ivr.example.test"
AUTH_TOKEN = "test-auth-token"


def pytest_sessionstart(session: pytest.Session) -> None:
    """Fail the run at once when configured services cannot be reached."""
    problems = []
    if TEST_DATABASE_URL:
        try:
            engine = sa.create_engine(
                _normalise_database_url(TEST_DATABASE_URL), connect_args={"connect_timeout": 3}
            )
            with engine.connect() as connection:
                connection.execute(sa.text("select 1"))
            engine.dispose()
        except Exception as exc:
            problems.append(f"IVR_TEST_DATABASE_URL is set but unreachable: {exc}")
    if TEST_REDIS_URL:
        try:
            redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=3).ping()
        except Exception as exc:
            problems.append(f"IVR_TEST_REDIS_URL is set but unreachable: {exc}")
    if problems:
        pytest.exit("; ".join(problems), returncode=3)


def pytest_report_header(config: pytest.Config) -> str:
    database = "PostgreSQL (IVR_TEST_DATABASE_URL)" if TEST_DATABASE_URL else "SQLite"
    cache = "Redis (IVR_TEST_REDIS_URL)" if TEST_REDIS_URL else "in-process Redis stand-in"
    return f"ivr test backends: {database}, {cache}"


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated, empty database for the whole run (built from the migrations)."""
    if TEST_DATABASE_URL:
        url = _normalise_database_url(TEST_DATABASE_URL)
        engine = sa.create_engine(url)
        with engine.begin() as connection:
            Base.metadata.drop_all(connection)
            connection.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))
        engine.dispose()
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.sqlite3'}"
    upgrade(url)
    return url


def app_environ(database_url: str, **overrides: str) -> dict[str, str]:
    """The environment of a test app; tests may override single variables."""
    environ = {
        "IVR_ENV": "development",
        "DATABASE_URL": database_url,
        "IVR_PUBLIC_URL": PUBLIC_URL,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "IVR_SECRET_KEY": "test-secret-key",
        "IVR_AGENT_TARGET": "+15005550006",
        "IVR_DEFAULT_REGION": "US",
    }
    if TEST_REDIS_URL:
        environ["REDIS_URL"] = TEST_REDIS_URL
    environ.update(overrides)
    return environ


def _empty_storage(app: Flask) -> None:
    with app.app_context():
        with ivr_db.engine().begin() as connection:
            for table in reversed(Base.metadata.sorted_tables):
                connection.execute(table.delete())
        kv.client().flushdb()


@pytest.fixture
def outbox_path(tmp_path: Path) -> Path:
    """Where the test app's local outbox writes what it would have sent."""
    return tmp_path / "outbox.jsonl"


@pytest.fixture
def make_app(database_url: str, outbox_path: Path) -> Iterator[object]:
    """Build an app with environment overrides; storage is emptied first."""
    built: list[Flask] = []

    def factory(**overrides: str) -> Flask:
        environ = app_environ(database_url, IVR_OUTBOX_PATH=str(outbox_path))
        environ.update(overrides)
        app = create_app(environ)
        app.config["TESTING"] = True
        if not built:
            _empty_storage(app)
        built.append(app)
        return app

    yield factory
    for app in built:
        with app.app_context():
            ivr_db.engine().dispose()


@pytest.fixture
def app(make_app) -> Flask:  # type: ignore[no-untyped-def]
    return make_app()  # type: ignore[no-any-return]


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


@pytest.fixture
def db_session(app: Flask) -> Iterator[Session]:
    with app.app_context():
        yield ivr_db.session()


@pytest.fixture
def data_dir() -> Path:
    return Path(__file__).parent / "data"


@pytest.fixture
def phone(app: Flask):  # type: ignore[no-untyped-def]
    """Place simulated calls into `app` (see tests/caller.py)."""
    from caller import Phone

    return Phone(app)


@pytest.fixture
def scratch_database_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """An empty database beside the shared test one, for migration tests: a SQLite file,
    or a PostgreSQL schema dropped afterwards."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'migrations.sqlite3'}"
        return
    schema = f"migration_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(database_url)
    with admin.begin() as connection:
        connection.execute(sa.text(f"CREATE SCHEMA {schema}"))
    try:
        yield (
            sa.make_url(database_url)
            .update_query_dict({"options": f"-csearch_path={schema}"})
            .render_as_string(hide_password=False)
        )
    finally:
        with admin.begin() as connection:
            connection.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture
def code_clock(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """The clock of the real CodeService the webhooks build.

    CodeService takes its clock as a default argument bound when ivr.verification.codes is
    imported, so patching time.time would not reach it; the webhooks build one
    CodeService per request, so each gets this clock instead.
    """
    from kit import Clock

    from ivr.verification.codes import CodeService
    from ivr.voice import services

    clock = Clock()
    real = services.CodeService

    def clocked(client: Any, secret: str, policy: Any) -> CodeService:
        return real(client, secret, policy, clock=clock)

    monkeypatch.setattr(services, "CodeService", clocked)
    return clock
