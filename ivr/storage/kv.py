"""The Redis connection: real Redis through REDIS_URL, or the in-process stand-in.

The stand-in (fakeredis) lets development run with nothing installed; it lives
inside one process, so `ivr run` and an in-process `ivr call` each have their own.

Every command on real Redis waits at most IVR_STORAGE_TIMEOUT: the connect and each
reply have that timeout, and nothing is retried. redis-py's `Retry` applies to every
command of a client alike: it cannot tell a read from a write, nor a failure before the
command was sent from one after. Retrying a write whose reply was lost may apply it
twice (a failure counter counted twice, a code stored again), and retrying a timeout
multiplies the wait, so the only safe retry it can express is none. (Its default
depends on how the client is built: ten retries with backoff for `Redis(...)`, none for
`from_url`; ours says so explicitly.) What a retry would buy comes without one: a
connection the server closed (a restart) is noticed when the pool lends it and replaced
before the command is sent, and one idle for a while is checked with a PING first
(`health_check_interval`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis
from flask import Flask, current_app
from redis.backoff import NoBackoff
from redis.retry import Retry

from ivr.errors import ConfigError, StorageUnavailable

HEALTH_CHECK_INTERVAL = 30  # seconds a pooled connection may idle before a PING precedes use


def connect(url: str | None, timeout: float) -> redis.Redis:
    """Open a client that fails fast: a caller is waiting on every round trip."""
    if url is None:
        import fakeredis

        return fakeredis.FakeRedis()
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        socket_keepalive=True,
        health_check_interval=HEALTH_CHECK_INTERVAL,
        retry=Retry(NoBackoff(), 0),
    )


def init_app(app: Flask) -> None:
    """Attach the Redis client to the app."""
    settings = app.config["IVR_SETTINGS"]
    try:
        app.extensions["ivr.redis"] = connect(settings.redis_url, settings.storage_timeout)
    except ValueError as exc:  # redis-py's word for a URL it cannot use
        raise ConfigError(f"Cannot start ivr: REDIS_URL is not usable: {exc}") from None


def client() -> redis.Redis:
    """The current app's Redis client."""
    connection: redis.Redis = current_app.extensions["ivr.redis"]
    return connection


@contextmanager
def unavailable_as_storage_error() -> Iterator[None]:
    """Turn a Redis outage into StorageUnavailable so the call fails closed."""
    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise StorageUnavailable("redis unavailable") from exc
