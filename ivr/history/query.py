"""Reading call history: filtered lists, one call with its timeline, and how to show them.

Shared by `ivr calls` and the ops console's calls page, so both filter, page and word
a timeline the same way. Takes a SQLAlchemy session and no Flask: filters are applied
in SQL (SQLite and PostgreSQL alike), newest call first. What is read was made safe
when it was written (`ivr.flow.timeline`, `ivr.history.record`): a masked caller, and
steps that count keys rather than hold them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session, selectinload

from ivr.flow import timeline
from ivr.history.record import stored_steps
from ivr.storage.models import CallRecord

CALL_SID = re.compile(r"CA[0-9a-fA-F]{32}")
MAX_LIMIT = 1000

_SINCE = re.compile(r"\s*([0-9]{1,9})\s*([smhdw])\s*")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str) -> timedelta:
    """A period like "90s", "30m", "1h", "2d" or "1w"; ValueError naming the value otherwise."""
    found = _SINCE.fullmatch(text or "")
    if found is None or int(found.group(1)) == 0:
        raise ValueError(
            f"{text!r} is not a period: use a whole number and s, m, h, d or w (e.g. 30m, 1h, 2d)"
        )
    try:
        return timedelta(**{_UNITS[found.group(2)]: int(found.group(1))})
    except OverflowError:
        raise ValueError(f"{text!r} is too long a period") from None


@dataclass(frozen=True)
class CallFilter:
    """Which calls to list: each field left None does not filter."""

    since: timedelta | None = None  # started within this period before `now`
    outcome: str | None = None  # transferred | ended | abandoned
    verified: bool | None = None  # True: verification other than "none"
    flow: str | None = None
    version: str | None = None
    account_id: int | None = None
    limit: int = 50
    before: str | None = None  # a CallSid: the calls listed after it (the next page)


def list_calls(session: Session, filt: CallFilter, now: datetime) -> list[CallRecord]:
    """The calls `filt` selects, newest first (started_at, then CallSid, descending).

    ValueError for an unknown outcome, a limit out of range, or a `before` cursor
    that names no stored call.
    """
    if filt.outcome is not None and filt.outcome not in timeline.OUTCOMES:
        raise ValueError(
            f"outcome must be one of {', '.join(timeline.OUTCOMES)}, not {filt.outcome!r}"
        )
    if not 1 <= filt.limit <= MAX_LIMIT:
        raise ValueError(f"limit must be from 1 to {MAX_LIMIT}, not {filt.limit}")
    query = select(CallRecord)
    # A period reaching back past year 1 selects every call (and would overflow).
    if filt.since is not None and filt.since < _utc(now) - datetime.min.replace(tzinfo=UTC):
        query = query.where(CallRecord.started_at >= _utc(now) - filt.since)
    if filt.outcome is not None:
        query = query.where(CallRecord.outcome == filt.outcome)
    if filt.verified is True:
        query = query.where(CallRecord.verification != "none")
    elif filt.verified is False:
        query = query.where(CallRecord.verification == "none")
    if filt.flow is not None:
        query = query.where(CallRecord.flow == filt.flow)
    if filt.version is not None:
        query = query.where(CallRecord.version == filt.version)
    if filt.account_id is not None:
        query = query.where(CallRecord.account_id == filt.account_id)
    if filt.before is not None:
        cursor = session.get(CallRecord, filt.before)
        if cursor is None:
            raise ValueError(f"no call {filt.before!r} to page from")
        query = query.where(
            or_(
                CallRecord.started_at < cursor.started_at,
                and_(
                    CallRecord.started_at == cursor.started_at,
                    CallRecord.call_sid < cursor.call_sid,
                ),
            )
        )
    query = query.order_by(CallRecord.started_at.desc(), CallRecord.call_sid.desc())
    return list(session.scalars(query.limit(filt.limit)))


def get_call(session: Session, call_sid: str) -> CallRecord | None:
    """One stored call with its steps loaded, or None."""
    query = (
        select(CallRecord)
        .where(CallRecord.call_sid == call_sid)
        .options(selectinload(CallRecord.steps))
    )
    return session.scalars(query).first()


def call_as_dict(row: CallRecord, *, steps: bool) -> dict[str, Any]:
    """A call as JSON-ready data (ISO 8601 UTC times); with its steps in order if asked."""
    data: dict[str, Any] = {
        "call_sid": row.call_sid,
        "flow": row.flow,
        "version": row.version,
        "started_at": _iso(row.started_at),
        "ended_at": _iso(row.ended_at),
        "duration": row.duration,
        "ivr_seconds": row.ivr_seconds,
        "status": row.status,
        "outcome": row.outcome,
        "verification": row.verification,
        "methods": list(row.methods or []),
        "identity": row.identity,
        "caller": row.caller,  # masked when written
        "account_id": row.account_id,
        "language": row.language,
        "transfer_reason": row.transfer_reason,
        "failure": row.failure,
        "last_node": row.last_node,
        "flags": list(row.flags or []),
    }
    if steps:
        data["steps"] = stored_steps(row)
    return data


def describe_step(step: Mapping[str, Any]) -> str:
    """A step for people, with its time: "3.2s  keys: 1 key, accepted"."""
    return f"{int(step.get('at', 0)) / 1000:.1f}s  {step_text(step)}"


def step_text(step: Mapping[str, Any]) -> str:
    """What a step says, without its time (the console puts the time in its own column)."""
    event = step.get("event")
    describe = _DESCRIBE.get(str(event))
    if describe is not None:
        return describe(step)
    fields = ", ".join(
        f"{key}={value}" for key, value in step.items() if key not in ("at", "event")
    )
    return f"{event}: {fields}" if fields else str(event)


def _start(step: Mapping[str, Any]) -> str:
    language = f" ({step['language']})" if step.get("language") else ""
    return f"call started: {step.get('flow', '?')}@{_short(step.get('version'))}{language}"


def _enter(step: Mapping[str, Any]) -> str:
    kind = f" ({step['type']})" if step.get("type") else ""
    return f"entered {step.get('node', '?')}{kind}"


def _input(step: Mapping[str, Any]) -> str:
    kind = step.get("input")
    result = step.get("result", "?")
    if kind == timeline.NONE:
        return f"no input, {result}"
    if kind == timeline.REPEAT:
        return f"* (repeat), {result}"
    if kind == timeline.SPEECH:
        return f"speech, {result}"
    count = int(step.get("keys", 0))
    return f"keys: {count} key{'' if count == 1 else 's'}, {result}"


def _exit(step: Mapping[str, Any]) -> str:
    to = f" → {step['to']}" if step.get("to") else ""
    return f"exit {step.get('exit', '?')}{to}"


def _transfer(step: Mapping[str, Any]) -> str:
    named = f" {step['queue']}" if step.get("queue") else ""
    reason = f" (reason: {step['reason']})" if step.get("reason") else ""
    return f"transfer to {step.get('target', '?')}{named}{reason}"


def _hangup(step: Mapping[str, Any]) -> str:
    return f"hung up at {step['node']}" if step.get("node") else "the flow hung up"


def _end(step: Mapping[str, Any]) -> str:
    parts = [str(step.get("status", "?"))]
    if step.get("duration") is not None:
        parts.append(f"{step['duration']} s")
    if step.get("outcome"):
        parts.append(str(step["outcome"]))
    return "call ended: " + ", ".join(parts)


def _limit(step: Mapping[str, Any]) -> str:
    where = f" at {step['node']}" if step.get("node") else ""
    return f"too many prompts{where}: to the default target"


_DESCRIBE = {
    timeline.START: _start,
    timeline.ENTER: _enter,
    timeline.INPUT: _input,
    timeline.EXIT: _exit,
    timeline.VERIFIED: lambda s: f"verified by {s.get('method', '?')}",
    timeline.CODE_SENT: lambda s: f"code sent by {s.get('channel', '?')}: {s.get('result', '?')}",
    timeline.CODE_CHECKED: lambda s: f"code checked: {s.get('result', '?')}",
    timeline.CALLBACK: lambda s: f"call-back: {s.get('result', '?')}",
    timeline.CALLBACK_STATUS: lambda s: f"call-back ended unconfirmed: {s.get('status', '?')}",
    timeline.CALLBACK_CODE: lambda s: f"call-back code: {s.get('result', '?')}",
    timeline.TRANSFER: _transfer,
    timeline.TRANSFER_END: lambda s: f"transfer ended: {s.get('status', '?')}",
    timeline.LIMIT: _limit,
    timeline.HANGUP: _hangup,
    timeline.ERROR: lambda s: "error: the caller was sent to an agent",
    timeline.VOICEMAIL: lambda s: f"voicemail: {s.get('result', '?')}, {s.get('seconds', 0)} s",
    timeline.TAKEN: lambda s: f"taken by an agent via {s.get('via', '?')}",
    timeline.QUEUE_CALLBACK: lambda s: f"call-back instead of holding: {s.get('result', '?')}",
    timeline.END: _end,
}


def _short(version: object) -> str:
    """A version id as people quote it (its first 8 characters)."""
    return str(version or "?")[:8]


def _utc(moment: datetime) -> datetime:
    """Aware UTC (SQLite gives naive datetimes back; they were written in UTC)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _iso(moment: datetime) -> str:
    return _utc(moment).isoformat()
