"""The state of one call, as the engine reads and writes it.

Plain data, serialised to compact JSON (well under 2 KB) and kept in Redis by
CallSid. It holds what decides anything — verification level, the node waiting
for input, the step number that makes replayed webhooks harmless — so none of it
ever travels in a URL. It never holds keypad digits or codes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
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
    # The account's first name once fully verified, for prompts: read once, not per step.
    first_name: str | None = None
    ended: bool = False

    def verify(self, method: str, at: float) -> None:
        """Record a passed verification step and raise the level accordingly."""
        self.methods.append((method, at))
        level = "code" if method.startswith("code") else "digits"
        if VERIFICATION_LEVELS.index(level) > VERIFICATION_LEVELS.index(self.verification):
            self.verification = level

    def to_json(self) -> str:
        data = {
            key: value for key, value in asdict(self).items() if value not in (None, [], {}, "")
        }
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> CallState:
        data: dict[str, Any] = json.loads(text)
        data["methods"] = [tuple(item) for item in data.get("methods", [])]
        return cls(**data)
