"""The Redis connection: real Redis through REDIS_URL, or the in-process stand-in.

The stand-in (fakeredis) lets development run with nothing installed; it lives
inside one process, so `ivr run` and an in-process `ivr call` each have their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis
from flask import Flask, current_app

from ivr.errors import ConfigError, StorageUnavailable


def connect(url: str | None, timeout: float) -> redis.Redis:
    """Open a client that fails fast: a caller is waiting on every round trip."""
    if url is None:
        import fakeredis

        return fakeredis.FakeRedis()
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
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
