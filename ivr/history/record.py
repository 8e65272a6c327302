"""A finished call as the database keeps it: its summary and its steps, in one batch.

The record is built where the call ends (`closing`), from the call's state when it is
still there and its timeline steps, and travels as a job's JSON payload; `write`
stores it in one transaction with the call's `call.ended` audit row. Writing it twice
(a job retried after the commit) changes nothing: the call's row is the dedupe key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ivr.flow import timeline
from ivr.storage import audit
from ivr.storage.models import CallRecord, CallStep

Record = dict[str, Any]  # JSON: a job payload
SWEPT = "unknown"  # the status of a call the sweeper closed: Twilio never reported its end
# The keyed hash of a caller's number stored on each call (export and erasure find
# a customer's unidentified calls by it).
caller_key = timeline.caller_key


def build(
    call_sid: str,
    status: str,
    duration: int | None,
    known: Mapping[str, Any] | None,
    steps: Sequence[Mapping[str, Any]],
    ended_at: float,
    started_at: float | None = None,
) -> Record:
    """The record of a call that ended (`status` "unknown" when it was swept), from what
    is known of it (`timeline.summary_of` its state, or the summary's copy kept with its
    timeline; None when neither could be read) and its timeline steps."""
    clean = [timeline.clean(item) for item in steps]
    started = _started_at(known, started_at, clean, ended_at, duration)
    clean.append(
        timeline.step(
            timeline.END,
            max(0, round((ended_at - started) * 1000)),
            status=status,
            duration=duration,
            outcome=timeline.outcome_of(clean),
        )
    )
    first = next((item for item in clean if item["event"] == timeline.START), {})
    summary: dict[str, Any] = {
        "flow": first.get("flow", ""),
        "version": first.get("version", ""),
        "language": first.get("language", ""),
        "verification": _verification(clean),
        "methods": [item["method"] for item in clean if item["event"] == timeline.VERIFIED],
    }
    if known is not None:
        summary.update({key: value for key, value in known.items() if key in SUMMARY_FIELDS})
    return {
        "call_sid": call_sid,
        "status": status,
        "duration": duration,
        "started_at": started,
        "ended_at": ended_at,
        "summary": summary,
        "steps": clean,
    }


# What a record's summary may hold (`timeline.summary_of`'s fields but its start time).
SUMMARY_FIELDS = frozenset(
    {
        "flow",
        "version",
        "language",
        "verification",
        "methods",
        "identity",
        "caller",
        "caller_key",
        "account_id",
        "transfer_reason",
        "failure",
        "flags",
        "stir_verstat",
    }
)


def _started_at(
    known: Mapping[str, Any] | None,
    started_at: float | None,
    steps: Sequence[Mapping[str, Any]],
    ended_at: float,
    duration: int | None,
) -> float:
    if known is not None and known.get("started_at") is not None:
        return float(known["started_at"])
    if started_at is not None:
        return started_at
    if duration is not None:
        return ended_at - duration
    last = max((int(item.get("at", 0)) for item in steps), default=0)
    return ended_at - last / 1000


def _verification(steps: Sequence[Mapping[str, Any]]) -> str:
    methods = [str(item.get("method", "")) for item in steps if item["event"] == timeline.VERIFIED]
    if any(method.startswith("code") for method in methods):
        return "code"
    return "digits" if methods else "none"


def ivr_seconds(steps: Sequence[Mapping[str, Any]]) -> float:
    """Seconds the caller spent in the IVR: until the first transfer began, else all."""
    for item in steps:
        if item["event"] in (timeline.TRANSFER, timeline.END):
            return int(item["at"]) / 1000
    return 0.0


def write(session: Session, record: Mapping[str, Any]) -> bool:
    """Store a call's record and its `call.ended` audit row in one transaction; False
    when the call is stored already (a retried job, two jobs at once).

    A stored record that is bare (no start step: written while Redis was out of reach)
    is replaced by one with the call's timeline, keeping the status, duration and end
    Twilio reported; so the sweeper's later find is not lost to the bare one."""
    call_sid = str(record["call_sid"])
    steps: list[Mapping[str, Any]] = list(record["steps"])
    stored = session.get(CallRecord, call_sid)
    if stored is not None:
        if not _bare(stored) or not any(item["event"] == timeline.START for item in steps):
            return False
        record = _keeping_reported(record, stored)
        steps = list(record["steps"])
        session.delete(stored)
        session.flush()
    summary: Mapping[str, Any] = record["summary"]
    end = steps[-1] if steps else {}
    row = CallRecord(
        call_sid=call_sid,
        flow=str(summary.get("flow") or ""),
        version=str(summary.get("version") or ""),
        started_at=_utc(float(record["started_at"])),
        ended_at=_utc(float(record["ended_at"])),
        duration=_duration(record),
        ivr_seconds=ivr_seconds(steps),
        status=str(record["status"]),
        outcome=str(end.get("outcome") or timeline.outcome_of(steps)),
        verification=str(summary.get("verification") or "none"),
        methods=list(summary.get("methods") or []),
        identity=str(summary.get("identity") or ""),
        caller=str(summary.get("caller") or ""),
        account_id=summary.get("account_id"),
        language=str(summary.get("language") or ""),
        transfer_reason=summary.get("transfer_reason"),
        failure=summary.get("failure"),
        last_node=timeline.last_node(steps),
        flags=list(summary.get("flags") or []),
        caller_key=summary.get("caller_key"),
    )
    row.steps = [_step_row(seq, item) for seq, item in enumerate(steps)]
    session.add(row)
    audit.add_unless_recorded(
        session,
        "call.ended",
        actor="twilio" if record["status"] != SWEPT else "sweeper",
        call_sid=call_sid,
        account_id=summary.get("account_id"),
        details=_audit_details(record),
        dedupe_key=f"call.ended:{call_sid}:{record['status']}",
    )
    try:
        session.commit()
    except IntegrityError:  # another job stored the same call a moment before
        session.rollback()
        if session.get(CallRecord, call_sid) is None:
            raise
        return False
    return True


def _bare(row: CallRecord) -> bool:
    return not any(item.event == timeline.START for item in row.steps)


def _keeping_reported(record: Mapping[str, Any], stored: CallRecord) -> Record:
    """`record` with the end Twilio reported for the stored (bare) record, if it did."""
    if stored.status == SWEPT:
        return dict(record)
    ended_at = stored.ended_at.timestamp()
    steps = [dict(item) for item in record["steps"][:-1]]
    end = dict(record["steps"][-1])
    end.update(status=stored.status, duration=stored.duration)
    end["at"] = max(0, round((ended_at - float(record["started_at"])) * 1000))
    return {
        **record,
        "status": stored.status,
        "duration": stored.duration,
        "ended_at": ended_at,
        "steps": [*steps, end],
    }


def _step_row(seq: int, item: Mapping[str, Any]) -> CallStep:
    detail = {k: v for k, v in item.items() if k not in ("at", "event", "node", "exit")}
    return CallStep(
        seq=seq,
        at_ms=int(item.get("at", 0)),
        event=str(item["event"]),
        node=item.get("node"),
        exit=item.get("exit"),
        detail=detail,
    )


def _duration(record: Mapping[str, Any]) -> int:
    if record.get("duration") is not None:
        return int(record["duration"])
    return max(0, round(float(record["ended_at"]) - float(record["started_at"])))


def _audit_details(record: Mapping[str, Any]) -> dict[str, Any]:
    summary = dict(record["summary"])
    summary.pop("account_id", None)
    summary.pop("caller_key", None)
    details: dict[str, Any] = {"status": record["status"], **summary}
    if record.get("duration") is not None:
        details["duration"] = record["duration"]
    steps = record["steps"]
    if steps:
        details["outcome"] = steps[-1].get("outcome")
    return details


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def stored_steps(row: CallRecord) -> list[dict[str, Any]]:
    """A stored call's steps back in the timeline's shape (as `ivr calls show` prints)."""
    result = []
    for item in row.steps:
        step: dict[str, Any] = {"at": item.at_ms, "event": item.event}
        if item.node is not None:
            step["node"] = item.node
        if item.exit is not None:
            step["exit"] = item.exit
        step.update(item.detail or {})
        result.append(step)
    return result
