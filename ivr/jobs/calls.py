"""What `/voice/status` does when a call ends, durably and quickly (issue 11, item 9).

The `call.ended` audit is written now if the database answers, else queued as a job
with the same dedupe key (written once, whenever it can be). The after-call work of
a number change (the AFTER_CALL call-back, or closing an abandoned change) is a job,
queued only for a call whose state shows a change started or a new number keyed, so a
Twilio outage is retried rather than lost and the webhook never waits on Twilio.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from ivr.calls import store
from ivr.errors import StorageUnavailable
from ivr.flow.state import CallState
from ivr.jobs.queue import AFTER_CALL, AUDIT, enqueue
from ivr.phone import mask
from ivr.storage import audit, db

log = logging.getLogger(__name__)


def call_ended(call_sid: str, call_status: str, duration: int | None = None) -> bool:
    """Audit a final call status once and queue its after-call work; True the first
    time this (CallSid, CallStatus) is seen, or when that cannot be told yet."""
    try:
        # Read and forgotten at once: the call is over, and the after-call job needs
        # only the ids in its payload.
        state = store.take(call_sid)
    except StorageUnavailable:
        log.error("call %s ended: its state is out of reach; audited without it", call_sid)
        state = None
    details: dict[str, Any] = {"status": call_status}
    if duration is not None:
        details["duration"] = duration
    if state is not None:
        details.update(ended_details(state))
    record: dict[str, Any] = {
        "action": "call.ended",
        "actor": "twilio",
        "call_sid": call_sid,
        "account_id": state.account_id if state else None,
        "details": details,
        "dedupe_key": f"call.ended:{call_sid}:{call_status}",
    }
    first = _audit_now_or_later(record)
    if first and state is not None:
        _after_call(state)
    return first


def ended_details(state: CallState) -> dict[str, Any]:
    """What the audit keeps of a call's state (masked caller, never digits or codes)."""
    return {
        "flow": state.flow,
        "version": state.version,
        "caller": mask(state.caller),
        "identity": state.identity,
        "verification": state.verification,
        "methods": [method for method, _ in state.methods],
        "failure": state.failure,
        "transfer_reason": state.transfer_reason,
        "flags": state.flags,
        "stir_verstat": state.stir_verstat,
    }


def _audit_now_or_later(record: dict[str, Any]) -> bool:
    """Write the record; if the database cannot, queue it (same dedupe key) and carry
    on as if first: what follows is idempotent too."""
    try:
        with db.unavailable_as_storage_error():
            return audit.record_alone(db.engine(), **record)
    except (StorageUnavailable, SQLAlchemyError) as exc:
        log.error(
            "call %s: %s not written now (%s); queued", record["call_sid"], record["action"], exc
        )
    try:
        enqueue(AUDIT, record, key=str(record["dedupe_key"]))
    except StorageUnavailable:
        # Neither the database nor Redis: the log line is all that is left of it.
        log.error(
            "call %s: %s lost (database and Redis unavailable): status %s",
            record["call_sid"],
            record["action"],
            record["details"].get("status"),
        )
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
