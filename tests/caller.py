"""The tests' phone: places calls through the project's simulator over signed webhooks,
checks every TwiML answer against Twilio's schema, and keys in the one-time codes the
service "sends" to its local outbox (`@code`, `@code#`, `@wrong`)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import ClassVar

from conftest import AUTH_TOKEN, PUBLIC_URL
from flask import Flask
from twiml_schema import assert_valid_twiml

from ivr.delivery import outbox
from ivr.delivery.outbox import OutboxMessage
from ivr.simulator.player import CallResult, Simulator
from ivr.simulator.transport import InProcess, Reply


class SchemaCheckingTransport(InProcess):
    """The in-process transport, failing the test on any invalid TwiML answer."""

    def post(self, url: str, form: dict[str, str]) -> Reply:
        reply = super().post(url, form)
        if reply.status == 200:
            assert_valid_twiml(reply.body)
        return reply


CODE_IN_MESSAGE = re.compile(r"\b(\d{6,10})\b")

Entry = str | Callable[[], str]


def sent(app: Flask) -> list[OutboxMessage]:
    """Everything the app "sent" (its local outbox), oldest first."""
    return outbox.read(app.config["IVR_SETTINGS"].outbox_path)


def code_of(message: OutboxMessage) -> str:
    """The one-time code a message carries."""
    found = CODE_IN_MESSAGE.search(message.body)
    assert found, f"no code in {message.body!r}"
    return found.group(1)


def sent_codes(app: Flask) -> list[str]:
    """The codes in the outbox, oldest first."""
    return [code_of(message) for message in sent(app)]


def wrong(code: str) -> str:
    """A code of the same length that differs from `code` in every digit."""
    return "".join(str((int(digit) + 1) % 10) for digit in code)


class CodeKeypad:
    """Scripted keys; `@code` (or `@code#`) is the newest code in the outbox when its
    prompt plays, `@wrong` a code that differs from it in every digit, and a function
    is called then and its answer pressed. An empty list hangs up."""

    def __init__(self, app: Flask, entries: Sequence[Entry]):
        self.app = app
        self.entries = list(entries)

    def keys(self, listening: str) -> str | None:
        if not self.entries:
            return None
        entry = self.entries.pop(0)
        if callable(entry):
            entry = entry()
        codes = sent_codes(self.app)
        if entry.startswith("@code"):
            assert codes, "the caller was asked for a code, but none was sent"
            return codes[-1] + entry.removeprefix("@code")
        if entry == "@wrong":
            assert codes, "the caller was asked for a code, but none was sent"
            return wrong(codes[-1])
        return entry


class Phone:
    """Places simulated calls into a test app, keying in codes from its outbox (CodeKeypad).

    Every call placed is kept, so the log check knows which keys were pressed.
    """

    placed: ClassVar[list[CallResult]] = []

    def __init__(self, app: Flask):
        self.app = app

    def call(
        self,
        caller: str,
        keys: Sequence[Entry],
        *,
        agent: str = "accept",
        call_sid: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> CallResult:
        """One call from `caller`, pressing `keys` at successive prompts ("" = silence)."""
        simulator = Simulator(
            SchemaCheckingTransport(self.app, AUTH_TOKEN), PUBLIC_URL, agent=agent
        )
        keypad = CodeKeypad(self.app, keys)
        result = simulator.call(caller, keypad, call_sid=call_sid, extra=extra)
        self.placed.append(result)
        return result
