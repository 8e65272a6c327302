"""The tests' phone: places calls through the project's simulator over signed webhooks,
checks every TwiML answer against Twilio's schema (call-back legs too), keys in the
one-time codes the person was given (`@code`, `@code#`, `@wrong`), and answers the
calls the service places through its local outbox (call-backs)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import ClassVar

from conftest import AUTH_TOKEN, PUBLIC_URL
from flask import Flask
from twiml_schema import assert_valid_twiml

from ivr.delivery import outbox
from ivr.delivery.outbox import OutboxMessage
from ivr.simulator.player import Callee, CallResult, Simulator, every_callee
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
    """Everything the app "sent" (its local outbox, placed calls included), oldest first."""
    return outbox.read(app.config["IVR_SETTINGS"].outbox_path)


def calls_placed(app: Flask) -> list[OutboxMessage]:
    """The outbound calls the app placed (channel "call"), oldest first."""
    return [message for message in sent(app) if message.channel == "call"]


def code_of(message: OutboxMessage) -> str:
    """The one-time code a message carries."""
    found = CODE_IN_MESSAGE.search(message.body)
    assert found, f"no code in {message.body!r}"
    return found.group(1)


def sent_codes(app: Flask) -> list[str]:
    """The codes in the outbox's messages (placed calls carry none), oldest first."""
    return [code_of(message) for message in sent(app) if message.channel != "call"]


def wrong(code: str) -> str:
    """A code of the same length that differs from `code` in every digit."""
    return "".join(str((int(digit) + 1) % 10) for digit in code)


class CodeKeypad:
    """Scripted keys; `@code` (or `@code#`) is the latest code delivered when its prompt
    plays, `@wrong` a code that differs from it in every digit, and a function is called
    then and its answer pressed. An empty list hangs up.

    "Delivered" is `latest_code` (a Simulator's: sent to the outbox or heard in a call,
    whichever came last); without it, the newest code in the app's outbox.
    """

    def __init__(
        self,
        app: Flask,
        entries: Sequence[Entry],
        latest_code: Callable[[], str | None] | None = None,
    ):
        self.app = app
        self.entries = list(entries)
        self.latest_code = latest_code

    def code(self) -> str:
        if self.latest_code is not None:
            code = self.latest_code()
        else:
            codes = sent_codes(self.app)
            code = codes[-1] if codes else None
        assert code, "the person was asked for a code, but none was delivered"
        return code

    def keys(self, listening: str) -> str | None:
        if not self.entries:
            return None
        entry = self.entries.pop(0)
        if callable(entry):
            entry = entry()
        if entry.startswith("@code"):
            return self.code() + entry.removeprefix("@code")
        if entry == "@wrong":
            return wrong(self.code())
        return entry


class Phone:
    """Places simulated calls into a test app, keying in the codes delivered (CodeKeypad)
    and answering the calls the app places (call-backs) from its local outbox.

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
        callee: str | Callee = "answer",
        callee_keys: Sequence[Entry] = (),
        call_sid: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> CallResult:
        """One call from `caller`, pressing `keys` at successive prompts ("" = silence).

        Calls the app places ring a phone that does what `callee` says (a name from
        CALLEE_BEHAVIOURS, or a function of the number rung); answered ones press
        `callee_keys`, one script shared by every call-back. The caller's own phone is
        busy while this call lasts (see Simulator).
        """
        settings = self.app.config["IVR_SETTINGS"]
        callee_keypad = CodeKeypad(self.app, callee_keys)
        simulator = Simulator(
            SchemaCheckingTransport(self.app, AUTH_TOKEN),
            PUBLIC_URL,
            agent=agent,
            support_number=settings.support_number,
            outbox=lambda: outbox.read(settings.outbox_path),
            callee=callee if callable(callee) else every_callee(callee, callee_keypad),
        )
        callee_keypad.latest_code = simulator.latest_code
        keypad = CodeKeypad(self.app, keys, simulator.latest_code)
        result = simulator.call(caller, keypad, call_sid=call_sid, extra=extra)
        self.placed.append(result)
        return result
