"""The job functions, by name: what a worker does with each kind of job.

Each takes the job's JSON payload, runs in the app's context (ivr.jobs.runner) and
raises to be retried. Delivery here uses the background channels (longer timeouts:
nobody is waiting on the line).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from flask import current_app
from rq import get_current_job

from ivr.delivery import registry as delivery
from ivr.flow import timeline
from ivr.history import closing, prune, record
from ivr.jobs.deliveries import message_of
from ivr.jobs.failures import PermanentFailure
from ivr.jobs.queue import (
    AFTER_CALL,
    AUDIT,
    CALL_RECORD,
    NOTICE,
    PRUNE,
    QUEUE_CALLBACK,
    SWEEP,
    VOICEMAIL_PRUNE,
)
from ivr.storage import audit, db
from ivr.voice import services


def send_notice(payload: Mapping[str, Any]) -> None:
    """Send a queued notice (SMS or email) through the channel of its kind."""
    message = message_of(dict(payload))
    channels = delivery.get(background=True)
    if message.channel not in channels:
        raise PermanentFailure(f"no {message.channel} channel is configured")
    channels[message.channel].send(message)


def ring_after_call(payload: Mapping[str, Any]) -> None:
    """Place the AFTER_CALL call-back of an ended call (or close an abandoned change)."""
    job = get_current_job()
    last_attempt = job is None or not job.retries_left
    changes = services.number_changes(background=True)
    changes.after_call(
        str(payload["call_sid"]), int(payload["account_id"]), last_attempt=last_attempt
    )


def write_audit(payload: Mapping[str, Any]) -> None:
    """Write an audit record that could not be written when it happened (same dedupe key)."""
    audit.record(
        db.session(),
        str(payload["action"]),
        actor=str(payload["actor"]),
        call_sid=payload.get("call_sid"),
        account_id=payload.get("account_id"),
        details=dict(payload.get("details") or {}),
        dedupe_key=payload.get("dedupe_key"),
    )


def write_call(payload: Mapping[str, Any]) -> None:
    """Write an ended call's record and steps, with its `call.ended` audit row; then the
    steps of a voicemail whose action came after the call ended, should they wait."""
    record.write(db.session(), payload)
    if any(
        item.get("event") == timeline.ENTER and item.get("type") == "voicemail"
        for item in payload.get("steps") or ()
    ):
        from ivr.voicemail import late

        late.add_waiting(db.session(), str(payload["call_sid"]))


def sweep_calls(payload: Mapping[str, Any]) -> None:
    """Close the calls whose status callback never came (older than the state TTL)."""
    closing.sweep(db.session(), current_app.config["IVR_SETTINGS"].call_state_ttl)


def prune_calls(payload: Mapping[str, Any]) -> None:
    """Delete the call history older than IVR_CALL_HISTORY_DAYS."""
    days = current_app.config["IVR_SETTINGS"].observe.call_history_days
    prune.prune_expired(db.session(), days, datetime.now(UTC), actor="scheduler")


def prune_voicemail(payload: Mapping[str, Any]) -> None:
    """Delete the voicemail older than IVR_VOICEMAIL_DAYS (and erased customers'): the
    recording at Twilio, then the row; what Twilio keeps waits for the next run."""
    from ivr.voicemail import retention

    settings = current_app.config["IVR_SETTINGS"]
    retention.prune(
        db.session(),
        retention.recordings_for(settings),
        settings.line.voicemail_days,
        datetime.now(UTC),
        actor="scheduler",
    )


def place_queue_callback(payload: Mapping[str, Any]) -> None:
    """Ring the number on file of a call-back chosen on hold (its try `attempt`)."""
    from ivr.voice import queue_callbacks

    queue_callbacks.place(str(payload["id"]), int(payload["attempt"]))


TASKS: Mapping[str, Callable[[Mapping[str, Any]], None]] = {
    NOTICE: send_notice,
    AFTER_CALL: ring_after_call,
    AUDIT: write_audit,
    CALL_RECORD: write_call,
    SWEEP: sweep_calls,
    PRUNE: prune_calls,
    VOICEMAIL_PRUNE: prune_voicemail,
    QUEUE_CALLBACK: place_queue_callback,
}
