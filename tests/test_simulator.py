"""The simulator plays TwiML the way Twilio documents it, answers the calls the service
places (call-backs) from its outbox, and `ivr call` drives the service."""

from __future__ import annotations

import io
import os
import re
import secrets
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from caller import Phone
from conftest import AUTH_TOKEN
from flask import Flask, Response, request
from flask.testing import FlaskCliRunner
from twilio.request_validator import RequestValidator

from ivr.delivery import Outgoing, OutgoingCall, outbox
from ivr.delivery.outbox import Outbox, OutboxMessage
from ivr.simulator.cli import call as call_command
from ivr.simulator.keypads import CodeNotSent
from ivr.simulator.player import (
    MAX_CALLBACKS,
    MAX_REQUESTS,
    Callee,
    CalleeBehaviour,
    CallResult,
    Scripted,
    Simulator,
    every_callee,
    spoken_codes,
)
from ivr.simulator.transport import InProcess, Reply

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
    result = runner.invoke(args=["call", "--from", "+14155550100", "--digits", "1,4321,@code,2"])
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
    typed = Typist(["1", "5678", lambda: latest_code(app), "3"])
    result = runner.invoke(args=["call", "--from", "+14155550111"], input=typed)
    assert result.exit_code == 0, result.output
    assert "Thank you, John." in result.output
    assert "Thank you for calling. Goodbye." in result.output


# --- calls the service places (call-backs) --------------------------------------------------

CALLER = "+14155550100"
OTHER_PHONE = "+14155550199"
SUPPORT = "+15005550006"


class CallingService:
    """A tiny service that places calls through a local outbox, as the real one does.

    Mode A (`calls`="other" or "caller"): the inbound call places a call-back and asks
    for the code it reads out after a key press. Mode B (`after_hangup`): the inbound
    call reads the code and hangs up; its completed status callback places a call to
    the caller, who keys in the code they heard. Every request's signature is checked
    with twilio's RequestValidator and every request is recorded.
    """

    def __init__(
        self,
        outbox_path: Path,
        *,
        calls: str = "other",
        after_hangup: bool = False,
        answer_status: int = 200,
        chain: bool = False,
        place_late: float = 0.0,
    ):
        self.outbox_path = outbox_path
        self.code = "".join(secrets.choice("0123456789") for _ in range(6))
        self.requests: list[tuple[str, dict[str, str], bool]] = []  # (path, form, signed)
        spaced = ", ".join(self.code)
        reads_code = f"<Say>Your code is {spaced}. Again: {spaced}.</Say><Hangup/>"
        app = Flask("calling_service")
        app.config["IVR_SETTINGS"] = SimpleNamespace(
            twilio_auth_token=AUTH_TOKEN,
            public_url=BASE,
            delivery="outbox",
            outbox_path=outbox_path,
            support_number=SUPPORT,
        )
        app.cli.add_command(call_command)
        validator = RequestValidator(AUTH_TOKEN)

        @app.before_request
        def check_signature() -> Response | None:
            query = request.query_string.decode()
            url = BASE + request.path + (f"?{query}" if query else "")
            form = request.form.to_dict()
            signed = validator.validate(url, form, request.headers.get("X-Twilio-Signature", ""))
            self.requests.append((request.path, form, signed))
            return None if signed else Response("bad signature", status=403)

        def twiml(body: str, status: int = 200) -> Response:
            return Response(f"<Response>{body}</Response>", status=status, mimetype="text/xml")

        @app.post("/voice/incoming")
        def incoming() -> Response:
            if after_hangup:
                return twiml(reads_code)
            self.place(OTHER_PHONE if calls == "other" else request.form["From"])
            return twiml(
                '<Gather action="/voice/code" numDigits="6"><Say>We are calling you with a '
                "code.</Say></Gather><Say>Goodbye.</Say><Hangup/>"
            )

        @app.post("/voice/code")
        def code() -> Response:
            right = request.form.get("Digits") == self.code
            return twiml(f"<Say>{'Verified' if right else 'Wrong code'}.</Say><Hangup/>")

        @app.post("/voice/status")
        def status() -> Response:
            if after_hangup and request.form["CallStatus"] == "completed":
                if place_late:  # as a server's job would: a moment after this answers
                    to, sid = request.form["From"], request.form["CallSid"]
                    threading.Timer(place_late, self.place, (to, sid)).start()
                else:
                    self.place(request.form["From"])
            return twiml("")

        @app.post("/cb/answer")
        def answer() -> Response:
            if chain:
                self.place(OTHER_PHONE)
            return twiml(
                '<Gather action="/cb/key" numDigits="1"><Say>Press a key to hear your code.'
                "</Say></Gather><Hangup/>",
                status=answer_status,
            )

        @app.post("/cb/key")
        def key() -> Response:
            if after_hangup:
                return twiml(
                    '<Gather action="/cb/check" numDigits="6"><Say>Enter the code you heard.'
                    "</Say></Gather><Hangup/>"
                )
            return twiml(reads_code)

        @app.post("/cb/check")
        def check() -> Response:
            right = request.form.get("Digits") == self.code
            return twiml(f"<Say>{'Number confirmed' if right else 'Wrong code'}.</Say><Hangup/>")

        @app.post("/cb/status")
        def callback_status() -> Response:
            return twiml("")

        self.app = app

    def place(self, to: str, call_sid: str | None = None) -> str:
        return Outbox(self.outbox_path).place(
            OutgoingCall(
                to=to,
                url=BASE + "/cb/answer?id=x1",
                status_callback=BASE + "/cb/status?id=x1",
                ring_seconds=20,
                call_sid=call_sid or request.form.get("CallSid"),
                purpose="verify",
            )
        )

    def posted(self, path: str) -> list[dict[str, str]]:
        return [form for p, form, _ in self.requests if p == path]

    def call(
        self,
        keys: list[str],
        callee: Callee | None = None,
        caller: str = CALLER,
        after_call_wait: float = 0.0,
    ) -> CallResult:
        simulator = Simulator(
            InProcess(self.app, AUTH_TOKEN),
            BASE,
            support_number=SUPPORT,
            outbox=lambda: outbox.read(self.outbox_path),
            callee=callee,
            after_call_wait=after_call_wait,
        )
        result = simulator.call(caller, Scripted(keys))
        assert all(signed for _, _, signed in self.requests), "an unsigned request"
        return result


def notes(result: CallResult, who: str = "callee") -> list[str]:
    return [e.text for e in result.events if e.kind == "note" and e.who == who]


def test_answered_call_back_reads_the_code_and_the_caller_keys_it_in(tmp_path: Path) -> None:
    service = CallingService(tmp_path / "outbox.jsonl")

    result = service.call(["@code"], every_callee("answer", Scripted(["1"])))

    (placed,) = outbox.read(service.outbox_path)
    spaced = ", ".join(service.code)
    assert result.heard("callee") == [
        "Press a key to hear your code.",
        f"Your code is {spaced}. Again: {spaced}.",
    ]
    assert result.heard() == ["We are calling you with a code.", "Verified."]
    assert service.posted("/voice/code")[0]["Digits"] == service.code
    assert result.codes == [service.code]
    answered = service.posted("/cb/answer")[0]
    assert answered["CallSid"] == placed.id and answered["CallStatus"] == "in-progress"
    assert (answered["Direction"], answered["From"], answered["To"]) == (
        "outbound-api",
        SUPPORT,
        OTHER_PHONE,
    )
    assert service.posted("/cb/key")[0]["Digits"] == "1"
    (final,) = service.posted("/cb/status")
    assert (final["CallSid"], final["CallStatus"], final["Direction"]) == (
        placed.id,
        "completed",
        "outbound-api",
    )
    assert int(final["CallDuration"]) > 0
    (callback,) = result.callbacks
    assert (callback.status, callback.placed_for, callback.purpose) == (
        "completed",
        result.call_sid,
        "verify",
    )
    assert [url for url, _ in callback.documents] == [
        BASE + "/cb/answer?id=x1",
        BASE + "/cb/key",
    ]
    assert not any("/cb/" in url for url, _ in result.documents)  # the caller's leg only
    assert notes(result)[0] == "call-back to +1415•••0199: answered"


def test_voicemail_hears_the_greeting_but_never_presses_a_key(tmp_path: Path) -> None:
    service = CallingService(tmp_path / "outbox.jsonl")

    result = service.call([], every_callee("voicemail"))

    assert result.heard("callee") == ["Press a key to hear your code."]
    assert service.posted("/cb/key") == []
    assert result.codes == []
    assert [f["CallStatus"] for f in service.posted("/cb/status")] == ["completed"]
    assert notes(result)[0] == "call-back to +1415•••0199: answered by voicemail"


@pytest.mark.parametrize(
    ("behaviour", "said"), [("no-answer", "no answer"), ("busy", "busy"), ("failed", "failed")]
)
def test_a_call_back_that_never_connects_never_fetches_its_url(
    tmp_path: Path, behaviour: str, said: str
) -> None:
    service = CallingService(tmp_path / "outbox.jsonl")

    result = service.call([""], every_callee(behaviour))

    assert service.posted("/cb/answer") == []
    (final,) = service.posted("/cb/status")
    assert (final["CallStatus"], final["CallDuration"], final["To"]) == (
        behaviour,
        "0",
        OTHER_PHONE,
    )
    assert result.heard("callee") == []
    assert notes(result) == [f"call-back to +1415•••0199: {said}"]
    assert result.callbacks[0].status == behaviour


def test_the_callers_own_phone_is_busy_while_their_call_lasts(tmp_path: Path) -> None:
    """A phone on the call cannot ring (the simulator's simplification of call waiting)."""
    service = CallingService(tmp_path / "outbox.jsonl", calls="caller")

    result = service.call([""], every_callee("answer", Scripted(["1"])))

    assert service.posted("/cb/answer") == []
    assert [(f["CallStatus"], f["To"]) for f in service.posted("/cb/status")] == [("busy", CALLER)]
    assert notes(result) == ["call-back to +1415•••0100: busy (that phone is on the call)"]


def test_a_call_placed_after_the_caller_hung_up_reaches_them(tmp_path: Path) -> None:
    """Mode B: the code is read on the inbound call; the call-back, placed from its
    status callback, is answered and the code heard earlier is keyed in."""
    service = CallingService(tmp_path / "outbox.jsonl", after_hangup=True)

    result = service.call([], every_callee("answer", Scripted(["1", "@code"])))

    paths = [path for path, _, _ in service.requests]
    assert paths == [
        "/voice/incoming",
        "/voice/status",
        "/cb/answer",
        "/cb/key",
        "/cb/check",
        "/cb/status",
    ]
    assert service.posted("/voice/status")[0]["CallStatus"] == "completed"
    assert service.posted("/cb/check")[0]["Digits"] == service.code
    assert result.heard("callee")[-1] == "Number confirmed."
    assert service.posted("/cb/answer")[0]["To"] == CALLER
    assert [f["CallStatus"] for f in service.posted("/cb/status")] == ["completed"]
    assert result.codes == [service.code]


@pytest.mark.parametrize(("wait", "answered"), [(0.0, False), (3.0, True)])
def test_a_call_placed_a_moment_after_the_call_is_awaited_when_asked(
    tmp_path: Path, wait: float, answered: bool
) -> None:
    """A running server places the after-call call-back from a job, after the status
    callback has answered: `after_call_wait` (ivr call --url) watches the outbox for it."""
    service = CallingService(tmp_path / "outbox.jsonl", after_hangup=True, place_late=0.3)

    result = service.call(
        [], every_callee("answer", Scripted(["1", "@code"])), after_call_wait=wait
    )

    assert (result.heard("callee")[-1:] == ["Number confirmed."]) is answered


def test_an_error_from_the_call_back_url_ends_that_call_without_a_fallback(
    tmp_path: Path,
) -> None:
    service = CallingService(tmp_path / "outbox.jsonl", answer_status=500)

    result = service.call([""], every_callee("answer", Scripted(["1"])))

    assert service.posted("/voice/fallback") == []
    assert result.heard("callee") == []
    assert result.callbacks[0].ended_by == "error"
    assert any(note.startswith("HTTP 500 from") for note in notes(result))
    assert [f["CallStatus"] for f in service.posted("/cb/status")] == ["completed"]


def test_calls_placed_by_a_call_back_ring_after_it_and_are_bounded(tmp_path: Path) -> None:
    """Each answered call-back places another: they ring one after another, not nested,
    and the simulator stops answering after MAX_CALLBACKS."""
    service = CallingService(tmp_path / "outbox.jsonl", chain=True)

    result = service.call([""], every_callee("answer"))

    assert len(result.callbacks) == MAX_CALLBACKS + 1
    assert [c.status for c in result.callbacks[:MAX_CALLBACKS]] == ["completed"] * MAX_CALLBACKS
    assert result.callbacks[-1].status == ""  # never rung
    first_notes = notes(result)[:3]
    assert first_notes == [
        "call-back to +1415•••0199: answered",
        "call-back to +1415•••0199 ended (callee-hangup)",
        "call-back to +1415•••0199: answered",
    ]
    assert notes(result)[-1] == f"call-back to +1415•••0199 not rung: over {MAX_CALLBACKS} placed"
    assert len(service.posted("/cb/status")) == MAX_CALLBACKS


def test_an_answering_machine_stops_recording_after_its_limit(tmp_path: Path) -> None:
    """A service that prompts forever is cut off by the machine, not left looping."""
    service = CannedService(
        {
            "/voice/incoming": "<Response><Say>Bye</Say></Response>",
            "/cb": "<Response><Say>Press 1</Say><Gather/><Redirect>/cb</Redirect></Response>",
        }
    )
    placed: list[OutboxMessage] = []

    class Placing:
        def post(self, url: str, form: dict[str, str]) -> Reply:
            if url == BASE + "/voice/incoming":
                Outbox(tmp_path / "outbox.jsonl").place(
                    OutgoingCall(OTHER_PHONE, BASE + "/cb", BASE + "/cbs", 20)
                )
                placed[:] = outbox.read(tmp_path / "outbox.jsonl")
            return service.post(url, form)

    simulator = Simulator(Placing(), BASE, outbox=lambda: placed, callee=every_callee("voicemail"))
    result = simulator.call(CALLER, Scripted([]))

    answered = service.posted("/cb")
    assert 1 < len(answered) < MAX_REQUESTS
    assert all("Digits" not in form for form in answered)
    assert notes(result)[-2].startswith("the answering machine stopped recording after")
    assert result.callbacks[0].ended_by == "callee-hangup"
    assert [f["CallStatus"] for f in service.posted("/cbs")] == ["completed"]


def test_the_latest_code_is_the_last_delivered_by_any_means(tmp_path: Path) -> None:
    """A text, then a code read out on the call, then another text: @code follows them."""
    path = tmp_path / "outbox.jsonl"
    texted, spoken, texted_again = "111111", "222222", "333333"

    def text_code(code: str, call_sid: str) -> None:
        Outbox(path).send(Outgoing("sms", CALLER, f"Your code is {code}.", call_sid=call_sid))

    service = CannedService(
        {
            "/voice/incoming": '<Response><Gather action="/two"/></Response>',
            "/two": f"<Response><Say>Your code is {', '.join(spoken)}.</Say>"
            '<Gather action="/three"/></Response>',
            "/three": '<Response><Gather action="/four"/></Response>',
        }
    )
    sends = {"/voice/incoming": texted, "/three": texted_again}

    class Texting:
        """The canned service, texting a code as it answers some paths."""

        def post(self, url: str, form: dict[str, str]) -> Reply:
            reply = service.post(url, form)
            code = sends.get(url.removeprefix(BASE))
            if code:
                text_code(code, form["CallSid"])
            return reply

    simulator = Simulator(Texting(), BASE, outbox=lambda: outbox.read(path))
    result = simulator.call(CALLER, Scripted(["@code", "@code", "@code#"]))

    digits = [service.posted(p)[0]["Digits"] for p in ("/two", "/three", "/four")]
    assert digits == [texted, spoken, texted_again]
    assert result.codes == [texted, spoken, texted_again]
    assert simulator.latest_code() == texted_again


AN_EARLIER_CALL = "CA" + "1" * 32


def test_codes_and_calls_left_in_the_outbox_by_an_earlier_call_are_not_this_calls(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.jsonl"
    Outbox(path).send(Outgoing("sms", CALLER, "Your code is 123456.", call_sid=AN_EARLIER_CALL))
    Outbox(path).place(OutgoingCall(OTHER_PHONE, BASE + "/cb", BASE + "/cbs", 20))
    service = CannedService({"/voice/incoming": '<Response><Gather action="/next"/></Response>'})
    simulator = Simulator(service, BASE, outbox=lambda: outbox.read(path))

    with pytest.raises(
        CodeNotSent, match=r"^@code: no code has been sent or read out on this call$"
    ):
        simulator.call(CALLER, Scripted(["@code"]))

    assert service.posted("/next") == []  # the earlier call's 123456 was never keyed in
    assert service.posted("/cb") == service.posted("/cbs") == []


def test_at_code_keys_only_a_code_sent_for_this_call(tmp_path: Path) -> None:
    """Each call texts the caller's code for its own CallSid, and a call going on at the
    same time texts another one just after; a later call that is sent no code of its own
    is refused @code rather than given either of them."""
    path = tmp_path / "outbox.jsonl"
    texts = ["111111"]  # one code, for the first call only
    service = CannedService({"/voice/incoming": '<Response><Gather action="/next"/></Response>'})

    class Texting:
        def post(self, url: str, form: dict[str, str]) -> Reply:
            if url == BASE + "/voice/incoming":
                if texts:
                    mine = f"Your code is {texts.pop(0)}."
                    Outbox(path).send(Outgoing("sms", CALLER, mine, call_sid=form["CallSid"]))
                other = Outgoing(
                    "sms", OTHER_PHONE, "Your code is 999999.", call_sid=AN_EARLIER_CALL
                )
                Outbox(path).send(other)
            return service.post(url, form)

    first = Simulator(Texting(), BASE, outbox=lambda: outbox.read(path))
    result = first.call(CALLER, Scripted(["@code"]))
    assert service.posted("/next")[0]["Digits"] == "111111"
    assert result.codes == ["111111"]

    second = Simulator(Texting(), BASE, outbox=lambda: outbox.read(path))
    with pytest.raises(CodeNotSent):
        second.call(CALLER, Scripted(["@code"]))
    assert len(service.posted("/next")) == 1  # the second call keyed nothing in
    assert second.latest_code() is None


@pytest.mark.parametrize(
    ("said", "codes"),
    [
        ("Your code is 4, 7, 1, 0, 9, 2. Again: 4, 7, 1, 0, 9, 2.", ["471092"]),
        ("4, 7, 1, 0, 9, 2, 8, 8", ["47109288"]),
        ("You entered 4 1 5, 5 5 5, 0 1 9 9. If that is right, press 1.", []),  # a number
        ("4 7 1 0 9 2 8 8", []),  # the service reads codes with a comma after each digit
        ("Account ending 4 3 2 1.", []),
        ("Call 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2, 3.", []),  # longer than any code
        ("Your balance is 10,000, 1 2 3 4 5.", []),
        ("Reference 471092.", []),
    ],
)
def test_codes_heard_are_single_digits_read_out(said: str, codes: list[str]) -> None:
    assert spoken_codes(said) == codes


def test_the_phone_answers_call_backs_and_checks_their_twiml(tmp_path: Path) -> None:
    """tests/caller.py's Phone: callee keys, @code from a heard code, schema checks."""
    service = CallingService(tmp_path / "outbox.jsonl")

    result = Phone(service.app).call(CALLER, ["@code"], callee_keys=["1"])

    assert result.heard() == ["We are calling you with a code.", "Verified."]
    assert result.callbacks[0].status == "completed"


def test_the_phone_callee_can_be_a_behaviour_or_a_function(tmp_path: Path) -> None:
    service = CallingService(tmp_path / "outbox.jsonl")
    rung: list[str] = []

    def callee(number: str) -> CalleeBehaviour:
        rung.append(number)
        return CalleeBehaviour("no-answer")

    Phone(service.app).call(CALLER, [""], callee="busy")
    Phone(service.app).call(CALLER, [""], callee=callee)

    assert [f["CallStatus"] for f in service.posted("/cb/status")] == ["busy", "no-answer"]
    assert rung == [OTHER_PHONE]


def test_the_simulator_imports_without_flask() -> None:
    probe = "import sys, ivr.simulator.player; sys.exit('flask' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], check=False).returncode == 0


def test_ivr_call_answers_call_backs_with_scripted_keys(tmp_path: Path) -> None:
    service = CallingService(tmp_path / "outbox.jsonl")

    result = service.app.test_cli_runner().invoke(
        args=["call", "--from", CALLER, "--digits", "@code", "--callee-digits", "1"]
    )

    assert result.exit_code == 0, result.output
    spaced = ", ".join(service.code)
    assert "Outbox (call to +1415•••0199): rings up to 20 s" in result.output
    assert "Call-back hears: Press a key to hear your code." in result.output
    assert "Call-back presses: 1" in result.output
    assert f"Call-back hears: Your code is {spaced}. Again: {spaced}." in result.output
    assert f"You press: {service.code}" in result.output
    assert "IVR: Verified." in result.output


def test_ivr_call_with_an_unanswered_call_back(tmp_path: Path) -> None:
    service = CallingService(tmp_path / "outbox.jsonl")

    result = service.app.test_cli_runner().invoke(
        args=["call", "--from", CALLER, "--digits", "", "--callee", "no-answer"]
    )

    assert result.exit_code == 0, result.output
    assert "call-back to +1415•••0199: no answer" in result.output
    assert "Call-back hears" not in result.output


def test_ivr_call_interactive_asks_the_terminal_for_the_call_backs_keys(
    tmp_path: Path,
) -> None:
    service = CallingService(tmp_path / "outbox.jsonl")
    typed = Typist(["1", lambda: service.code])

    result = service.app.test_cli_runner().invoke(args=["call", "--from", CALLER], input=typed)

    assert result.exit_code == 0, result.output
    assert "Call-back to +1415•••0199 — keys (1 key(s)" in result.output
    assert "IVR: Verified." in result.output


def test_ivr_call_stops_with_one_line_when_at_code_has_no_code_from_this_call(
    tmp_path: Path,
) -> None:
    service = CallingService(tmp_path / "outbox.jsonl")
    stale = Outgoing("sms", CALLER, "Your code is 123456.", call_sid=AN_EARLIER_CALL)
    Outbox(service.outbox_path).send(stale)

    result = service.app.test_cli_runner().invoke(
        args=["call", "--from", CALLER, "--digits", "@code", "--callee", "no-answer"]
    )

    assert result.exit_code == 1, result.output
    assert result.output.splitlines()[-1] == (
        "Error: @code: no code has been sent or read out on this call"
    )
    assert "Traceback" not in result.output and "123456" not in result.output
    assert service.posted("/voice/code") == []


def test_ivr_call_interactive_keys_in_the_code_sent_on_this_call(
    app: Flask, runner: FlaskCliRunner
) -> None:
    """`@code` typed at the prompt: refused (and asked again) before this call has sent a
    code, even with an earlier call's code in the outbox; then the code this call sent."""
    runner.invoke(args=["demo"])
    stale = Outgoing("sms", "+14155550100", "Your code is 999999.", call_sid=AN_EARLIER_CALL)
    Outbox(app.config["IVR_SETTINGS"].outbox_path).send(stale)
    typed = Typist(["1", "@code", "4321", "@code", "2"])

    result = runner.invoke(args=["call", "--from", "+14155550100"], input=typed)

    assert result.exit_code == 0, result.output
    code = latest_code(app)
    assert code != "999999"
    assert "@code: no code has been sent or read out on this call" in result.output
    assert "You press: 999999" not in result.output
    assert f"You press: {code}" in result.output
    assert "accepted; caller connected" in result.output


def test_ivr_call_in_process_rings_the_new_phone_after_the_call(tmp_path: Path) -> None:
    """The installed command, as a developer runs it (no test app): the caller changes
    the number to the phone they are calling from; the call-back placed by the after-call
    job once the call ends is answered and confirms the change."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("IVR_", "TWILIO_")) and name not in ("DATABASE_URL", "REDIS_URL")
    }
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'ivr.sqlite3'}",
        IVR_OUTBOX_PATH=str(tmp_path / "outbox.jsonl"),
    )
    ivr = [sys.executable, "-c", "from ivr.cli import main; main()"]

    def run(*args: str) -> str:
        done = subprocess.run([*ivr, *args], env=env, capture_output=True, text=True, cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    run("db", "upgrade")
    run("demo")
    heard = run(
        "call", "--from", "+14155550199",
        "--digits", "1,10004321#,@code,1,4155550199#,1",
        "--callee-digits", "@code",
    )  # fmt: skip

    assert "so we will call it back as soon as this call ends" in heard
    assert "Call-back hears: Thank you. Your phone number has been changed. Goodbye." in heard
