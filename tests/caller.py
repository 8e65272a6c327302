"""The tests' phone: places calls through the project's simulator over signed webhooks,
and checks every TwiML document the service answers against Twilio's schema."""

from __future__ import annotations

import re

from conftest import AUTH_TOKEN, PUBLIC_URL
from flask import Flask
from twiml_schema import assert_valid_twiml

from ivr.delivery import outbox
from ivr.simulator.player import CallResult, Scripted, Simulator
from ivr.simulator.transport import InProcess, Reply


class SchemaCheckingTransport(InProcess):
    """The in-process transport, failing the test on any invalid TwiML answer."""

    def post(self, url: str, form: dict[str, str]) -> Reply:
        reply = super().post(url, form)
        if reply.status == 200:
            assert_valid_twiml(reply.body)
        return reply


class Phone:
    """Places simulated calls into a test app."""

    def __init__(self, app: Flask):
        self.app = app

    def call(
        self,
        caller: str,
        keys: list[str],
        *,
        agent: str = "accept",
        call_sid: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> CallResult:
        """One call from `caller`, pressing `keys` at successive prompts ("" = silence)."""
        simulator = Simulator(
            SchemaCheckingTransport(self.app, AUTH_TOKEN), PUBLIC_URL, agent=agent
        )
        keypad = Scripted(keys, self.latest_code)  # "@code" keys in the code just sent
        return simulator.call(caller, keypad, call_sid=call_sid, extra=extra)

    def latest_code(self) -> str | None:
        """The code in the newest message of the app's local outbox."""
        messages = outbox.read(self.app.config["IVR_SETTINGS"].outbox_path, limit=1)
        found = re.search(r"\b(\d{6,10})\b", messages[-1].body) if messages else None
        return found.group(1) if found else None
