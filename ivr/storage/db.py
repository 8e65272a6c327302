"""The database: one engine per app and one session per request or command.

Every other module gets its session from here. Every wait on the database is bounded
by IVR_STORAGE_TIMEOUT on the client's side, because a webhook has a 15 s budget at
Twilio and the caller is waiting in silence: a server that stops answering (or a proxy
in front of it that holds the connection open) must cost a call that timeout, then the
apology and an agent — never the whole budget, and never every worker thread.

On PostgreSQL four things do that together:

- a client-side deadline on every round trip of a connection (a statement, a commit, a
  rollback, the pool's ping) and on opening one: psycopg sends and reads through
  `Connection.wait`, which takes a timeout; `BoundedConnection` passes the deadline to it
  and, when it expires mid-conversation, closes the connection (its state is unknown)
  and raises OperationalError, which the pool treats as a disconnect and discards. The
  server's `statement_timeout` stays too (it frees the server), but alone it does nothing
  when the server or the network stops answering while the TCP connection stays up;
- the pool pings a connection before lending it when it has sat idle for
  PING_AFTER_IDLE or more (a busy connection is not pinged: a ping per checkout was a
  round trip per webhook), so a connection that died with a failover or restart while
  idle is replaced without failing the call; a read that finds its connection dead
  anyway (it died while busy) is tried once more on a fresh one (`read_rows`). A
  statement in a session's transaction (a write, the number change) is not repeated:
  on a connection that died while busy it fails that step (the caller hears the
  apology), and the disconnect makes the pool replace all its older connections;
- a pool checkout waits at most the timeout for a free connection (`pool_timeout`);
- TCP keepalives and `tcp_user_timeout` let the kernel notice a peer that vanished.

SQLite (the embedded development default) keeps its lock timeout.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

from flask import Flask, current_app, g
from sqlalchemy import Engine, Executable, create_engine, event
from sqlalchemy.exc import ArgumentError, DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from ivr.errors import ConfigError, StorageUnavailable
from ivr.metrics import registry as metrics

# A quiet pooled connection is probed after this long; a peer that stopped answering
# is then dropped after KEEPALIVE_COUNT unanswered probes KEEPALIVE_INTERVAL apart.
KEEPALIVE_IDLE = 10
KEEPALIVE_INTERVAL = 2
KEEPALIVE_COUNT = 3
# libpq's own connect timeout cannot be under 2 s; the client deadline is the real bound.
LIBPQ_MIN_CONNECT_TIMEOUT = 2
POOL_RECYCLE = 300  # seconds: connections are renewed now and then (server-side limits)
# A pooled connection idle this long is pinged before it is lent. Under load connections
# come back within milliseconds and go out unpinged; a quiet one may have been cut by a
# restart, a failover or an idle timeout in between.
PING_AFTER_IDLE = 1.0  # seconds
# A read whose connection turns out broken is tried again this many times on a fresh one.
READ_RETRIES = 1


class Base(DeclarativeBase):
    """Declarative base of every model."""


def make_engine(url: str, timeout: float) -> Engine:
    """Create an engine whose connections give up after `timeout` instead of hanging a call."""
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": max(timeout, 1.0)}, pool_pre_ping=True)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if url.startswith("postgresql"):
        engine = create_engine(
            url,
            connect_args=_postgres_connect_args(timeout),
            pool_timeout=timeout,
            pool_recycle=POOL_RECYCLE,
        )
        _ping_when_idle(engine)
        if engine.dialect.driver == "psycopg":
            connection_class = bounded_connection_class(timeout)
            event.listen(engine, "do_connect", _connect_with(connection_class))
        return engine
    return create_engine(url, pool_pre_ping=True, pool_recycle=POOL_RECYCLE)


def _ping_when_idle(engine: Engine) -> None:
    """Ping a connection at checkout only when it has been idle PING_AFTER_IDLE or more.

    A ping that finds the connection broken makes the pool replace it within the same
    checkout (DisconnectionError); one that finds the server silent (the bounded
    connection's Overrun) fails the checkout as a database error, not retried: a second
    connection to a silent server would wait out a second timeout.
    """

    def checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    def checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop("idle_since", None)
        if since is None or time.monotonic() - since < PING_AFTER_IDLE:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            if getattr(exc, "deadline_passed", False):
                raise OperationalError("ping", None, exc) from exc
            raise DisconnectionError(f"pooled connection found broken: {exc}") from exc

    event.listen(engine, "checkin", checkin)
    event.listen(engine, "checkout", checkout)


def _postgres_connect_args(timeout: float) -> dict[str, Any]:
    """libpq parameters: the server's statement limit, keepalives, tcp_user_timeout."""
    return {
        "connect_timeout": max(math.ceil(timeout), LIBPQ_MIN_CONNECT_TIMEOUT),
        "options": f"-c statement_timeout={int(timeout * 1000)}",
        "keepalives": 1,
        "keepalives_idle": KEEPALIVE_IDLE,
        "keepalives_interval": KEEPALIVE_INTERVAL,
        "keepalives_count": KEEPALIVE_COUNT,
        # Data sent but not acknowledged for this long: the kernel gives up on the peer.
        "tcp_user_timeout": max(int(timeout * 1000), 1),
    }


def _connect_with(connection_class: type[Any]) -> Any:
    """A `do_connect` listener that opens `connection_class` instead of psycopg's own."""

    def connect(_dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        return connection_class.connect(*cargs, **cparams)

    return connect


@cache
def bounded_connection_class(timeout: float) -> type[Any]:
    """A psycopg connection class whose every wait on the server ends after `timeout`.

    Built on demand (one per timeout) so psycopg, an optional dependency, is imported
    only when PostgreSQL is used.
    """
    import psycopg

    class Overrun(psycopg.OperationalError):
        """The database did not answer within the deadline; the connection is closed."""

        deadline_passed = True  # what `_overran` and the idle ping look for

    class BoundedConnection(psycopg.Connection[Any]):
        """psycopg's connection, with a client-side deadline on each round trip."""

        deadline = timeout
        Overrun: ClassVar[type[psycopg.OperationalError]]

        @classmethod
        def _connect_gen(cls, conninfo: str = "") -> Any:
            # psycopg's connect() enforces at least 2 s (libpq's rule); its connection
            # generator is resumed every 0.1 s even when nothing arrives, so the deadline
            # is checked here. (A private hook: the outage tests fail if it stops running.)
            return _with_deadline(super()._connect_gen(conninfo), cls.deadline)

        def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
            limit = self.deadline if timeout is None else min(timeout, self.deadline)
            started = time.monotonic()
            try:
                return super().wait(gen, interval, limit)
            except psycopg.OperationalError as exc:
                overran = time.monotonic() - started >= limit and exc.sqlstate is None
                if limit == self.deadline and overran:
                    # The server may still answer the request we sent: the connection's
                    # state is unknown, so it is closed, and the pool discards it.
                    self.close()
                    raise Overrun(
                        f"no answer from the database within {limit:g} s; connection closed"
                    ) from exc
                raise

    BoundedConnection.Overrun = Overrun
    return BoundedConnection


def _with_deadline(gen: Any, seconds: float) -> Any:
    """Drive psycopg's connection generator, giving up once `seconds` have passed."""
    import psycopg

    ends = time.monotonic() + seconds
    try:
        waiting_on = next(gen)
        while True:
            ready = yield waiting_on
            if time.monotonic() >= ends:
                gen.close()
                raise psycopg.errors.ConnectionTimeout(
                    f"no connection to the database within {seconds:g} s"
                )
            waiting_on = gen.send(ready)
    except StopIteration as done:
        return done.value


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


def read_rows(query: Executable, params: Mapping[str, Any] | None = None) -> Sequence[Any]:
    """Rows of a read-only query on a pooled connection in autocommit: the driver sends
    the query alone, without the BEGIN and ROLLBACK a session wraps around it. For plain
    lookups only: it does not see the request session's uncommitted writes.

    A connection that turns out broken (the server restarted or failed over while it was
    in use, so the idle ping did not run) is replaced and the read tried once more: a
    read is safe to repeat. A silent server is not retried (its timeout is spent)."""
    tries = 1 + READ_RETRIES
    for attempt in range(1, tries + 1):
        try:
            with engine().connect() as connection:
                reading = connection.execution_options(isolation_level="AUTOCOMMIT")
                return reading.execute(query, params).all()
        except DBAPIError as exc:
            if attempt == tries or not exc.connection_invalidated or _overran(exc):
                raise
    raise AssertionError("unreachable")


def _overran(exc: DBAPIError) -> bool:
    """The error is a bounded connection's deadline passing (the server went silent)."""
    return bool(getattr(exc.orig, "deadline_passed", False))


@contextmanager
def unavailable_as_storage_error() -> Iterator[None]:
    """Turn a database outage into StorageUnavailable so calls fail closed, not 500."""
    try:
        yield
    except DBAPIError as exc:
        if exc.connection_invalidated or isinstance(exc, OperationalError):
            metrics.count_storage_error("database")
            raise StorageUnavailable("database unavailable") from exc
        raise
