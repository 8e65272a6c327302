"""Who presses the keys at a `<Gather>`: the Keypad protocol, a scripted keypad whose
`@code` entry stands for the code just given on this call, and an answering machine
that never presses anything.

An entry `say:<words>` speaks instead of pressing keys: a `<Gather>` that listens for
speech posts the words as Twilio's SpeechResult; one that listens only for keys hears
silence, as on Twilio."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ivr.errors import IvrError


class Keypad(Protocol):
    def keys(self, listening: str) -> str | None:
        """Keys for one `<Gather>`: "" for silence, None to hang up, `say:words` to speak."""


CODE_ENTRY = "@code"  # a scripted entry standing for "the code I was just given"
SPEECH_ENTRY = "say:"  # a scripted entry of words spoken, not keys: "say:change my number"
SPEECH_CONFIDENCE = "0.92"  # the Confidence a simulated recogniser reports


def spoken(entry: str) -> str | None:
    """The words of a `say:` entry (spaces collapsed), or None for keys."""
    if not entry.startswith(SPEECH_ENTRY):
        return None
    return " ".join(entry[len(SPEECH_ENTRY) :].split())


class CodeNotSent(IvrError):
    """`@code` was keyed, but no code has been sent or read out on this call."""


class KeysCodes:
    """A keypad whose `@code` entry (optionally `@code#`) keys in the code just given.

    `read_code` returns that code, or None when there is none. Left unset, the
    simulator that plays the keypad supplies its own `latest_code`: the latest code
    sent or read out during the current call, never one left by an earlier call.
    """

    read_code: Callable[[], str | None] | None = None

    def with_code(self, entry: str) -> str:
        """`entry` with a leading `@code` replaced by the code; CodeNotSent without one."""
        if not entry.startswith(CODE_ENTRY):
            return entry
        code = self.read_code() if self.read_code else None
        if not code:
            raise CodeNotSent(f"{CODE_ENTRY}: no code has been sent or read out on this call")
        return code + entry[len(CODE_ENTRY) :]


class Scripted(KeysCodes):
    """Answers gathers from a list; hangs up when the list runs out (see KeysCodes for
    `@code`)."""

    def __init__(self, entries: list[str], read_code: Callable[[], str | None] | None = None):
        self.entries = list(entries)
        self.read_code = read_code

    def keys(self, listening: str) -> str | None:
        if not self.entries:
            return None
        return self.with_code(self.entries.pop(0))


class AnsweringMachine:
    """Listens to every prompt and never presses a key."""

    def keys(self, listening: str) -> str | None:
        return ""
