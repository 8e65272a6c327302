"""Who presses the keys at a `<Gather>`: the Keypad protocol, a scripted keypad whose
`@code` entry stands for the code just given on this call, and an answering machine
that never presses anything."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ivr.errors import IvrError


class Keypad(Protocol):
    def keys(self, listening: str) -> str | None:
        """Keys for one `<Gather>`: "" for silence, None to hang up."""


CODE_ENTRY = "@code"  # a scripted entry standing for "the code I was just given"


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
