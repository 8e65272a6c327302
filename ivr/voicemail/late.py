"""The voicemail step of a call that had ended when its `<Record>` action came.

A caller who hangs up to end their message ends the call first: the final status
callback takes the call's state and timeline for its record, and the action that
follows finds no state, so the engine cannot note the step. The steps it would have
noted (`voicemail` with the result and seconds, then `hangup` at the node: the same
as when the action comes first, so the record ends alike whichever webhook Twilio
sends first) are built here from the pending voicemail (`ivr.voicemail.pending`) and
added to the call's stored record, before its `end` step; the record's outcome and
last node are worked out again from its steps (`ended`, at the voicemail node).

The record is written by a job once the status callback is in; the action may come
before that job has run. The steps then wait in the pending voicemail, and the next
recording webhook of the call (the recording status callback, which Twilio sends once
the audio is processed) adds them. Adding is idempotent: a record that has its
voicemail step already (the action came first, or a repeat) is left as it is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ivr.flow import timeline
from ivr.flow.engine.voicemail import recording_result
from ivr.history.record import stored_steps
from ivr.storage.models import CallRecord, CallStep
from ivr.voicemail.pending import Pending

log = logging.getLogger(__name__)


def steps_for(pending: Pending, seconds: int, now: float | None = None) -> list[timeline.Step]:
    """The steps the engine would have noted for this message: voicemail, then hangup."""
    moment = time.time() if now is None else now
    at = max(0, round((moment - pending.started_at) * 1000))
    result, seconds = recording_result(seconds, pending.max_length)
    return [
        timeline.step(timeline.VOICEMAIL, at, node=pending.node, result=result, seconds=seconds),
        timeline.step(timeline.HANGUP, at, node=pending.node),
    ]


def add_to_record(session: Session, call_sid: str, steps: Sequence[timeline.Step]) -> bool:
    """Add `steps` to the stored record of `call_sid`, before its end step, and commit;
    False when the call has no record yet (its job has not run), True once they are
    there (added now, or by an earlier request)."""
    row = session.get(CallRecord, call_sid)
    if row is None:
        return False
    if any(item.event == timeline.VOICEMAIL for item in row.steps):
        return True
    stored = list(row.steps)
    end = stored[-1] if stored and stored[-1].event == timeline.END else None
    ends_at = end.at_ms if end is not None else None
    added = [timeline.clean(item) for item in steps]
    for item in added:  # never after the end Twilio reported: the steps stay in time order
        if ends_at is not None:
            item["at"] = min(int(item["at"]), ends_at)
    first = end.seq if end is not None else (stored[-1].seq + 1 if stored else 0)
    try:
        if end is not None:
            end.seq = first + len(added)  # the end stays last
            session.flush()
        for offset, item in enumerate(added):
            session.add(_row(call_sid, first + offset, item))
        session.flush()
        session.expire(row, ["steps"])
        everything = stored_steps(row)
        row.outcome = timeline.outcome_of(everything[:-1] if end is not None else everything)
        row.last_node = timeline.last_node(everything)
        if end is not None:
            end.detail = {**(end.detail or {}), "outcome": row.outcome}
        session.commit()
    except IntegrityError:  # another webhook of the call added them a moment before
        session.rollback()
        session.expire_all()
        again = session.get(CallRecord, call_sid)
        if again is None or not any(s.event == timeline.VOICEMAIL for s in again.steps):
            raise
        return True
    log.info("call %s: its voicemail step added to the stored call", call_sid)
    return True


def _row(call_sid: str, seq: int, item: dict[str, Any]) -> CallStep:
    detail = {k: v for k, v in item.items() if k not in ("at", "event", "node", "exit")}
    return CallStep(
        call_sid=call_sid,
        seq=seq,
        at_ms=int(item.get("at", 0)),
        event=str(item["event"]),
        node=item.get("node"),
        exit=item.get("exit"),
        detail=detail,
    )


def add_waiting(session: Session, call_sid: str) -> None:
    """Add the steps of a message that ended after the call did (they wait in its
    pending voicemail) once the call's record is written: called by the job that
    writes it, so a message whose action came before the record is never left out."""
    from ivr.voicemail import pending as waiting

    found = waiting.recall(call_sid)
    if found is None or not found.late:
        return
    if add_to_record(session, call_sid, found.late):
        found.late = []
        waiting.keep(call_sid, found)
