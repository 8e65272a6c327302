"""A call's timeline in Redis, from its first step to the end of the call.

Each step's save (`store.Step.save`) appends the turn's steps to the call's list and
keeps a copy of the call's summary (`timeline.summary_of`: masked caller, account,
verification) beside it, in the same transaction; both outlive the state by
TIMELINE_GRACE. The open calls' sorted set (CallSid by start time) lists the calls
not closed yet.

At the end, `take_ended` reads and forgets the state, the steps and the summary in ONE
round trip (a script), and only while no step of the call holds its lock: a step
still running when the status callback arrives (a slow `/voice/dial`) saves its steps
first, rather than re-creating the keys after the take, where nobody would close them.
The sweeper (`ivr.history.closing`) reads a dead call's timeline with `peek` and
forgets it with `forget` only once its record is written.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.cluster import RedisCluster

from ivr.flow.state import CallState
from ivr.flow.timeline import Step
from ivr.storage import deferred, keys, kv

TIMELINE_GRACE = 6 * 3600  # seconds a timeline outlives its state: the sweeper's window
MAX_TIMELINE_STEPS = 2000  # a backstop; the flow's input limit keeps calls far shorter
POLL = 0.02  # seconds between two tries while a step holds the call's lock

# KEYS: lock, state, timeline, summary [, open calls (a single Redis only: another slot)]
# ARGV: call sid, "1" to take even while the lock is held
# Returns {0} while a step holds the lock, else {1, state, summary, steps}.
TAKE = """
if ARGV[2] ~= '1' and redis.call('EXISTS', KEYS[1]) == 1 then
  return {0}
end
local state = redis.call('GET', KEYS[2])
local summary = redis.call('GET', KEYS[4])
local steps = redis.call('LRANGE', KEYS[3], 0, -1)
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
if #KEYS == 5 then
  redis.call('ZREM', KEYS[5], ARGV[1])
end
return {1, state, summary, steps}
"""


@dataclass
class Ended:
    """What Redis held of a call that ended: its state (None once expired), the copy of
    its summary, and its steps."""

    state: CallState | None = None
    summary: dict[str, Any] | None = None
    steps: list[Step] = field(default_factory=list)

    @property
    def found(self) -> bool:
        return self.state is not None or self.summary is not None or bool(self.steps)


def write(
    pipe: redis.client.Pipeline, call_sid: str, steps: Sequence[Step], summary: str, ttl: int
) -> None:
    """Add a step's save to its transaction: the new steps and the summary's copy."""
    life = ttl + TIMELINE_GRACE
    if steps:
        timeline = keys.call_timeline(call_sid)
        pipe.rpush(timeline, *(json.dumps(item, separators=(",", ":")) for item in steps))
        pipe.ltrim(timeline, 0, MAX_TIMELINE_STEPS - 1)
        pipe.expire(timeline, life)
    if summary:
        pipe.set(keys.call_summary(call_sid), summary, ex=life)


def append_steps(call_sid: str, steps: Sequence[Step], ttl: int) -> None:
    """Add steps outside a step's save (the apology path), with the request's other
    writes; the timeline keeps its life (`ttl`: the state TTL)."""

    def later(pipe: redis.client.Pipeline) -> None:
        write(pipe, call_sid, steps, "", ttl)

    deferred.later(later)


def take_ended(call_sid: str, wait: float) -> Ended:
    """Read and forget what Redis holds of a call that has ended, in one round trip
    (a repeated status callback finds nothing), waiting up to `wait` seconds for a step
    that holds the call's lock; taken anyway after that."""
    client = kv.client()
    call_keys = [
        keys.call_lock(call_sid),
        keys.call_state(call_sid),
        keys.call_timeline(call_sid),
        keys.call_summary(call_sid),
    ]
    single = not isinstance(client, RedisCluster)
    if single:
        call_keys.append(keys.open_calls())
    give_up = time.monotonic() + wait
    with kv.unavailable_as_storage_error():
        take = client.register_script(TAKE)
        while True:
            force = "1" if time.monotonic() >= give_up else "0"
            reply = take(keys=call_keys, args=[call_sid, force])
            if int(reply[0]) == 1:
                break
            time.sleep(POLL)
    if not single:
        deferred.later(lambda pipe: _forget_open(pipe, call_sid))
    _, raw_state, raw_summary, raw_steps = reply
    return Ended(
        CallState.from_json(raw_state) if raw_state else None,
        json.loads(raw_summary) if raw_summary else None,
        [json.loads(item) for item in raw_steps],
    )


def peek(call_sids: Sequence[str]) -> list[tuple[bool, Ended]]:
    """For each call: whether its state still lives (the call may be running), and
    what its timeline holds; nothing is forgotten (see `forget`)."""
    client = kv.client()
    with kv.unavailable_as_storage_error(), client.pipeline(transaction=False) as pipe:
        for call_sid in call_sids:
            pipe.exists(keys.call_state(call_sid))
            pipe.get(keys.call_summary(call_sid))
            pipe.lrange(keys.call_timeline(call_sid), 0, -1)
        replies = pipe.execute()
    found = []
    for index in range(len(call_sids)):
        alive, raw_summary, raw_steps = replies[index * 3 : index * 3 + 3]
        summary = json.loads(raw_summary) if raw_summary else None
        found.append((bool(alive), Ended(None, summary, [json.loads(s) for s in raw_steps])))
    return found


def forget(call_sid: str) -> None:
    """Forget a closed call's timeline and summary, and take it off the open calls."""
    client = kv.client()
    with kv.unavailable_as_storage_error():
        client.delete(keys.call_timeline(call_sid), keys.call_summary(call_sid))
        client.zrem(keys.open_calls(), call_sid)


def mark_open(call_sid: str, started_at: float) -> None:
    """List a call that just started among the open calls (with the request's save)."""

    def later(pipe: redis.client.Pipeline) -> None:
        pipe.zadd(keys.open_calls(), {call_sid: started_at})

    deferred.later(later)


def open_calls_before(started_before: float, limit: int) -> list[tuple[str, float]]:
    """Open calls started before `started_before` (epoch seconds), oldest first, with
    their start times: those the sweeper looks at."""
    with kv.unavailable_as_storage_error():
        found = kv.client().zrangebyscore(
            keys.open_calls(), "-inf", started_before, start=0, num=limit, withscores=True
        )
    return [(_text(sid), float(score)) for sid, score in found]  # type: ignore[str-unpack, arg-type]


def _forget_open(pipe: redis.client.Pipeline, call_sid: str) -> None:
    pipe.zrem(keys.open_calls(), call_sid)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
