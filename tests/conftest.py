"""Shared fixtures: an app on real SQLite (or PostgreSQL + Redis when CI says so).

IVR_TEST_DATABASE_URL / IVR_TEST_REDIS_URL switch the whole suite to real
services; when they are set but unreachable the run stops with an error rather
than skipping, so CI can never go green without them. IVR_TEST_REDIS_URL may name a
Redis Cluster (`redis+cluster://host:port,…`); the job queue then needs a single
Redis, IVR_TEST_JOBS_REDIS_URL (as production needs IVR_JOBS_REDIS_URL).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# Two runs against one server at once must not see (or empty) each other's data: each
# run gets a database of its own on PostgreSQL, a Redis database number of its own on a
# single Redis, and a key prefix of its own everywhere (a cluster has only database 0).
# The prefix is read when ivr.storage.keys is imported, so it is set before any ivr import.
RUN_ID = f"{os.getpid()}_{uuid.uuid4().hex[:8]}"
RUN_PREFIX = f"ivr-test-{RUN_ID}"
os.environ["IVR_REDIS_PREFIX"] = RUN_PREFIX

import pytest  # noqa: E402
import redis  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from flask import Flask  # noqa: E402
from flask.testing import FlaskCliRunner  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

import ivr.storage.models  # noqa: E402, F401  (the tables must be on the metadata _empty_storage reads)
from ivr.app import create_app  # noqa: E402
from ivr.config import _normalise_database_url  # noqa: E402
from ivr.jobs import queue as jobs_queue  # noqa: E402
from ivr.storage import db as ivr_db  # noqa: E402
from ivr.storage import keys, kv  # noqa: E402
from ivr.storage.db import Base  # noqa: E402
from ivr.storage.migrate import upgrade  # noqa: E402

# The browser tests' fixtures (browser, server, page, problems): see tests/browser_kit.py.
pytest_plugins = ["browser_kit"]

TEST_DATABASE_URL = os.environ.get("IVR_TEST_DATABASE_URL", "").strip()
TEST_REDIS_URL = os.environ.get("IVR_TEST_REDIS_URL", "").strip()
TEST_JOBS_REDIS_URL = os.environ.get("IVR_TEST_JOBS_REDIS_URL", "").strip()
TEST_REDIS_IS_CLUSTER = kv.is_cluster_url(TEST_REDIS_URL)

PUBLIC_URL = "https://ivr.example.test"
AUTH_TOKEN = "test-auth-token"

if keys.PREFIX != RUN_PREFIX:  # something imported ivr before this file set the prefix
    raise RuntimeError(f"ivr.storage.keys.PREFIX is {keys.PREFIX!r}, not this run's")
REDIS_CLAIM = "ivr-tests:claim:{number}"  # kept in Redis database 0, which no run empties
REDIS_CLAIM_SECONDS = 2 * 3600  # a crashed run's claim lapses on its own
_run: dict[str, str] = {}  # what this run created: "database_url", "redis_url", "jobs_redis_url"


def pytest_sessionstart(session: pytest.Session) -> None:
    """Create this run's database and claim its Redis database; fail the run at once
    when configured services cannot be reached (CI must never skip them)."""
    problems = []
    if TEST_DATABASE_URL:
        try:
            _run["database_url"] = _create_run_database(TEST_DATABASE_URL)
        except Exception as exc:
            problems.append(f"IVR_TEST_DATABASE_URL is set but unusable: {exc}")
    if TEST_REDIS_URL:
        try:
            if TEST_REDIS_IS_CLUSTER:
                _check_cluster(TEST_REDIS_URL)
                _run["redis_url"] = TEST_REDIS_URL
            else:
                _run["redis_url"] = _claim_redis_database(TEST_REDIS_URL)
        except Exception as exc:
            problems.append(f"IVR_TEST_REDIS_URL is set but unusable: {exc}")
    if TEST_REDIS_IS_CLUSTER and not TEST_JOBS_REDIS_URL:
        problems.append(
            "IVR_TEST_REDIS_URL names a Redis Cluster: set IVR_TEST_JOBS_REDIS_URL to a "
            "single Redis for the job queue"
        )
    if TEST_JOBS_REDIS_URL:
        try:
            _run["jobs_redis_url"] = _claim_redis_database(TEST_JOBS_REDIS_URL)
        except Exception as exc:
            problems.append(f"IVR_TEST_JOBS_REDIS_URL is set but unusable: {exc}")
    if problems:
        pytest.exit("; ".join(problems), returncode=3)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Drop this run's database and release its Redis database; with
    IVR_TEST_FORBID_SKIPS set (CI), a run that skipped any test fails."""
    if os.environ.get("IVR_TEST_FORBID_SKIPS"):
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
        if skipped:
            print(f"\nIVR_TEST_FORBID_SKIPS is set and {skipped} test(s) skipped: failing the run")
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if "database_url" in _run:
        _drop_run_database(TEST_DATABASE_URL, _run.pop("database_url"))
    if "redis_url" in _run:
        run_url = _run.pop("redis_url")
        if TEST_REDIS_IS_CLUSTER:
            # Closed after: left open, its sockets failed the run at exit (a
            # ResourceWarning) once there were keys left to delete (timelines outlive
            # their calls' states).
            client = kv.connect(run_url, 5.0)
            try:
                _delete_run_keys(client)
            finally:
                client.close()
        else:
            _release_redis_database(TEST_REDIS_URL, run_url)
    if "jobs_redis_url" in _run:
        _release_redis_database(TEST_JOBS_REDIS_URL, _run.pop("jobs_redis_url"))


def _create_run_database(admin_url: str) -> str:
    """A new, empty PostgreSQL database named for this run, on the server of admin_url."""
    url = sa.make_url(_normalise_database_url(admin_url))
    name = f"ivr_test_{RUN_ID}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


def _drop_run_database(admin_url: str, run_url: str) -> None:
    name = sa.make_url(run_url).database
    admin = sa.create_engine(_normalise_database_url(admin_url), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            # FORCE: a connection some test leaked must not leave the database behind.
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def _claim_redis_database(url: str) -> str:
    """The URL of a Redis database number (1-15) no other run holds, claimed for this run.

    The configured number is preferred; database 0 only holds the claims.
    """
    preferred = redis.Redis.from_url(url).connection_pool.connection_kwargs.get("db", 0)
    claims = redis.Redis.from_url(_with_redis_db(url, 0), socket_connect_timeout=3)
    try:
        for number in [preferred, *range(15, 0, -1)]:
            if number == 0:
                continue
            key = REDIS_CLAIM.format(number=number)
            if claims.set(key, RUN_ID, nx=True, ex=REDIS_CLAIM_SECONDS):
                return _with_redis_db(url, number)
    finally:
        claims.close()
    raise RuntimeError("every Redis database 1-15 is claimed by another test run")


def _release_redis_database(url: str, run_url: str) -> None:
    number = redis.Redis.from_url(run_url).connection_pool.connection_kwargs.get("db", 0)
    claims = redis.Redis.from_url(_with_redis_db(url, 0))
    try:
        key = REDIS_CLAIM.format(number=number)
        if claims.get(key) == RUN_ID.encode():
            redis.Redis.from_url(run_url).flushdb()
            claims.delete(key)
    finally:
        claims.close()


def _with_redis_db(url: str, number: int) -> str:
    return urlsplit(url)._replace(path=f"/{number}").geturl()


def _check_cluster(url: str) -> None:
    """A cluster every slot of which is served (the client reads the slot map)."""
    client = kv.connect(url, 3.0)
    try:
        client.ping()
    finally:
        client.close()


def _delete_run_keys(client: redis.Redis) -> None:
    """Delete this run's keys (its prefix) on every node, one by one: they span slots."""
    pipe = client.pipeline(transaction=False)
    for key in client.scan_iter(match=keys.pattern(), count=1000):
        pipe.delete(key)
    pipe.execute()


def pytest_report_header(config: pytest.Config) -> str:
    database = "PostgreSQL (IVR_TEST_DATABASE_URL)" if TEST_DATABASE_URL else "SQLite"
    if TEST_REDIS_IS_CLUSTER:
        cache = "Redis Cluster (IVR_TEST_REDIS_URL), jobs on IVR_TEST_JOBS_REDIS_URL"
    elif TEST_REDIS_URL:
        cache = "Redis (IVR_TEST_REDIS_URL)"
    else:
        cache = "in-process Redis stand-in"
    return f"ivr test backends: {database}, {cache} (run {RUN_ID}, keys {RUN_PREFIX}:*)"


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated, empty database for the whole run (built from the migrations)."""
    url = _run.get("database_url") or f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.sqlite3'}"
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
    if "redis_url" in _run:
        environ["REDIS_URL"] = _run["redis_url"]
    if "jobs_redis_url" in _run:
        environ["IVR_JOBS_REDIS_URL"] = _run["jobs_redis_url"]
    environ.update(overrides)
    return environ


def _empty_storage(app: Flask) -> None:
    with app.app_context():
        with ivr_db.engine().begin() as connection:
            for table in reversed(Base.metadata.sorted_tables):
                connection.execute(table.delete())
        client = kv.client()
        if isinstance(client, kv.ClusterClient):
            _delete_run_keys(client)  # database 0 is shared: only this run's keys
        else:
            client.flushdb()  # this run's own database (or in-process stand-in)
        jobs = jobs_queue.get(app).connection
        if jobs is not client:
            jobs.flushdb()  # the job queue's own Redis: this run's database there


@pytest.fixture
def working(tmp_path: Path) -> Path:
    """A scratch copy of flows/ and prompts/ that a test edits, as an ops person would
    (point an app at it with IVR_FLOWS_DIR / IVR_PROMPTS_DIR)."""
    root = Path(__file__).resolve().parent.parent
    shutil.copytree(root / "flows", tmp_path / "flows")
    shutil.copytree(root / "prompts", tmp_path / "prompts")
    return tmp_path


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
        # An in-process job runner left polling would take later tests' jobs from a
        # Redis they share (a real one: every app of the run uses the same database).
        runner = app.extensions.get("ivr.jobs.runner")
        if runner is not None:
            runner.stop()
        with app.app_context():
            ivr_db.engine().dispose()
        # Redis connections closed now, not when the client is collected (an open
        # socket collected later, after its server went away, is a ResourceWarning
        # that fails the run at exit).
        jobs = app.extensions.get(jobs_queue.EXTENSION_KEY)
        for client in (app.extensions.get("ivr.redis"), getattr(jobs, "connection", None)):
            if client is not None:
                client.close()


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
