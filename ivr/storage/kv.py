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

REDIS_URL may name a Redis Cluster: `redis+cluster://[user:password@]host:port[,host:port…]`
(`rediss+cluster://` for TLS) gives a `redis.cluster.RedisCluster` started from those
nodes, with the same timeouts and no retries (its own retry, which reinitialises the
slot map and sends the command again, is set to none for the same reason). Following a
MOVED or ASK redirect is not a retry: the node that answered it did not run the
command. Keys that are used together carry one hash tag (see `ivr.storage.keys`), so
transactions stay on one node. A cluster client's `pipeline()` is a MULTI/EXEC
transaction by default, as redis.Redis's is (redis-py's cluster client would otherwise
quietly send the commands one by one), so code written for one Redis means the same on a
cluster. The job queue cannot use a cluster (RQ needs one server): see ivr.config.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import redis
from flask import Flask, current_app
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.exceptions import ClusterError, RedisClusterException, SlotNotCoveredError
from redis.retry import Retry

from ivr.errors import ConfigError, RedisUnavailable, StorageUnavailable
from ivr.metrics import registry as metrics

log = logging.getLogger(__name__)

HEALTH_CHECK_INTERVAL = 30  # seconds a pooled connection may idle before a PING precedes use
CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}  # scheme → TLS


def is_cluster_url(url: str | None) -> bool:
    """Whether a Redis URL names a Redis Cluster (`redis+cluster://…`)."""
    return url is not None and urlsplit(url.strip()).scheme.lower() in CLUSTER_SCHEMES


def connect(url: str | None, timeout: float) -> redis.Redis:
    """Open a client that fails fast: a caller is waiting on every round trip.

    A cluster client is returned as a redis.Redis: it answers the same commands.
    """
    if url is None:
        import fakeredis

        return fakeredis.FakeRedis()
    fail_fast: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "socket_keepalive": True,
        "health_check_interval": HEALTH_CHECK_INTERVAL,
    }
    if is_cluster_url(url):
        nodes, options = cluster_nodes(url)
        try:
            client = ClusterClient(
                startup_nodes=nodes, retry=Retry(NoBackoff(), 0), **options, **fail_fast
            )
        except (RedisClusterException, redis.exceptions.RedisError) as exc:
            # The client reads the slot map when built: no node answering is an outage.
            raise RedisUnavailable(f"redis cluster unavailable: {exc}") from exc
        return cast(redis.Redis, client)
    return redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **fail_fast)


def cluster_nodes(url: str) -> tuple[list[ClusterNode], dict[str, Any]]:
    """The startup nodes of a `redis+cluster://` URL and its credentials and TLS; ValueError
    (redis-py's word for an unusable URL) when it names none or names a database."""
    parts = urlsplit(url.strip())
    userinfo, _, hosts = parts.netloc.rpartition("@")
    options: dict[str, Any] = {"ssl": CLUSTER_SCHEMES[parts.scheme.lower()]}
    if userinfo:
        username, has_password, password = userinfo.partition(":")
        if has_password:
            options["password"] = unquote(password)
        if username:
            options["username"] = unquote(username)
    if parts.path not in ("", "/", "/0") or parts.query:
        raise ValueError("a cluster URL has only database 0 and takes no options")
    nodes = []
    for node in hosts.split(","):
        host, _, port = node.strip().rpartition(":")
        if not host or not (port.isascii() and port.isdigit()):
            raise ValueError(f"a cluster node must be host:port, not {node.strip()!r}")
        nodes.append(ClusterNode(host.strip("[]"), int(port)))
    return nodes, options


class ClusterClient(RedisCluster):
    """redis-py's cluster client whose pipeline() is a transaction unless told otherwise,
    as redis.Redis's is: code that relies on MULTI/EXEC must not silently lose it.

    redis-py splits a multi-key command (DEL, MGET…) over several slots into such a
    default pipeline; here that fails with CrossSlotTransactionError instead, as the
    command itself would on a cluster: keys used together share a hash tag.
    """

    def pipeline(self, transaction: bool | None = True, shard_hint: Any = None) -> ClusterPipeline:
        return super().pipeline(transaction=transaction, shard_hint=shard_hint)


def init_app(app: Flask) -> None:
    """Attach the Redis client to the app.

    A single Redis client connects on first use; a cluster client reads the slot map
    when built, so a cluster that does not answer at start is not fatal: the app starts
    (its fallback, health checks and apologies need no Redis) and `client()` connects
    on first use, at most once per RECONNECT_EVERY, meanwhile failing fast with
    StorageUnavailable as any Redis outage does. A web process restarted during a
    cluster outage then serves again as soon as the cluster is back.
    """
    settings = app.config["IVR_SETTINGS"]
    try:
        app.extensions["ivr.redis"] = connect(settings.redis_url, settings.storage_timeout)
    except (ValueError, RedisClusterException) as exc:  # redis-py's words for a bad URL
        raise ConfigError(f"Cannot start ivr: REDIS_URL is not usable: {exc}") from None
    except StorageUnavailable as exc:
        log.error("Redis Cluster not reachable at start (%s); connecting on first use", exc)
        app.extensions["ivr.redis"] = None
        app.extensions[PENDING] = _Pending(settings.redis_url, settings.storage_timeout)


def client() -> redis.Redis:
    """The current app's Redis client (StorageUnavailable: a cluster still out of reach
    since the app started)."""
    connection: redis.Redis | None = current_app.extensions["ivr.redis"]
    if connection is None:
        connection = current_app.extensions[PENDING].connect(current_app)
    return connection


PENDING = "ivr.redis.pending"
RECONNECT_EVERY = 1.0  # seconds between attempts to reach a cluster that was down at start


class _Pending:
    """A cluster client still to be built: one attempt at a time, at most one per
    RECONNECT_EVERY; the calls in between fail at once, without waiting."""

    def __init__(self, url: str, timeout: float):
        self.url = url
        self.timeout = timeout
        self.lock = threading.Lock()
        self.next_try = 0.0

    def connect(self, app: Flask) -> redis.Redis:
        built: redis.Redis | None = app.extensions["ivr.redis"]
        if built is not None:  # another thread got there first
            return built
        # One attempt at a time (it may wait a timeout per startup node); the others
        # fail at once rather than queue behind it past Twilio's 15 s.
        if time.monotonic() < self.next_try or not self.lock.acquire(blocking=False):
            raise RedisUnavailable("redis cluster unavailable (reconnecting)")
        try:
            built = app.extensions["ivr.redis"]
            if built is None:
                built = connect(self.url, self.timeout)  # StorageUnavailable while down
                app.extensions["ivr.redis"] = built
                log.warning("Redis Cluster reached: connected")
            return built
        finally:
            self.next_try = time.monotonic() + RECONNECT_EVERY  # counted from the end
            self.lock.release()


# What a Redis outage looks like to the client: no connection, no reply in time, and on a
# cluster a slot no node serves (CLUSTERDOWN, a failover under way) or an unknown slot map.
OUTAGES = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    ClusterError,
    SlotNotCoveredError,
)


@contextmanager
def unavailable_as_storage_error() -> Iterator[None]:
    """Turn a Redis outage into StorageUnavailable so the call fails closed."""
    try:
        yield
    except OUTAGES as exc:
        metrics.count_storage_error("redis")
        raise RedisUnavailable("redis unavailable") from exc
