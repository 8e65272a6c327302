"""How the simulator recognises a one-time code the person was given: written in a
message (text or email), or read out digit by digit in a `<Say>`."""

from __future__ import annotations

import re

# A code read out digit by digit, a comma between each digit ("4, 7, 1, 0, 9, 2"), as the
# service speaks codes. Phone numbers read back are grouped ("4 1 5, 5 5 5, 0 1 9 9")
# and so never mistaken for a code.
_SPOKEN_CODE = re.compile(r"(?<![\d,] )(?<!\d)\d(?:, \d){5,9}(?!\d)(?!, \d)")
_WRITTEN_CODE = re.compile(r"\b(\d{6,10})\b")


def spoken_codes(text: str) -> list[str]:
    """Codes read out digit by digit in `text`: 6-10 single digits, each after a comma."""
    found: list[str] = []
    for run in _SPOKEN_CODE.finditer(text):
        code = "".join(ch for ch in run.group() if ch.isdigit())
        if code not in found:
            found.append(code)
    return found


def written_code(text: str) -> str | None:
    """The first 6-10 digit number in a message body, or None."""
    found = _WRITTEN_CODE.search(text)
    return found.group(1) if found else None
