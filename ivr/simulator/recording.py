"""How a simulated leg plays `<Record>` (a voicemail), the way Twilio documents it.

The beep, then the caller's message. A keypad script says how long the caller speaks
with the entry `record:N` (N seconds), optionally followed by the key that ends the
message: `record:12#` speaks 12 seconds and presses #. Without a key (or with one that
is not the verb's finishOnKey) the message ends after the verb's `timeout` of silence,
or at `maxLength` (the duration is then maxLength). Twilio trims the silence
(trim="trim-silence" by default), so RecordingDuration is the seconds spoken.

Silence ("" or `record:0`; also a finish key pressed before speaking) records nothing,
and then Twilio does what it documents for an empty recording: it does not request the
action URL, it runs the next verb of the document. Hanging up (the script has run out)
ends the call with nothing recorded.

A message that was recorded: first the recordingStatusCallback (RecordingStatus=
completed: it may reach the service before the action, which the service must bear),
then the action with RecordingSid, RecordingUrl, RecordingDuration (and Digits when a
key ended it); the document it answers goes on.
"""

from __future__ import annotations

import re
import secrets
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING
from urllib.parse import urljoin

if TYPE_CHECKING:
    from ivr.simulator.verbs import Leg

RECORD_ENTRY = re.compile(r"record:(\d{1,5})([0-9*#]?)")
TWILIO_MAX_LENGTH = 3600  # maxLength's default
TWILIO_FINISH_KEYS = "1234567890*#"  # finishOnKey's default: any key


def recording_url(account_sid: str, recording_sid: str) -> str:
    """Where Twilio says a recording is (its media needs the account's credentials)."""
    return f"https://api.twilio.com/2010-04-01/Accounts/{account_sid}/Recordings/{recording_sid}"


def spoken(entry: str) -> tuple[int, str]:
    """(seconds spoken, key pressed after) of a keypad entry at a `<Record>`: `record:N`
    with an optional key; anything else is no speech, its first key pressed at once."""
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
        " = then press the key, Enter = say nothing"
    )
    if entry is None:
        raise _over(leg, "hung up during the recording: nothing recorded")
    seconds, key = spoken(entry)
    leg.emit("keys", entry or "(silence)")
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
    recording_sid = "RE" + secrets.token_hex(16)
    about = {
        "RecordingSid": recording_sid,
        "RecordingUrl": recording_url(leg.base.get("AccountSid", ""), recording_sid),
        "RecordingDuration": str(seconds),
    }
    leg.emit("record", f"{seconds} s recorded")
    callback = verb.get("recordingStatusCallback")
    if callback:
        status = {**leg.base, **about, "RecordingStatus": "completed", "RecordingChannels": "1"}
        status["RecordingSource"] = "RecordVerb"
        reply = leg.call.post(urljoin(url, callback), status)
        if reply.status >= 300:
            leg.note(f"HTTP {reply.status} from the recording status callback")
    action = urljoin(url, verb.get("action") or url)
    return action, {**about, **form}


def _over(leg: Leg, text: str) -> Exception:
    from ivr.simulator.verbs import CallOver

    leg.note(text)
    return CallOver(leg.gave_up)
