"""The simulator plays TwiML the way Twilio documents it, and `ivr call` drives the service."""

from __future__ import annotations

import io
import re
from collections.abc import Callable

from flask import Flask
from flask.testing import FlaskCliRunner

from ivr.delivery import outbox
from ivr.simulator.player import Scripted, Simulator
from ivr.simulator.transport import Reply

BASE = "https://ivr.example.test"


class CannedService:
    """Answers each URL path with fixed TwiML and records every request."""

    def __init__(self, pages: dict[str, str], status: dict[str, int] | None = None):
        self.pages = pages
        self.status = status or {}
        self.requests: list[tuple[str, dict[str, str]]] = []

    def post(self, url: str, form: dict[str, str]) -> Reply:
        path = url.removeprefix(BASE)
        self.requests.append((path, form))
        body = self.pages.get(path, "<Response/>")
        return Reply(self.status.get(path, 200), f"<?xml version='1.0'?>{body}")

    def posted(self, path: str) -> list[dict[str, str]]:
        return [form for p, form in self.requests if p == path]


def play(service: CannedService, keys: list[str], agent: str = "accept"):  # type: ignore[no-untyped-def]
    return Simulator(service, BASE, agent=agent).call("+14155550100", Scripted(keys))


def test_gather_posts_digits_to_its_action_cut_at_num_digits() -> None:
    service = CannedService(
        {
            "/voice/incoming": '<Response><Gather action="/next" numDigits="4"><Say>Go</Say></Gather></Response>',
            "/next": "<Response><Hangup/></Response>",
        }
    )
    play(service, ["123456"])
    assert service.posted("/next")[0]["Digits"] == "1234"


def test_gather_stops_at_finish_on_key_and_reports_it() -> None:
    service = CannedService(
        {
            "/voice/incoming": '<Response><Gather action="/next"><Say>Go</Say></Gather></Response>',
            "/next": "<Response><Hangup/></Response>",
        }
    )
    play(service, ["12#34"])
    form = service.posted("/next")[0]
    assert form["Digits"] == "12" and form["FinishedOnKey"] == "#"


def test_silence_falls_through_to_the_next_verb_not_the_action() -> None:
    service = CannedService(
        {
            "/voice/incoming": '<Response><Gather action="/next"/><Redirect>/silent</Redirect></Response>',
            "/silent": "<Response><Say>Still there?</Say></Response>",
        }
    )
    result = play(service, [""])
    assert service.posted("/next") == []
    assert len(service.posted("/silent")) == 1 and "Digits" not in service.posted("/silent")[0]
    assert result.heard() == ["Still there?"]


def test_action_on_empty_result_posts_empty_digits() -> None:
    service = CannedService(
        {
            "/voice/incoming": '<Response><Gather action="/next" actionOnEmptyResult="true"/></Response>',
        }
    )
    play(service, [""])
    forms = service.posted("/next")
    assert len(forms) == 1 and forms[0]["Digits"] == ""


def test_gather_without_action_posts_to_the_current_url() -> None:
    service = CannedService({"/voice/incoming": "<Response><Gather/></Response>"})
    play(service, ["5", "6"])
    digits = [form.get("Digits") for form in service.posted("/voice/incoming")]
    assert digits == [None, "5", "6"]


def test_dial_runs_the_whisper_leg_then_posts_the_action() -> None:
    service = CannedService(
        {
            "/voice/incoming": '<Response><Dial action="/after"><Number url="/w">+15005550006</Number>'
            "</Dial></Response>",
            "/w": '<Response><Gather action="/ok" numDigits="1"><Say>Caller Jane</Say></Gather>'
            "<Hangup/></Response>",
            "/ok": "<Response/>",
        }
    )
    result = play(service, [])
    whisper = service.posted("/w")[0]
    assert whisper["ParentCallSid"] == result.call_sid and whisper["CallSid"] != result.call_sid
    assert whisper["Direction"] == "outbound-dial"
    assert result.heard("agent") == ["Caller Jane"]
    assert service.posted("/after")[0]["DialCallStatus"] == "completed"


def test_agent_who_presses_nothing_leaves_the_dial_unanswered() -> None:
    service = CannedService(
        {
            "/voice/incoming": '<Response><Dial action="/after"><Number url="/w">+15005550006</Number>'
            "</Dial></Response>",
            "/w": '<Response><Gather action="/ok" numDigits="1"/><Hangup/></Response>',
        }
    )
    play(service, [], agent="silent")
    assert service.posted("/ok") == []
    assert service.posted("/after")[0]["DialCallStatus"] == "no-answer"


def test_dial_without_action_goes_on_with_the_next_verb() -> None:
    service = CannedService(
        {
            "/voice/incoming": "<Response><Dial>+15005550006</Dial><Say>After</Say></Response>",
        }
    )
    result = play(service, [], agent="busy")
    assert result.heard() == ["After"]


def test_http_error_makes_twilio_request_the_fallback() -> None:
    service = CannedService(
        {"/voice/fallback": "<Response><Say>Sorry</Say></Response>"},
        status={"/voice/incoming": 500},
    )
    result = play(service, [])
    fallback = service.posted("/voice/fallback")[0]
    assert fallback["ErrorCode"] == "11200" and fallback["ErrorUrl"].endswith("/voice/incoming")
    assert result.heard() == ["Sorry"]


def test_every_call_ends_with_a_completed_status_callback() -> None:
    service = CannedService({"/voice/incoming": "<Response><Say>Hi</Say></Response>"})
    result = play(service, [])
    assert [f["CallStatus"] for f in service.posted("/voice/status")] == ["completed"]
    assert service.posted("/voice/status")[0]["CallSid"] == result.call_sid


def test_a_looping_service_is_cut_off() -> None:
    service = CannedService(
        {"/voice/incoming": "<Response><Redirect>/voice/incoming</Redirect></Response>"}
    )
    result = play(service, [])
    assert result.ended_by == "error"


def latest_code(app: Flask) -> str:
    """The code in the newest message of the app's local outbox."""
    messages = outbox.read(app.config["IVR_SETTINGS"].outbox_path)
    assert messages, "no message in the outbox"
    found = re.search(r"\b(\d{6,10})\b", messages[-1].body)
    assert found, messages[-1].body
    return found.group(1)


class Typist(io.RawIOBase):
    """Standard input typed one line at a time, each only when the program reads it.

    A line may be a function: it is called at that moment, the way a person at the
    terminal reads the code that has just arrived before typing it.
    """

    def __init__(self, lines: list[str | Callable[[], str]]):
        self.lines = list(lines)
        self.pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:
        if len(buffer) == 0:
            return 0
        if not self.pending:
            if not self.lines:
                return 0
            line = self.lines.pop(0)
            self.pending = ((line() if callable(line) else line) + "\n").encode()
        size = min(len(buffer), len(self.pending))
        buffer[:size] = self.pending[:size]
        self.pending = self.pending[size:]
        return size


def test_ivr_call_command_reaches_a_verified_transfer(app: Flask, runner: FlaskCliRunner) -> None:
    seeded = runner.invoke(args=["demo"])
    assert seeded.exit_code == 0, seeded.output
    assert "+14155550100" in seeded.output
    result = runner.invoke(args=["call", "--from", "+14155550100", "--digits", "1,4321,@code,1"])
    assert result.exit_code == 0, result.output
    code = latest_code(app)
    assert f"Outbox (sms to +1415•••0100): Your Example support code is {code}." in result.output
    assert f"You press: {code}" in result.output
    assert (
        "Agent hears: Verified caller Jane Doe, account ending 4 3 2 1, verified by the last "
        "four account digits and a code sent by text message." in result.output
    )
    assert "accepted; caller connected" in result.output


def test_ivr_call_command_interactive_reads_keys_from_the_terminal(
    app: Flask, runner: FlaskCliRunner
) -> None:
    runner.invoke(args=["demo"])
    typed = Typist(["1", "5678", lambda: latest_code(app), "2"])
    result = runner.invoke(args=["call", "--from", "+14155550111"], input=typed)
    assert result.exit_code == 0, result.output
    assert "Thank you, John." in result.output
    assert "Thank you for calling. Goodbye." in result.output
