"""What `/voice/status` does when a call ends, durably and quickly (issues 11 and 14).

The call's record — its summary and timeline, with the `call.ended` audit row — is
written by the job worker in one batch (`ivr.history.record.write`), so the webhook
waits on no SQL write; the job's idempotency key makes a repeated status callback a
no-op. When Redis (hence the queue) is out of reach the record is written now
instead, so an outage loses nothing the database can still take. The after-call work
of a number change (the AFTER_CALL call-back, or closing an abandoned change) is a
job too, queued only for a call whose state shows a change started or a new number
keyed, so a Twilio outage is retried rather than lost.
"""

from __future__ import annotations

import logging

from sqlalchemy.exc import SQLAlchemyError

from ivr.errors import StorageUnavailable
from ivr.flow.state import CallState
from ivr.history import closing, record
from ivr.jobs.queue import AFTER_CALL, CALL_RECORD, enqueue, was_queued
from ivr.metrics import calls as call_metrics
from ivr.storage import db

log = logging.getLogger(__name__)


def call_ended(call_sid: str, call_status: str, duration: int | None = None) -> bool:
    """Record a final call status once and queue its after-call work; True the first
    time this (CallSid, CallStatus) is seen, or when that cannot be told yet."""
    ended, state, taken = closing.take_record(call_sid, call_status, duration)
    first = _record_later_or_now(ended, taken)
    if first and taken:  # a call whose state was lost is not counted (nor twice)
        call_metrics.observe_call_ended(ended["steps"][-1]["outcome"], call_status)
    if first and state is not None:
        _after_call(state)
    return first


def _record_later_or_now(ended: record.Record, taken: bool) -> bool:
    """Queue the record's write; if Redis cannot take the job, write it now. False when
    this call's end with this status was queued before (a repeated status callback).

    `taken`: the call's state or timeline was just taken (atomically, so by this
    request alone): the job is surely new and goes without checking its key first.
    A record with nothing taken (a repeat, or a call whose state was lost) is a "bare"
    one under a key of its own, so it can never replace a full one's queued job; the
    writer lets a full record replace a bare one stored first."""
    call_sid, status = ended["call_sid"], ended["status"]
    key = f"call.record:{call_sid}:{status}"
    try:
        if taken:
            return enqueue(CALL_RECORD, ended, key=key, fresh=True)
        if was_queued(key):  # Twilio repeating itself: the full record is on its way
            return False
        return enqueue(CALL_RECORD, ended, key=f"{key}:bare")
    except StorageUnavailable as exc:
        log.error("call %s: record not queued (%s); written now", call_sid, exc)
    try:
        with db.unavailable_as_storage_error():
            return record.write(db.session(), ended)
    except (StorageUnavailable, SQLAlchemyError) as exc:
        db.session().rollback()
        # Neither Redis nor the database: the log line is all that is left of it.
        log.error("call %s: record lost (database and Redis unavailable): %s", call_sid, exc)
    return True


def _after_call(state: CallState) -> None:
    """Queue the after-call job of a call that started a number change, or got as far
    as keying a new number (its state is already gone). Other calls have nothing to do
    after the call, and queuing a job for each would cost every call's end a Redis round
    trip and the worker a job.

    The new number is in the state from the step before the change starts, so a start
    step whose own save was lost (an outage, a step past its lock) still gets its
    after-call job; and so do calls that started a change before `changing_number`
    existed."""
    changing = state.changing_number or "new_number" in state.slots
    if state.account_id is not None and changing:
        payload = {"call_sid": state.call_sid, "account_id": state.account_id}
        try:
            enqueue(AFTER_CALL, payload, key=f"after_call:{state.call_sid}")
        except StorageUnavailable:
            log.error("call %s: after-call job not queued (Redis unavailable)", state.call_sid)
