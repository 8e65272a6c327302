"""Closing calls: the record of a call that ended, and the sweeper for calls whose end
was never reported.

When `/voice/status` reports a final status, `take_record` reads and forgets the
call's state, timeline and summary (one Redis round trip, after any step of the call
still running) and builds its record; the job worker writes it to the database in one
batch (`ivr.jobs.calls`), so no webhook waits on an SQL write for it. A call whose
status callback never comes (Twilio gave up, a deploy lost it) stays among the open
calls; once its state has expired (so it surely runs no more), `sweep` writes it from
its timeline and the summary's copy, as status "unknown", and only then forgets them.
Nothing is lost either way while the timeline lives (the state TTL plus
`timeline_store.TIMELINE_GRACE`).
"""

from __future__ import annotations

import logging
import time

from flask import current_app
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from ivr.calls import timeline_store
from ivr.calls.timeline_store import Ended
from ivr.errors import StorageUnavailable
from ivr.flow import timeline
from ivr.flow.state import CallState
from ivr.history import record
from ivr.metrics import calls as call_metrics

log = logging.getLogger(__name__)

SWEEP_BATCH = 500  # open calls looked at per sweep; the next sweep takes the rest


def take_record(
    call_sid: str, status: str, duration: int | None
) -> tuple[record.Record, CallState | None, bool]:
    """The record of a call that just ended, its last state (None when it was gone or
    out of reach: a repeated status callback, a Redis outage), and whether anything
    was taken — by this request alone, as the take is atomic."""
    settings = current_app.config["IVR_SETTINGS"]
    try:
        ended = timeline_store.take_ended(call_sid, settings.storage_timeout)
    except StorageUnavailable:
        log.error("call %s ended: its state is out of reach; recorded without it", call_sid)
        ended = Ended()
    state = ended.state
    known = timeline.summary_of(state, settings.secret_key) if state else ended.summary
    built = record.build(call_sid, status, duration, known, ended.steps, time.time())
    return built, state, ended.found


def sweep(session: Session, ttl: int, now: float | None = None) -> int:
    """Close the calls started more than `ttl` seconds ago (the call-state TTL) whose
    state has expired without their end being reported: each is written from its
    timeline with status "unknown", then forgotten. A call whose state still lives is
    running (a long call with an agent) and is left alone. How many were closed."""
    moment = time.time() if now is None else now
    candidates = timeline_store.open_calls_before(moment - ttl, limit=SWEEP_BATCH)
    found = timeline_store.peek([call_sid for call_sid, _ in candidates])
    closed = 0
    for (call_sid, started), (alive, ended) in zip(candidates, found, strict=True):
        if alive:
            continue
        # Ended when it was last heard of: its last step (its start when it has none).
        begun = float((ended.summary or {}).get("started_at") or started)
        last = max((int(item.get("at", 0)) for item in ended.steps), default=0)
        swept = record.build(
            call_sid, record.SWEPT, None, ended.summary, ended.steps, begun + last / 1000, begun
        )
        try:
            written = record.write(session, swept)
        except SQLAlchemyError as exc:  # kept in Redis: the next sweep tries again
            session.rollback()
            log.error("sweeper: call %s not written (%s); kept for the next sweep", call_sid, exc)
            continue
        timeline_store.forget(call_sid)
        if written:
            closed += 1
            call_metrics.observe_call_ended(swept["steps"][-1]["outcome"], record.SWEPT)
    if closed:
        log.info("sweeper closed %d call(s) whose status never came", closed)
    return closed
