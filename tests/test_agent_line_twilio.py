"""The agent line's Twilio queues (ivr.queues.twilio) against a local HTTP double of the
Queues and Members REST API: a name resolved to its QU… SID once, members front first,
a redirect that names the member by CallSid, and 404 as "no longer in the queue"."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from kit import call_form, new_sid, post, twiml

from ivr.calls import runtime, store
from ivr.flow.state import CallState
from ivr.queues import Member, NotQueued, QueueUnavailable, registry
from ivr.queues.twilio import TwilioQueues

TWILIO_SID = "AC" + "1" * 32
QUEUE_SID = "QU" + "2" * 32
BASE = f"/2010-04-01/Accounts/{TWILIO_SID}/Queues"
AGENT_PHONE = "+14155550199"


class QueuesDouble:
    """Queues.json (one queue, "support"), its Members.json, and member updates."""

    def __init__(self) -> None:
        self.members: list[str] = []
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # (method, path, form)
        self.fail = False
        double = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                double.requests.append(("GET", path, {}))
                if double.fail:
                    return self.reply(500, {"code": 20500, "message": "down", "status": 500})
                if path == f"{BASE}.json":
                    queue = {
                        "sid": QUEUE_SID,
                        "friendly_name": "support",
                        "account_sid": TWILIO_SID,
                    }
                    return self.reply(200, {"queues": [queue], "next_page_uri": None, "page": 0})
                if path == f"{BASE}/{QUEUE_SID}/Members.json":
                    found = [
                        {"call_sid": sid, "position": index, "wait_time": 10 * index}
                        for index, sid in enumerate(double.members, start=1)
                    ]
                    return self.reply(200, {"queue_members": found, "next_page_uri": None})
                return self.reply(404, {"code": 20404, "message": "not found", "status": 404})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                path = urlsplit(self.path).path
                double.requests.append(("POST", path, form))
                if double.fail:
                    return self.reply(500, {"code": 20500, "message": "down", "status": 500})
                calls = f"/2010-04-01/Accounts/{TWILIO_SID}/Calls/"
                if path.startswith(calls):
                    sid = path.removeprefix(calls).removesuffix(".json")
                    return self.reply(200, {"sid": sid, "status": "in-progress"})
                prefix = f"{BASE}/{QUEUE_SID}/Members/"
                sid = path.removeprefix(prefix).removesuffix(".json")
                if path.startswith(prefix) and sid in double.members:
                    double.members.remove(sid)
                    return self.reply(200, {"call_sid": sid, "position": 1, "wait_time": 10})
                return self.reply(404, {"code": 20404, "message": "not found", "status": 404})

            def reply(self, status: int, body: dict[str, Any]) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def lookups(self) -> int:
        return sum(1 for method, path, _ in self.requests if path == f"{BASE}.json")


@pytest.fixture
def double() -> Iterator[QueuesDouble]:
    twilio = QueuesDouble()
    twilio.thread.start()
    yield twilio
    twilio.server.shutdown()
    twilio.server.server_close()
    twilio.thread.join(timeout=5)


@pytest.fixture
def app(make_app: Any, double: QueuesDouble) -> Flask:
    built: Flask = make_app(
        IVR_DELIVERY="twilio",
        TWILIO_ACCOUNT_SID=TWILIO_SID,
        IVR_TWILIO_API_URL=double.url,
        IVR_AGENT_TARGET="queue:support",
        IVR_AGENT_PHONES=AGENT_PHONE,
        IVR_AGENT_PIN="246810",
    )
    return built


def test_members_front_first_and_the_sid_looked_up_once(app: Flask, double: QueuesDouble) -> None:
    first, second = new_sid(), new_sid()
    double.members = [first, second]
    with app.app_context():
        switch = registry.get()
        assert isinstance(switch, TwilioQueues)
        assert switch.members("support") == [Member(first, 1, 10), Member(second, 2, 20)]
        assert switch.members("support")[0].call_sid == first
        assert switch.members("nobody-held-here") == []
    assert double.lookups() == 2  # "support" once (then cached); the unknown name once


def test_redirect_names_the_member_by_call_sid(app: Flask, double: QueuesDouble) -> None:
    first, second = new_sid(), new_sid()
    double.members = [first, second]
    with app.app_context():
        switch = registry.get()
        switch.redirect("support", second, "https://ivr.example.test/voice/agent/join?j=x")
        with pytest.raises(NotQueued):
            switch.redirect("support", second, "https://ivr.example.test/voice/agent/join?j=x")
    updates = [(path, form) for method, path, form in double.requests if method == "POST"]
    assert updates[0] == (
        f"{BASE}/{QUEUE_SID}/Members/{second}.json",
        {"Url": "https://ivr.example.test/voice/agent/join?j=x", "Method": "POST"},
    )
    assert double.members == [first]


def test_twilio_down_is_queue_unavailable(app: Flask, double: QueuesDouble) -> None:
    double.fail = True
    with app.app_context(), pytest.raises(QueueUnavailable):
        registry.get().members("support")


def test_the_agent_line_takes_a_twilio_held_caller_and_says_sorry_when_twilio_is_down(
    app: Flask, double: QueuesDouble
) -> None:
    """With Twilio's queues: a held call of ours is announced (unverified here), one
    with no state of ours is skipped, and an outage is a spoken apology, never an HTTP
    error."""
    stranger, ours = new_sid(), new_sid()
    _holding(app, ours)
    double.members = [stranger, ours]
    sid = new_sid()
    form = call_form(sid, From=AGENT_PHONE, Caller=AGENT_PHONE, AccountSid=TWILIO_SID)
    first = twiml(post(app, "/voice/agent/incoming", form))
    gather = first.find("Gather")
    assert gather is not None
    doc = twiml(post(app, gather.get("action") or "", {**form, "Digits": "246810"}))
    assert any("Unverified caller" in (say.text or "") for say in doc.iter("Say"))
    double.fail = True
    other = call_form(new_sid(), From=AGENT_PHONE, Caller=AGENT_PHONE, AccountSid=TWILIO_SID)
    doc = twiml(post(app, "/voice/agent/pin", {**other, "Digits": "246810"}))
    assert [say.text for say in doc.iter("Say")] == [
        "The queue cannot be reached right now. Please try again shortly. Goodbye."
    ]
    assert doc.find("Hangup") is not None


def _holding(app: Flask, call_sid: str) -> None:
    with app.app_context():
        live = runtime.get().live()
        store.save(
            CallState(
                call_sid=call_sid,
                flow=live.flow.name,
                version=live.flow.version,
                language="en-US",
                node="agent_unverified",
                started_at=time.time() - 30,
                step=4,
                transfer_reason="verification_failed",
            )
        )


def test_moving_a_waiting_caller_updates_the_call(app: Flask, double: QueuesDouble) -> None:
    """Review finding 5: a taken caller the agent never joined is moved back with the
    Call resource (`POST …/Calls/{CallSid}` with Url), not left in a silent room."""
    caller = new_sid()
    with app.app_context():
        registry.mover().move(caller, "https://ivr.example.test/voice/agent/back?j=x")
    updates = [(path, form) for method, path, form in double.requests if method == "POST"]
    assert updates == [
        (
            f"/2010-04-01/Accounts/{TWILIO_SID}/Calls/{caller}.json",
            {"Url": "https://ivr.example.test/voice/agent/back?j=x", "Method": "POST"},
        )
    ]
    double.fail = True
    # A failing Twilio is QueueUnavailable (the wait check tries again), never a crash.
    with app.app_context(), pytest.raises(QueueUnavailable):
        registry.mover().move("CA" + "9" * 32, "https://ivr.example.test/x")
