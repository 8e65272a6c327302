"""Who presses the keys at a `<Gather>`: the Keypad protocol, a scripted keypad whose
`@code` entry stands for the code just given, and an answering machine that never
presses anything."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class Keypad(Protocol):
    def keys(self, listening: str) -> str | None:
        """Keys for one `<Gather>`: "" for silence, None to hang up."""


CODE_ENTRY = "@code"  # a scripted entry standing for "the code I was just given"


class Scripted:
    """Answers gathers from a list; hangs up when the list runs out.

    An entry `@code` (optionally `@code#`) is replaced by what `read_code` returns.
    Without `read_code`, the simulator that plays the keypad supplies its own
    `latest_code`: the latest one-time code delivered by any means.
    """

    def __init__(self, entries: list[str], read_code: Callable[[], str | None] | None = None):
        self.entries = list(entries)
        self.read_code = read_code

    def keys(self, listening: str) -> str | None:
        if not self.entries:
            return None
        entry = self.entries.pop(0)
        if entry.startswith(CODE_ENTRY):
            code = self.read_code() if self.read_code else None
            return (code or "") + entry[len(CODE_ENTRY) :]
        return entry


class AnsweringMachine:
    """Listens to every prompt and never presses a key."""

    def keys(self, listening: str) -> str | None:
        return ""
