"""Redis writes that can wait for the call's save, to share its round trip.

Some writes of a webhook are read by no later part of the same request: giving back a
right entry's digit reservation, listing a transfer for the agent page. Sent at once,
each costs a round trip of its own. Queued here with `later`, they ride in the step's
save (`calls.store.Step.save`): on a single Redis inside its MULTI/EXEC, one round trip
for all. On a Redis Cluster their keys live in other slots than the call's, and a
transaction cannot span slots, so they go in one pipeline of their own right after the
save (`send`). Whatever is still queued when the request ends (it saved nothing: a
replay, an error) is sent then; only when the call's own save or lock met a Redis
outage are the queued writes dropped (`drop`, logged) rather than sent into it.

A write queued here lands a few milliseconds later than it would have. If Redis fails
in the save's round trip, the call's save fails with it (the caller hears the apology,
as before); if only the queued writes fail (refused in the transaction, or lost in the
separate pipeline after the save), they are logged and the call goes on, its state
saved: a failed listing never stopped a transfer, and a give-back that is lost leaves
the entry counted as a wrong one for the window (before, its failure failed the call).
Outside a request a write is sent at once (and raises, as any write).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis
from flask import Flask, g, has_request_context
from redis.cluster import RedisCluster

from ivr.errors import StorageUnavailable
from ivr.storage import kv

log = logging.getLogger(__name__)

Write = Callable[[redis.client.Pipeline], None]  # adds its commands to a pipeline

_QUEUED = "ivr_deferred_writes"


def later(write: Write) -> None:
    """Queue `write` for the call's save (or the end of the request)."""
    if has_request_context():
        g.setdefault(_QUEUED, []).append(write)
    else:
        _send([write])


def execute_with(pipe: redis.client.Pipeline) -> None:
    """Execute the save's transaction `pipe` with the queued writes added when Redis
    allows it (a single Redis, not a cluster). A queued write the server refuses is
    logged, not raised: the save itself went through, and it is the call's. Errors of
    the save's own commands raise as `execute` would."""
    if isinstance(kv.client(), RedisCluster) or not has_request_context():
        pipe.execute()  # a transaction cannot span slots: `send` follows the save
        return
    own = len(pipe.command_stack)
    for write in g.pop(_QUEUED, []):
        write(pipe)
    results = pipe.execute(raise_on_error=False)
    for result in results[:own]:
        if isinstance(result, Exception):
            raise result
    refused = [result for result in results[own:] if isinstance(result, Exception)]
    if refused:
        log.error("deferred Redis writes refused: %s", refused[0])


def send() -> None:
    """Send what is still queued, in one pipeline (not a transaction). Never raises: the
    call's own state is saved by now, and these writes must not fail the call (an
    outage is logged; the caller still gets the answer)."""
    writes = g.pop(_QUEUED, []) if has_request_context() else []
    if not writes:
        return
    try:
        _send(writes)
    except (StorageUnavailable, redis.exceptions.RedisError) as exc:
        # Also a refusal (out of memory, a demoted primary now read-only): logged.
        log.error("deferred Redis writes lost: %s", exc)


def drop(reason: str) -> None:
    """Forget what is queued: the call's own save or lock just met a Redis outage (its
    caller hears the apology), and sending into the same outage at the end of the
    request would only delay that answer by another timeout."""
    writes = g.pop(_QUEUED, []) if has_request_context() else []
    if writes:
        log.error("%d deferred Redis writes dropped: %s", len(writes), reason)


def _send(writes: list[Write]) -> None:
    with kv.unavailable_as_storage_error():
        pipe = kv.client().pipeline(transaction=False)
        for write in writes:
            write(pipe)
        pipe.execute()


def _send_at_end(_exc: BaseException | None) -> None:
    send()


def init_app(app: Flask) -> None:
    """Send what a request queued and no save took, when the request ends."""
    app.teardown_request(_send_at_end)
