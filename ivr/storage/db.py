"""The database: one engine per app and one session per request or command.

Every other module gets its session from here. Timeouts are short because a
webhook has a 15 s budget at Twilio and the caller is waiting in silence.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flask import Flask, current_app, g
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from ivr.errors import ConfigError, StorageUnavailable


class Base(DeclarativeBase):
    """Declarative base of every model."""


def make_engine(url: str, timeout: float) -> Engine:
    """Create an engine whose connections give up quickly instead of hanging a call."""
    connect_args: dict[str, Any] = {}
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        connect_args["timeout"] = max(timeout, 1.0)
        engine = create_engine(url, connect_args=connect_args)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if url.startswith("postgresql"):
        connect_args["connect_timeout"] = max(int(timeout), 1)
        connect_args["options"] = f"-c statement_timeout={int(timeout * 1000)}"
    return create_engine(url, connect_args=connect_args, pool_recycle=300)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def init_app(app: Flask) -> None:
    """Bind an engine and a session factory to the app; close sessions after requests."""
    settings = app.config["IVR_SETTINGS"]
    try:
        engine = make_engine(settings.database_url, settings.storage_timeout)
    except ArgumentError as exc:  # an unknown scheme or driver, a malformed URL
        raise ConfigError(f"Cannot start ivr: DATABASE_URL is not usable: {exc}") from None
    app.extensions["ivr.db"] = sessionmaker(engine, expire_on_commit=False)
    app.teardown_appcontext(_close_session)


def engine() -> Engine:
    """The current app's engine."""
    factory: sessionmaker[Session] = current_app.extensions["ivr.db"]
    bound = factory.kw["bind"]
    assert isinstance(bound, Engine)
    return bound


def session() -> Session:
    """The session of the current request or command (created on first use)."""
    if "ivr_db_session" not in g:
        g.ivr_db_session = current_app.extensions["ivr.db"]()
    db_session: Session = g.ivr_db_session
    return db_session


def _close_session(_exc: BaseException | None) -> None:
    db_session = g.pop("ivr_db_session", None)
    if db_session is not None:
        db_session.close()


@contextmanager
def unavailable_as_storage_error() -> Iterator[None]:
    """Turn a database outage into StorageUnavailable so calls fail closed, not 500."""
    try:
        yield
    except DBAPIError as exc:
        if exc.connection_invalidated or _is_operational(exc):
            raise StorageUnavailable("database unavailable") from exc
        raise


def _is_operational(exc: DBAPIError) -> bool:
    from sqlalchemy.exc import OperationalError

    return isinstance(exc, OperationalError)
