"""How a simulated leg plays `<Record>` (a voicemail), the way Twilio documents it.

(Issue 15 groundwork; the voicemail work completes it: the recording status
callback, what a keypad script says to leave a message.)
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING
from urllib.parse import urljoin

if TYPE_CHECKING:
    from ivr.simulator.verbs import Leg


def play_record(leg: Leg, verb: ET.Element, url: str) -> tuple[str, dict[str, str]] | None:
    """Beep, then the caller's message: a keypad entry of seconds to speak ("" : silence)."""
    leg.emit("record", "beep")
    entry = leg.keypad.keys(f"record up to {verb.get('maxLength', '3600')} s")
    seconds = int(entry) if entry and entry.isdigit() else 0
    action = urljoin(url, verb.get("action") or url)
    return action, {"RecordingDuration": str(seconds), "RecordingSid": "RE" + "0" * 32}
