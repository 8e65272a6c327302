"""How a simulated leg plays `<Record>` (a voicemail), the way Twilio documents it.

The beep, then the caller's message. A keypad script says how long the caller speaks
with the entry `record:N` (N seconds), optionally followed by the key that ends the
message: `record:12#` speaks 12 seconds and presses #. Without a key (or with one that
is not the verb's finishOnKey) the message ends after the verb's `timeout` of silence,
or at `maxLength` (the duration is then maxLength). Twilio trims the silence
(trim="trim-silence" by default), so RecordingDuration is the seconds spoken.

Silence ("" or `record:0`; also a finish key pressed before speaking) records nothing,
and then Twilio does what it documents for an empty recording: it does not request the
action URL, it runs the next verb of the document. Hanging up with nothing said (the
script has run out, or `record:0!`) ends the call with nothing recorded.

A message that was recorded: first the recordingStatusCallback (RecordingStatus=
completed: it may reach the service before the action, which the service must bear),
then the action with RecordingSid, RecordingUrl, RecordingDuration (and Digits when a
key ended it); the document it answers goes on.

`record:12!` speaks 12 seconds and hangs up, the way most callers end a message. Twilio
keeps the recording and still requests the action, with `Digits=hangup`, but the call
has ended: the simulator posts, in the order Twilio may use, the call's final status
callback (CallStatus=completed, to the inbound call's `/voice/status`) first, then the
action (its answer is played to nobody), then the recording status callback. The leg
ends there (caller-hangup).
"""

from __future__ import annotations

import re
import secrets
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import TYPE_CHECKING, NoReturn, Protocol
from urllib.parse import urljoin

from ivr.simulator.keypads import Keypad
from ivr.simulator.over import CallOver

if TYPE_CHECKING:
    from ivr.simulator.transport import Reply


class Leg(Protocol):
    """What playing `<Record>` needs of the leg (ivr.simulator.verbs.Leg), stated here
    so this module does not import the leg that calls it."""

    base: dict[str, str]
    keypad: Keypad
    seconds: int
    gave_up: str
    documents: list[tuple[str, str]]

    @property
    def call(self) -> _Call: ...

    def emit(self, kind: str, text: str, language: str = "") -> None: ...

    def note(self, text: str) -> None: ...


class _Call(Protocol):
    public_url: str

    def post(self, url: str, form: dict[str, str]) -> Reply: ...


RECORD_ENTRY = re.compile(r"record:(\d{1,5})([0-9*#!]?)")
HANG_UP = "!"  # `record:N!`: speak N seconds, then hang up
TWILIO_MAX_LENGTH = 3600  # maxLength's default
TWILIO_FINISH_KEYS = "1234567890*#"  # finishOnKey's default: any key
STATUS_PATH = "/voice/status"  # the inbound call's status callback (the number's setting)


def recording_url(account_sid: str, recording_sid: str) -> str:
    """Where Twilio says a recording is (its media needs the account's credentials)."""
    return f"https://api.twilio.com/2010-04-01/Accounts/{account_sid}/Recordings/{recording_sid}"


def spoken(entry: str) -> tuple[int, str]:
    """(seconds spoken, key pressed after) of a keypad entry at a `<Record>`: `record:N`
    with an optional key, or `!` (hang up after); anything else is no speech, its first
    key pressed at once."""
    found = RECORD_ENTRY.fullmatch(entry.strip())
    if found is None:
        return 0, entry.strip()[:1]
    return int(found.group(1)), found.group(2)


def play_record(leg: Leg, verb: ET.Element, url: str) -> tuple[str, dict[str, str]] | None:
    """Beep, the caller's message, then the status callback and the action (or, for an
    empty recording, None: the next verb runs)."""
    max_length = int(verb.get("maxLength") or TWILIO_MAX_LENGTH) or TWILIO_MAX_LENGTH
    finish_keys = verb.get("finishOnKey", TWILIO_FINISH_KEYS)
    timeout = int(verb.get("timeout") or 5)
    leg.emit("record", "beep")
    entry = leg.keypad.keys(
        f"recording, up to {max_length} s; record:N = speak N s, record:N{finish_keys[:1] or '#'}"
        " = then press the key, record:N! = then hang up, Enter = say nothing"
    )
    if entry is None:
        raise _over(leg, "hung up during the recording: nothing recorded")
    seconds, key = spoken(entry)
    leg.emit("keys", entry or "(silence)")
    if key == HANG_UP:
        if seconds == 0:
            raise _over(leg, "hung up during the recording: nothing recorded")
        _hang_up_after(leg, verb, url, min(seconds, max_length))
    pressed = key if key and key in finish_keys else ""
    if seconds == 0:
        leg.seconds += 0 if pressed else timeout
        leg.note("nothing was recorded: Twilio does not call the action, the next verb runs")
        return None
    form: dict[str, str] = {}
    if seconds >= max_length:
        seconds = max_length
        leg.note(f"the recording stopped at its maximum length ({max_length} s)")
    elif pressed:
        form["Digits"] = pressed
    leg.seconds += seconds + (0 if pressed or seconds == max_length else timeout)
    about = _recorded(leg, seconds)
    _recording_status(leg, verb, url, about)
    action = urljoin(url, verb.get("action") or url)
    return action, {**about, **form}


def _recorded(leg: Leg, seconds: int) -> dict[str, str]:
    """The recording's parameters, as the action and the status callback carry them."""
    recording_sid = "RE" + secrets.token_hex(16)
    leg.emit("record", f"{seconds} s recorded")
    return {
        "RecordingSid": recording_sid,
        "RecordingUrl": recording_url(leg.base.get("AccountSid", ""), recording_sid),
        "RecordingDuration": str(seconds),
    }


def _recording_status(leg: Leg, verb: ET.Element, url: str, about: dict[str, str]) -> None:
    callback = verb.get("recordingStatusCallback")
    if callback:
        status = {**leg.base, **about, "RecordingStatus": "completed", "RecordingChannels": "1"}
        status["RecordingSource"] = "RecordVerb"
        reply = leg.call.post(urljoin(url, callback), status)
        if reply.status >= 300:
            leg.note(f"HTTP {reply.status} from the recording status callback")


def _hang_up_after(leg: Leg, verb: ET.Element, url: str, seconds: int) -> NoReturn:
    """The caller spoke `seconds` and hung up: the call ends (its final status callback
    first), then the action comes with Digits=hangup, then the recording status
    callback; the leg is over."""
    leg.seconds += seconds
    about = _recorded(leg, seconds)
    leg.note("hung up after the message: the call ends, then Twilio requests the action")
    ended = {
        **leg.base,
        "CallStatus": "completed",
        "CallDuration": str(leg.seconds),
        "CallbackSource": "call-progress-events",
        "SequenceNumber": "0",
        "Timestamp": format_datetime(datetime.now(UTC)),
    }
    reply = leg.call.post(leg.call.public_url + STATUS_PATH, ended)
    if reply.status >= 300:
        leg.note(f"HTTP {reply.status} from the status callback")
    action = urljoin(url, verb.get("action") or url)
    form = {**leg.base, "CallStatus": "completed", **about, "Digits": "hangup"}
    reply = leg.call.post(action, form)
    if reply.status == 200:
        leg.documents.append((action, reply.body))  # played to nobody: the call has ended
    else:
        leg.note(f"HTTP {reply.status} from {action} (after the call ended)")
    _recording_status(leg, verb, url, about)
    raise _over(leg, "the caller hung up after leaving a message")


def _over(leg: Leg, text: str) -> Exception:
    leg.note(text)
    return CallOver(leg.gave_up)
