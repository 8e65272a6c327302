"""Keeps each call's state in Redis under its CallSid, with a TTL; one step acts once.

A webhook that acts on a call (a step of the flow) runs under the call's lock, so
two copies of one request arriving together (a Twilio retry, a replay) produce one
action — one code sent, one call-back placed — and the same answer:

- `step()` takes the lock (`SET NX PX` with a random token) and reads the state and
  the last answer in ONE round trip. When the lock is taken it polls (small sleeps)
  until it is free or `IVR_STORAGE_TIMEOUT` has passed.
- The holder runs the engine, then `Step.save()` stores the new state and its
  answer and releases the lock in ONE transaction (MULTI/EXEC).
- The copy that waited then finds the answer stored for its own request (same
  endpoint and step) and returns it unchanged, with no engine run at all. A copy
  that arrives later than the answer's short life gets the engine's replay: the
  current prompt, no side effect.

Release only by the owner: the lock lives LOCK_TTL; until `deadline` (taken before
the lock was asked for, minus a storage timeout for the release to travel) nobody
else can hold it, so the one-round-trip release is safe. Past it (a step slower than
anything Twilio waits for), the release checks the token under WATCH and saves
nothing if another request holds the lock by then.

The lock lives as long as Twilio waits for any webhook (15 s), not just a storage
timeout: a step may legitimately take longer than one storage wait (a database
query, then a Twilio REST send), and a lock that lapsed mid-step would let a copy
act a second time. A process that dies holding it blocks that call's steps until
then, which Twilio already covers: it gives up on the request and plays the
fallback URL, which needs no state.

That is two round trips per step, the least a step can cost: the engine runs between
the read and the write, so no script could fold them into one.

The call's timeline rides in the same save: the turn's steps and a copy of the call's
summary (same hash slot, same transaction; `timeline_store`), which outlive the state
so that a call whose status callback never comes can still be closed by the sweeper.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import redis
from flask import current_app

from ivr.calls import timeline_store
from ivr.errors import StorageUnavailable
from ivr.flow.state import CallState
from ivr.flow.timeline import Step as TimelineStep
from ivr.storage import deferred, keys, kv

log = logging.getLogger(__name__)

LOCK_TTL = 15.0  # seconds: Twilio's webhook budget; no step legitimately runs longer
ANSWER_TTL = 60  # seconds a duplicate of the last request still gets its answer
FIRST_POLL = 0.005  # seconds; doubling up to MAX_POLL while another request holds the lock
MAX_POLL = 0.05


def load(call_sid: str) -> CallState | None:
    """The stored state of a call, or None when there is none (no lock: reads only)."""
    with kv.unavailable_as_storage_error():
        raw = kv.client().get(keys.call_state(call_sid))
    return CallState.from_json(raw) if raw else None


def save(state: CallState) -> None:
    """Store the state; it expires on its own after IVR_CALL_STATE_TTL."""
    with kv.unavailable_as_storage_error():
        kv.client().set(keys.call_state(state.call_sid), state.to_json(), ex=_state_ttl())


def delete(call_sid: str) -> None:
    """Forget a finished call (its state and its last answer)."""
    with kv.unavailable_as_storage_error():
        kv.client().delete(keys.call_state(call_sid), keys.call_answer(call_sid))


def open_call_sids(started_before: float | None = None, limit: int = 1000) -> list[str]:
    """Calls started (before `started_before`, epoch seconds) and not closed yet, oldest
    first: calls in progress, or (older than the state TTL) whose status never came."""
    top = "+inf" if started_before is None else started_before
    with kv.unavailable_as_storage_error():
        found = kv.client().zrangebyscore(keys.open_calls(), "-inf", top, start=0, num=limit)
    return [_text(item) or "" for item in found]  # type: ignore[arg-type]


@dataclass
class Step:
    """One request's turn on a call: the state and the last answer as read with the lock.

    `locked` is False when the lock could not be had within the storage timeout: the
    request may then only answer without acting (a replay) and saves nothing.
    """

    call_sid: str
    request: str  # what this request is, e.g. "input:3": a duplicate has the same
    state: CallState | None
    answered: str | None  # the stored answer to this same request, if any
    locked: bool
    token: str = ""
    deadline: float = 0.0  # time.monotonic() before which the lock is surely ours
    done: bool = field(default=False, repr=False)

    def save(
        self,
        state: CallState,
        answer: str | None,
        steps: Sequence[TimelineStep] = (),
        summary: str = "",
    ) -> None:
        """Store the new state, the steps the call took (appended to its timeline) with
        the copy of its `summary` (JSON), and this request's answer (None: keep none,
        e.g. it reads a code aloud), and release the lock: one transaction."""
        if not self.locked:
            raise RuntimeError("a step without the lock acts on nothing")
        self.done = True
        try:
            client = kv.client()
            with kv.unavailable_as_storage_error():
                if time.monotonic() < self.deadline:
                    with client.pipeline(transaction=True) as pipe:
                        self._write(pipe, state, answer, steps, summary)
                        # With the request's deferred writes, in the same round trip
                        # where the server allows it (not across cluster slots).
                        deferred.execute_with(pipe)
                else:
                    self._save_if_owner(client, state, answer, steps, summary)
        except StorageUnavailable:
            deferred.drop("the call's save met a Redis outage")
            raise
        deferred.send()

    def _write(
        self,
        pipe: redis.client.Pipeline,
        state: CallState,
        answer: str | None,
        steps: Sequence[TimelineStep],
        summary: str,
    ) -> None:
        ttl = _state_ttl()
        pipe.set(keys.call_state(self.call_sid), state.to_json(), ex=ttl)
        timeline_store.write(pipe, self.call_sid, steps, summary, ttl)
        answer_key = keys.call_answer(self.call_sid)
        if answer is None:
            pipe.delete(answer_key)
        else:
            record = json.dumps({"request": self.request, "body": answer})
            pipe.set(answer_key, record, ex=ANSWER_TTL)
        pipe.delete(keys.call_lock(self.call_sid))

    def _save_if_owner(
        self,
        client: redis.Redis,
        state: CallState,
        answer: str | None,
        steps: Sequence[TimelineStep],
        summary: str,
    ) -> None:
        """The slow path, past the deadline: save and release only while the lock is ours."""
        lock = keys.call_lock(self.call_sid)
        with client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(lock)
                if _text(pipe.get(lock)) == self.token:
                    pipe.multi()
                    self._write(pipe, state, answer, steps, summary)
                    pipe.execute()
                    return
            except redis.WatchError:
                pass
        log.error(
            "call %s: the step outlived its lock (%s s); its state was not saved",
            self.call_sid,
            LOCK_TTL,
        )

    def release(self) -> None:
        """Give the lock back without saving (the step failed or only replayed)."""
        if not self.locked or self.done:
            return
        self.done = True
        client = kv.client()
        lock = keys.call_lock(self.call_sid)
        try:
            with kv.unavailable_as_storage_error():
                if time.monotonic() < self.deadline:
                    client.delete(lock)
                    return
                with client.pipeline(transaction=True) as pipe:
                    pipe.watch(lock)
                    if _text(pipe.get(lock)) == self.token:
                        pipe.multi()
                        pipe.delete(lock)
                        pipe.execute()
        except Exception as exc:  # it lapses on its own; the answer must not fail for it
            log.warning(
                "call %s: lock not released (%s); it lapses in %s s", self.call_sid, exc, LOCK_TTL
            )
            deferred.drop("the call's lock release met a Redis error")


@contextmanager
def step(call_sid: str, request: str) -> Iterator[Step]:
    """Hold the call's lock for one request (waiting up to IVR_STORAGE_TIMEOUT for a copy
    of it to finish), with the state and any stored answer to this same request.

    The lock is released on leaving, whatever happens, unless `Step.save` did it.
    """
    held = _acquire(call_sid, request, current_app.config["IVR_SETTINGS"].storage_timeout)
    try:
        yield held
    finally:
        held.release()


def _acquire(call_sid: str, request: str, wait: float) -> Step:
    client = kv.client()
    token = secrets.token_hex(16)
    give_up = time.monotonic() + wait
    pause = FIRST_POLL
    while True:
        asked = time.monotonic()
        with kv.unavailable_as_storage_error():
            # One slot (the call's hash tag), so a transaction works on a cluster too;
            # and unlike a plain cluster pipeline, which sends every command again one
            # by one after a timeout, it waits out one timeout, not four.
            pipe = client.pipeline(transaction=True)
            pipe.set(keys.call_lock(call_sid), token, nx=True, px=int(LOCK_TTL * 1000))
            pipe.get(keys.call_state(call_sid))
            pipe.get(keys.call_answer(call_sid))
            got, raw_state, raw_answer = pipe.execute()
        state = CallState.from_json(raw_state) if raw_state else None
        answered = _answer_to(raw_answer, request)
        if got:
            return Step(call_sid, request, state, answered, True, token, asked + LOCK_TTL - wait)
        if answered is not None or time.monotonic() + pause > give_up:
            if answered is None:
                log.warning("call %s: %s waited %s s for the call's lock", call_sid, request, wait)
            return Step(call_sid, request, state, answered, False)
        time.sleep(pause)
        pause = min(pause * 2, MAX_POLL)


def _answer_to(raw: bytes | str | None, request: str) -> str | None:
    if not raw:
        return None
    record = json.loads(raw)
    return str(record["body"]) if record.get("request") == request else None


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _state_ttl() -> int:
    ttl: int = current_app.config["IVR_SETTINGS"].call_state_ttl
    return ttl
