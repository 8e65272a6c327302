"""Parses Twilio's voice webhook form into typed values; rejects what Twilio never sends.

Twilio may add parameters at any time, so unknown fields are ignored (they still
count for the signature, which is checked before this runs).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ivr.errors import CallError

CALL_SID = re.compile(r"CA[0-9a-fA-F]{32}")
MAX_DIGITS = 64  # far beyond any real entry; longer input is cut, never stored
MAX_SPEECH = 200  # characters of a SpeechResult kept: a menu answer is a few words
# Twilio's SHAKEN/STIR results look like "TN-Validation-Passed-A": anything else is dropped.
STIR_VERSTAT = re.compile(r"[A-Za-z0-9-]{1,64}")
# ASCII digits only: str.isdigit() also accepts "²" or "٤", which int() then refuses.
ASCII_DIGITS = re.compile(r"[0-9]+")
MAX_NUMBER_LENGTH = 8  # steps, seconds: never near 10**8 on a real call


class MalformedWebhook(CallError):
    """The request is missing or garbles something Twilio always sends."""


@dataclass(frozen=True)
class VoiceRequest:
    call_sid: str
    caller: str  # the raw From: a number, anonymous, client:…, or empty
    called: str
    call_status: str
    direction: str
    digits: str | None  # None when the caller pressed nothing
    speech: str | None  # SpeechResult of a Gather with speech: what Twilio heard, or None
    stir_verstat: str | None
    parent_call_sid: str | None


def parse(form: Mapping[str, str]) -> VoiceRequest:
    """Read the fields the service uses; MalformedWebhook when CallSid is missing or odd."""
    call_sid = form.get("CallSid", "")
    if not CALL_SID.fullmatch(call_sid):
        raise MalformedWebhook("missing or malformed CallSid")
    digits = form.get("Digits")
    speech = " ".join(form.get("SpeechResult", "").split())[:MAX_SPEECH] or None
    parent = form.get("ParentCallSid") or None
    verstat = form.get("StirVerstat", "")
    return VoiceRequest(
        call_sid=call_sid,
        caller=form.get("From", ""),
        called=form.get("To", ""),
        call_status=form.get("CallStatus", ""),
        direction=form.get("Direction", ""),
        digits=digits[:MAX_DIGITS] if digits else None,
        speech=speech,
        stir_verstat=verstat if STIR_VERSTAT.fullmatch(verstat) else None,
        parent_call_sid=parent if parent and CALL_SID.fullmatch(parent) else None,
    )


def ascii_int(raw: str | None, default: int, limit: int = MAX_NUMBER_LENGTH) -> int:
    """A number Twilio sends (or our own URL carries) as ASCII digits; `default` when it is
    absent, longer than `limit` digits, or anything else ("²", "-1", "1e3", " 1 ")."""
    if raw is None or len(raw) > limit or not ASCII_DIGITS.fullmatch(raw):
        return default
    return int(raw)


def step(args: Mapping[str, str]) -> int:
    """The step number a webhook URL carries (?s=N); -1 when absent or garbled."""
    return ascii_int(args.get("s"), -1)


# How an `<Enqueue>` ended (QueueResult), as a DialCallStatus: only "bridged" is a
# transfer that happened; everything else leaves by the node's `unanswered` exit.
_QUEUE_RESULTS = {
    "bridged": "completed",
    "hangup": "canceled",  # the caller hung up while holding, as with an abandoned <Dial>
    "queue-full": "failed",
    "error": "failed",
    "system-error": "failed",
    "redirected": "no-answer",
    "leave": "no-answer",  # our <Leave/> once the maximum wait passed
}


def dial_status(form: Mapping[str, str]) -> str:
    """DialCallStatus, or QueueResult mapped onto the same outcomes; "failed" when
    neither is there or the QueueResult is one Twilio never documented."""
    if "DialCallStatus" in form:
        return form["DialCallStatus"]
    return _QUEUE_RESULTS.get(form.get("QueueResult", ""), "failed")


def queue_time(form: Mapping[str, str]) -> int:
    """Seconds the caller has held (QueueTime of a waitUrl request); 0 when absent or garbled."""
    return ascii_int(form.get("QueueTime"), 0)


def call_duration(form: Mapping[str, str]) -> int | None:
    """Seconds a finished call lasted (CallDuration of a status callback); None when absent
    or garbled."""
    duration = ascii_int(form.get("CallDuration"), -1)
    return duration if duration >= 0 else None
