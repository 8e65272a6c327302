"""Writing a voicemail from Twilio's webhooks, whichever comes first and however often.

Twilio posts two things about one recording: the `<Record>` action (the message ended;
the call is still live, so its state in Redis says who called and how they were
verified) and the recording status callback (the audio is stored, or failed). Either
may come first, and either may be repeated. Both land on one row keyed by the
recording's SID; each only fills what is still unknown or moves the status forward
(recording → ready | failed), so any order and any number of repeats end alike.

The caller is kept masked, with the keyed hash of the full number (`caller_key`) that
finds the message again for the customer's export or erasure; the account only when
the call was verified. Never the number itself, in the row or in a log line.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ivr.flow.state import CallState
from ivr.flow.timeline import caller_key
from ivr.phone import mask, normalise_caller_id
from ivr.storage.models import Voicemail

log = logging.getLogger(__name__)

RECORDING_SID = re.compile(r"RE[0-9a-fA-F]{32}")
# The statuses no webhook moves a row out of: Twilio has said, or the row is going.
SETTLED = frozenset({"ready", "failed"})
GONE = frozenset({"erased", "deleted"})
CALLBACK_STATUS = {"completed": "ready", "failed": "failed", "absent": "failed"}


@dataclass(frozen=True)
class Caller:
    """What a message keeps of who left it (never the number in full)."""

    caller: str = ""  # masked
    caller_key: str | None = None
    account_id: int | None = None  # only for a verified call
    verification: str = "none"
    methods: list[str] = field(default_factory=list)
    language: str = ""
    flow: str = ""

    @property
    def known(self) -> bool:
        return bool(self.caller or self.caller_key or self.flow)


def caller_of(state: CallState | None, raw_from: str, region: str, secret: str) -> Caller:
    """The caller facts of a message: from the call's state while it lives, else from
    the webhook's From alone (masked, hashed; no account: nothing says it was verified)."""
    if state is not None:
        verified = state.verification != "none" and state.account_id is not None
        return Caller(
            caller=mask(state.caller),
            caller_key=caller_key(state.caller, secret) if state.caller else None,
            account_id=state.account_id if verified else None,
            verification=state.verification if verified else "none",
            methods=[method for method, _ in state.methods] if verified else [],
            language=state.language,
            flow=state.flow,
        )
    number = normalise_caller_id(raw_from, region) if raw_from else None
    if number is None:
        return Caller()
    return Caller(caller=mask(number), caller_key=caller_key(number, secret))


@dataclass(frozen=True)
class Heard:
    """What one webhook says about a recording."""

    call_sid: str
    recording_sid: str
    url: str = ""
    duration: int | None = None
    status: str | None = None  # from the status callback: ready | failed


def save(session: Session, heard: Heard, caller: Caller) -> Voicemail:
    """Create or complete the row of `heard.recording_sid` and commit; the row.

    Two webhooks of one recording racing to create it: the loser's insert hits the
    unique index, and it completes the winner's row instead."""
    for attempt in (1, 2):
        row = session.scalars(
            select(Voicemail).where(Voicemail.recording_sid == heard.recording_sid)
        ).first()
        created = row is None
        if row is None:
            row = Voicemail(call_sid=heard.call_sid, recording_sid=heard.recording_sid)
            row.status = "recording"
            row.methods = []
            session.add(row)
        _merge(row, heard, caller)
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            if attempt == 2 or not created:
                raise
            continue
        if created:
            log.info(
                "call %s: voicemail %s stored (%s)",
                heard.call_sid,
                heard.recording_sid,
                row.status,
            )
        return row
    raise AssertionError("unreachable")


def _merge(row: Voicemail, heard: Heard, caller: Caller) -> None:
    """Fill what is unknown, move the status forward; an erased or deleted row learns
    nothing personal again (a late webhook after an erasure)."""
    if heard.url and not row.recording_url:
        row.recording_url = heard.url
    if heard.duration is not None and (heard.status is not None or row.duration is None):
        row.duration = heard.duration  # the status callback's duration is the stored one
    if row.status in GONE:
        return
    if heard.status is not None and row.status not in SETTLED:
        row.status = heard.status
    blank = not (row.caller or row.caller_key or row.flow)
    if caller.known and (blank or (caller.flow and not row.flow)):  # the call's state wins
        row.caller = caller.caller
        row.caller_key = caller.caller_key
        row.account_id = caller.account_id
        row.verification = caller.verification
        row.methods = list(caller.methods)
        row.language = caller.language
        row.flow = caller.flow
