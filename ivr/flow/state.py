"""The state of one call, as the engine reads and writes it.

Plain data, serialised to compact JSON (well under 2 KB) and kept in Redis by
CallSid. It holds what decides anything — verification level, the node waiting
for input, the step number that makes replayed webhooks harmless — so none of it
ever travels in a URL. It never holds keypad digits or codes.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field, fields
from typing import Any

VERIFICATION_LEVELS = ("none", "digits", "code")
MAX_CANDIDATES = 20  # accounts remembered for one caller ID (a family line, not a call centre)


@dataclass
class CallState:
    call_sid: str
    flow: str
    version: str
    language: str
    node: str
    started_at: float
    step: int = 0
    caller: str | None = None  # E.164, or None when withheld/invalid
    identity: str = ""  # one_account | several_accounts | unknown_number | withheld
    candidates: list[int] = field(default_factory=list)
    account_id: int | None = None
    verification: str = "none"
    methods: list[tuple[str, float]] = field(default_factory=list)
    tries: dict[str, int] = field(default_factory=dict)
    silences: dict[str, int] = field(default_factory=dict)
    inputs: int = 0
    failure: str | None = None  # why verification did not succeed, for the agent
    transfer_reason: str | None = None
    flags: list[str] = field(default_factory=list)
    slots: dict[str, str] = field(default_factory=dict)
    stir_verstat: str | None = None
    code_channel: str | None = None  # where the live code was sent (never the code)
    # The matched account's first name, kept from the digits check so prompts need no
    # lookup; spoken only once the call is fully verified (digits and a code).
    first_name: str | None = None
    # A number change was started on this call: only then has its end work to do (the
    # after-call call-back, or closing the change it left behind).
    changing_number: bool = False
    ended: bool = False

    def verify(self, method: str, at: float) -> None:
        """Record a passed verification step and raise the level accordingly."""
        self.methods.append((method, at))
        level = "code" if method.startswith("code") else "digits"
        if VERIFICATION_LEVELS.index(level) > VERIFICATION_LEVELS.index(self.verification):
            self.verification = level

    def copy(self) -> CallState:
        """An independent copy: the engine works on one and leaves the stored state as
        it was. Containers are copied one level deep; what they hold (ints, strings,
        tuples) is immutable, so nothing is shared that a step could change."""
        fresh = copy.copy(self)
        for name in _CONTAINERS:
            value = getattr(self, name)
            setattr(fresh, name, value.copy())
        return fresh

    def to_json(self) -> str:
        """Compact JSON without the fields left at their empty defaults."""
        data = {}
        for name in _NAMES:
            value = getattr(self, name)
            if value is None or value == "" or value == [] or value == {}:
                continue
            if value is False and name in _FALSE_BY_DEFAULT:
                continue
            data[name] = value
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> CallState:
        """The state as stored; fields this version does not know are ignored, so a call
        saved by a newer release (during a rolling deploy or a rollback) carries on."""
        data: dict[str, Any] = json.loads(text)
        data["methods"] = [tuple(item) for item in data.get("methods", [])]
        return cls(**{key: value for key, value in data.items() if key in _KNOWN})


_NAMES = tuple(item.name for item in fields(CallState))
_KNOWN = frozenset(_NAMES)
# Flags left out of the JSON when False: from_json gives them back their default.
_FALSE_BY_DEFAULT = frozenset(item.name for item in fields(CallState) if item.default is False)
# The list and dict fields, which a copy must not share.
_CONTAINERS = tuple(item.name for item in fields(CallState) if item.default_factory in (list, dict))
