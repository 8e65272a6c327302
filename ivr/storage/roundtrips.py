"""Counting the storage round trips one app makes: Redis round trips and SQL statements.

Issue 12 sets a budget per webhook (Redis round trips, SQL statements); the test suite
and the benchmark both count against it, so the counting lives here, once:

    with roundtrips.counting(app) as counts:
        client.post(...)
    counts.redis, counts.sql

What counts as one:

- Redis: a single command, a pipeline or MULTI/EXEC block sent at once, and each
  command a WATCHing pipeline sends on its own (WATCH, the reads after it, the UNWATCH
  of a reset). On a cluster a pipeline that is not a transaction counts once per node
  its keys live on (redis-py sends each node its share). The app's client
  (`app.extensions["ivr.redis"]`, whatever kv made: redis.Redis, fakeredis or a
  cluster client) is wrapped on first use; kv is untouched.
- SQL: every statement the driver sends, including the BEGIN, COMMIT and ROLLBACK it
  sends itself. SQLAlchemy reports a begin/commit/rollback even when the driver sends
  nothing (autocommit, or no transaction open), so those are counted only when the
  DBAPI connection really had a transaction to end (psycopg's transaction status,
  sqlite3's `in_transaction`); pysqlite's implicit BEGIN before a write is counted with
  the write. The pool's ping of a connection idle a second or more (`db.PING_AFTER_IDLE`)
  is not counted; a busy process's connections are never idle that long.

The counters are shared by every thread of the app under one lock (a gthread worker
serves requests on several threads), and count only while some `counting` block is
open: outside one, the hooks cost one attribute check.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from flask import Flask
from sqlalchemy import Engine, event

EXTENSION = "ivr.roundtrips"
SQLITE_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


@dataclass
class Counts:
    """Round trips counted while one `counting` block was open."""

    redis: int = 0
    sql: int = 0


class Tally:
    """The app's live counters; every open `counting` block receives each count."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open: list[Counts] = []
        self.engines: set[int] = set()

    def add(self, redis: int = 0, sql: int = 0) -> None:
        """Count round trips for every open block (nothing when none is open)."""
        if not self.open:
            return
        with self.lock:
            for counts in self.open:
                counts.redis += redis
                counts.sql += sql


@contextmanager
def counting(app: Flask) -> Iterator[Counts]:
    """Count the Redis round trips and SQL statements the app makes inside the block."""
    tally = install(app)
    counts = Counts()
    with tally.lock:
        tally.open.append(counts)
    try:
        yield counts
    finally:
        with tally.lock:
            tally.open.remove(counts)


@contextmanager
def paused(app: Flask) -> Iterator[None]:
    """Count nothing inside the block (work that is not the request's own, such as the
    jobs the tests' in-process runner does as a request ends)."""
    tally = install(app)
    with tally.lock:
        held, tally.open = tally.open, []
    try:
        yield
    finally:
        with tally.lock:
            tally.open = held + tally.open


def install(app: Flask) -> Tally:
    """Hook the app's Redis client and database engines once; return its counters."""
    tally: Tally | None = app.extensions.get(EXTENSION)
    if tally is None:
        tally = Tally()
        app.extensions[EXTENSION] = tally
        client = app.extensions.get("ivr.redis")
        if client is not None:
            _hook_redis(client, tally)
    for engine in _engines(app):
        if id(engine) not in tally.engines:
            tally.engines.add(id(engine))
            _hook_engine(engine, tally)
    return tally


def _engines(app: Flask) -> list[Engine]:
    """Every engine the app's storage modules made (the session's and any read engine)."""
    found: list[Engine] = []
    factory = app.extensions.get("ivr.db")
    if factory is not None and isinstance(factory.kw.get("bind"), Engine):
        found.append(factory.kw["bind"])
    for value in app.extensions.values():
        if isinstance(value, Engine) and value not in found:
            found.append(value)
    return found


def _counted(method: Callable[..., Any], tally: Tally) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        tally.add(redis=1)
        return method(*args, **kwargs)

    return call


def _hook_redis(client: Any, tally: Tally) -> None:
    """Count every command the client sends and every pipeline it makes."""
    client.execute_command = _counted(client.execute_command, tally)
    make_pipeline = client.pipeline

    def pipeline(*args: Any, **kwargs: Any) -> Any:
        return _hook_pipeline(make_pipeline(*args, **kwargs), tally)

    client.pipeline = pipeline


def _hook_pipeline(pipe: Any, tally: Tally) -> Any:
    """A pipeline: one round trip per send (the block, or each command while WATCHing)."""
    execute = pipe.execute
    reset = pipe.reset

    def counted_execute(*args: Any, **kwargs: Any) -> Any:
        queued = _queued(pipe)
        if queued or getattr(pipe, "watching", False):
            tally.add(redis=_exchanges(pipe, queued))
        return execute(*args, **kwargs)

    def counted_reset(*args: Any, **kwargs: Any) -> Any:
        if getattr(pipe, "watching", False) and getattr(pipe, "connection", None):
            tally.add(redis=1)  # the UNWATCH a reset sends
        return reset(*args, **kwargs)

    pipe.execute = counted_execute
    pipe.reset = counted_reset
    if hasattr(pipe, "immediate_execute_command"):
        pipe.immediate_execute_command = _counted(pipe.immediate_execute_command, tally)
    return pipe


def _queued(pipe: Any) -> list[Any]:
    """The commands a pipeline holds: redis-py's cluster pipeline keeps them in its
    execution strategy (its `command_stack` stays empty), the others in `command_stack`."""
    strategy = getattr(pipe, "_execution_strategy", None)
    if strategy is not None:
        return list(strategy.command_queue)
    return list(pipe.command_stack)


def _exchanges(pipe: Any, queued: list[Any]) -> int:
    """Round trips one send of the pipeline makes: one, except a cluster pipeline that is
    not a transaction, which sends to each node its commands' slots live on."""
    strategy = getattr(pipe, "_execution_strategy", None)
    if strategy is None or getattr(pipe, "transaction", False) or len(queued) < 2:
        return 1
    nodes = set()
    for command in queued:
        try:
            slot = pipe._determine_slot(*command.args)
            nodes.add(pipe.nodes_manager.get_node_from_slot(slot).name)
        except Exception:  # a command without keys: it goes to some node, count it once
            nodes.add(None)
    return max(1, len(nodes))


def _hook_engine(engine: Engine, tally: Tally) -> None:
    """Count statements, and the BEGIN/COMMIT/ROLLBACK the driver really sends."""
    sqlite = engine.dialect.name == "sqlite"

    @event.listens_for(engine, "before_cursor_execute")
    def statement(conn: Any, _cursor: Any, sql: str, *_rest: Any) -> None:
        if not tally.open:
            return
        sent = 1
        writes = sqlite and sql.lstrip().upper().startswith(SQLITE_WRITES)
        if writes and not _in_transaction(conn) and not _autocommit(conn):
            sent += 1  # pysqlite's implicit BEGIN before a write
        tally.add(sql=sent)

    @event.listens_for(engine, "begin")
    def begin(conn: Any) -> None:
        # psycopg sends BEGIN before the first statement unless in autocommit;
        # pysqlite sends it only before a write (counted with the write).
        if tally.open and not sqlite and not _autocommit(conn):
            tally.add(sql=1)

    @event.listens_for(engine, "commit")
    def commit(conn: Any) -> None:
        if tally.open and _in_transaction(conn):
            tally.add(sql=1)

    @event.listens_for(engine, "rollback")
    def rollback(conn: Any) -> None:
        if tally.open and _in_transaction(conn):
            tally.add(sql=1)


def _autocommit(conn: Any) -> bool:
    try:
        return bool(conn._is_autocommit_isolation())
    except Exception:  # a private helper: assume a transaction
        return False


def _in_transaction(conn: Any) -> bool:
    """Whether the DBAPI connection has a transaction open (so ending it is sent)."""
    try:
        dbapi = conn.connection.dbapi_connection
    except Exception:  # closed or invalidated: nothing to send
        return False
    if dbapi is None:
        return False
    info = getattr(dbapi, "info", None)
    status = getattr(info, "transaction_status", None)
    if status is not None:  # psycopg 3: IDLE (0) means no transaction
        return int(status) != 0
    in_tx = getattr(dbapi, "in_transaction", None)
    if in_tx is not None:  # sqlite3
        return bool(in_tx)
    return not _autocommit(conn)
