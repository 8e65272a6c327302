"""TaskRouter targets: the worker a reservation picks hears the whisper, then gets exactly
that task's caller.

The Workflow's Assignment Callback (`/taskrouter/assignment`) answers the `call`
instruction; the worker's leg requests `/voice/taskrouter/whisper` (who is calling,
how they were verified, "press 1") and on 1 `<Dial><Queue reservationSid>` bridges
the caller. Every request is signed, like Twilio signs them; callers reach the
workflow through the default flow with `IVR_AGENT_TARGET=workflow:WW…`.
"""

from __future__ import annotations

import json
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from caller import sent_codes
from conftest import PUBLIC_URL
from flask import Flask
from kit import (
    DIGITS_AND_SMS,
    JANE_PHONE,
    add_account,
    call_form,
    gather_step,
    new_sid,
    post,
    says,
    text,
    twiml,
    unverified_whisper,
    verified_whisper,
)

WORKFLOW = "WW" + "0123456789abcdef" * 2
RESERVATION = "WR" + "a" * 32
WORKSPACE = "WS" + "b" * 32
TASK = "WT" + "d" * 32
WORKER = "+14155550177"
SUPPORT_NUMBER = "+15005550006"


@pytest.fixture
def workflow_app(make_app: Any) -> Flask:
    """The default flow, with TaskRouter as the configured agent target."""
    app: Flask = make_app(IVR_AGENT_TARGET=f"workflow:{WORKFLOW}")
    return app


def verified_call(app: Flask) -> tuple[str, ET.Element]:
    """Jane calls, passes digits and an SMS code, asks for an agent: her CallSid and the
    document that enqueues her into the workflow."""
    add_account(app, "Jane Doe", JANE_PHONE, "10004321")
    call_sid = new_sid()
    doc = twiml(post(app, "/voice/incoming", call_form(call_sid)))
    for keys in ("1", "4321", "@code", "2"):
        if keys == "@code":
            keys = sent_codes(app)[-1]
        doc = twiml(
            post(app, f"/voice/input?s={gather_step(doc)}", call_form(call_sid, Digits=keys))
        )
    return call_sid, doc


def unverified_call(app: Flask) -> tuple[str, ET.Element]:
    """A caller who says nothing to the language menu ends up with an agent, unverified."""
    call_sid = new_sid()
    doc = twiml(post(app, "/voice/incoming", call_form(call_sid)))
    for _ in range(10):
        if doc.find("Enqueue") is not None:
            return call_sid, doc
        doc = twiml(post(app, f"/voice/input?s={gather_step(doc)}", call_form(call_sid)))
    raise AssertionError("never transferred: " + ET.tostring(doc, encoding="unicode"))


def assignment_form(task_attributes: str, **fields: str) -> dict[str, str]:
    """What TaskRouter posts to a Workflow's Assignment Callback URL."""
    form = {
        "AccountSid": "AC" + "0" * 32,
        "WorkspaceSid": WORKSPACE,
        "WorkflowSid": WORKFLOW,
        "TaskQueueSid": "WQ" + "c" * 32,
        "TaskSid": TASK,
        "TaskAttributes": task_attributes,
        "TaskAge": "12",
        "TaskPriority": "0",
        "WorkerSid": "WK" + "e" * 32,
        "WorkerAttributes": json.dumps({"contact_uri": WORKER, "languages": ["en"]}),
        "ReservationSid": RESERVATION,
        "Timestamp": "1764874800",
    }
    form.update(fields)
    return form


def worker_leg_form(**fields: str) -> dict[str, str]:
    """What Twilio posts when the worker answers the call TaskRouter placed."""
    return call_form(
        new_sid(),
        From=SUPPORT_NUMBER,
        Caller=SUPPORT_NUMBER,
        To=WORKER,
        Called=WORKER,
        Direction="outbound-api",
        **fields,
    )


def instruction_for(app: Flask, doc: ET.Element) -> dict[str, Any]:
    """The assignment callback's answer for the task the document enqueued."""
    response = post(
        app, "/taskrouter/assignment", assignment_form(doc.findtext("Enqueue/Task") or "")
    )
    assert response.status_code == 200 and response.mimetype == "application/json"
    answer: dict[str, Any] = json.loads(response.get_data(as_text=True))
    return answer


def whisper_path(instruction: dict[str, Any]) -> str:
    url = urlsplit(instruction["url"])
    assert f"{url.scheme}://{url.netloc}" == PUBLIC_URL
    return f"{url.path}?{url.query}"


# --- the assignment callback ---------------------------------------------------------------


def test_assignment_calls_the_worker_with_the_whisper_url(workflow_app: Flask) -> None:
    call_sid, doc = verified_call(workflow_app)

    instruction = instruction_for(workflow_app, doc)

    assert instruction["instruction"] == "call"
    assert instruction["from"] == SUPPORT_NUMBER and instruction["to"] == WORKER
    url = urlsplit(instruction["url"])
    assert url.path == "/voice/taskrouter/whisper"
    assert parse_qs(url.query) == {
        "r": [RESERVATION],
        "c": [call_sid],
        "w": [WORKSPACE],
        "t": [TASK],
    }


def test_assignment_callbacks_must_be_signed(workflow_app: Flask) -> None:
    form = assignment_form(json.dumps({"call_sid": new_sid()}))

    unsigned = post(workflow_app, "/taskrouter/assignment", form, signed=False)
    forged = post(workflow_app, "/taskrouter/assignment", form, token="another-auth-token")
    other = post(workflow_app, "/taskrouter/assignment", {**form, "AccountSid": "AC" + "1" * 32})
    signed = post(workflow_app, "/taskrouter/assignment", form)

    assert [r.status_code for r in (unsigned, forged, other)] == [403, 403, 403]
    assert signed.status_code == 200


@pytest.mark.parametrize(
    ("fields", "instructed"),
    [
        ({"ReservationSid": ""}, False),
        ({"ReservationSid": "WR-not-a-sid"}, False),
        ({"TaskAttributes": "not json"}, True),  # no caller known: the whisper says unverified
        ({"TaskAttributes": json.dumps(["a list"])}, True),
        ({"WorkerAttributes": "{}"}, False),  # no number to call: no instruction at all
        ({"WorkerAttributes": json.dumps({"contact_uri": " "})}, False),
        ({"WorkerAttributes": "not json"}, False),
    ],
)
def test_assignment_with_odd_input_never_fails(
    workflow_app: Flask, fields: dict[str, str], instructed: bool
) -> None:
    form = assignment_form(json.dumps({"call_sid": new_sid()}), **fields)

    response = post(workflow_app, "/taskrouter/assignment", form)

    assert response.status_code == 200
    body = response.get_data(as_text=True)
    if not instructed:
        assert body == ""  # no instruction: the reservation times out and is offered again
        return
    instruction = json.loads(body)
    assert instruction["instruction"] == "call"
    assert parse_qs(urlsplit(instruction["url"]).query).get("r") == [RESERVATION]


def test_a_call_instruction_always_names_the_worker_to_call(
    workflow_app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    """A `call` instruction without `to` fails at Twilio (error 40110): a worker with no
    contact_uri gets no instruction, and the log says why."""
    form = assignment_form(json.dumps({"call_sid": new_sid()}), WorkerAttributes="{}")

    with caplog.at_level("ERROR", logger="ivr.voice.taskrouter"):
        response = post(workflow_app, "/taskrouter/assignment", form)
    sip = assignment_form(
        json.dumps({"call_sid": new_sid()}),
        WorkerAttributes=json.dumps({"contact_uri": "sip:alice@pbx.example"}),
    )
    instruction = json.loads(post(workflow_app, "/taskrouter/assignment", sip).get_data())

    assert response.get_data(as_text=True) == ""
    assert any("has no contact_uri" in record.getMessage() for record in caplog.records)
    assert instruction["to"] == "sip:alice@pbx.example"


# --- the worker's leg: the whisper, then exactly that caller --------------------------------


def test_the_worker_hears_who_is_calling_and_how_they_were_verified(workflow_app: Flask) -> None:
    _, doc = verified_call(workflow_app)
    path = whisper_path(instruction_for(workflow_app, doc))

    whisper = twiml(post(workflow_app, path, worker_leg_form()))

    assert says(whisper) == [
        verified_whisper(workflow_app, "Jane Doe", "4321", DIGITS_AND_SMS, "caller_request"),
        text(workflow_app, "whisper_accept"),
    ]
    gather = whisper.find("Gather")
    assert gather is not None and gather.get("numDigits") == "1"
    # No key: the Redirect posts the answer without Digits, which declines (and rejects).
    assert [child.tag for child in whisper] == ["Gather", "Redirect"]
    answer = gather.get("action") or ""
    assert urlsplit(answer).path == "/voice/taskrouter/answer"
    assert (whisper.findtext("Redirect") or "").strip() == answer
    assert parse_qs(urlsplit(answer).query) == {"r": [RESERVATION], "w": [WORKSPACE], "t": [TASK]}

    bridged = twiml(post(workflow_app, answer, worker_leg_form(Digits="1")))

    (dial,) = list(bridged)
    (queue,) = list(dial)
    assert (dial.tag, queue.tag, queue.get("reservationSid")) == ("Dial", "Queue", RESERVATION)


def test_an_unverified_caller_is_announced_as_unverified(workflow_app: Flask) -> None:
    _, doc = unverified_call(workflow_app)
    task = json.loads(doc.findtext("Enqueue/Task") or "")
    path = whisper_path(instruction_for(workflow_app, doc))

    whisper = twiml(post(workflow_app, path, worker_leg_form()))

    assert says(whisper)[0] == unverified_whisper(workflow_app, task["transfer_reason"])


def test_a_worker_who_declines_is_hung_up(workflow_app: Flask) -> None:
    """Any other key (or none): this leg ends, and TaskRouter offers the task again
    when the reservation times out."""
    for digits in ("2", "", "*"):
        doc = twiml(
            post(
                workflow_app,
                f"/voice/taskrouter/answer?r={RESERVATION}",
                worker_leg_form(Digits=digits),
            )
        )
        assert [child.tag for child in doc] == ["Hangup"]


class TaskRouterDouble:
    """TaskRouter's REST API on a local port: records each request, answers a Reservation
    update with the reservation as JSON (or `status` when set to fail)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.status = 200
        double = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode(), keep_blank_values=True)
                double.requests.append((self.path, {k: v[0] for k, v in form.items()}))
                body = {"sid": RESERVATION, "reservation_status": form.get("ReservationStatus")}
                payload = json.dumps(body if double.status == 200 else {}).encode()
                self.send_response(double.status)
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


@pytest.fixture
def taskrouter_api() -> Iterator[TaskRouterDouble]:
    double = TaskRouterDouble()
    double.thread.start()
    yield double
    double.server.shutdown()
    double.server.server_close()
    double.thread.join(timeout=5)


RESERVATION_PATH = f"/v1/Workspaces/{WORKSPACE}/Tasks/{TASK}/Reservations/{RESERVATION}"


@pytest.mark.parametrize("digits", ["2", None], ids=["declines", "presses-nothing"])
def test_a_worker_who_declines_or_says_nothing_rejects_the_reservation(
    make_app: Any, taskrouter_api: TaskRouterDouble, digits: str | None
) -> None:
    """TaskRouter offers the task to another worker at once, not after the reservation's
    timeout: the reservation is rejected through the REST API, then the leg hangs up."""
    app: Flask = make_app(
        IVR_AGENT_TARGET=f"workflow:{WORKFLOW}",
        IVR_DELIVERY="twilio",
        IVR_TWILIO_API_URL=taskrouter_api.url,
    )
    _, doc = unverified_call(app)  # (no SMS code: this API double answers only TaskRouter)
    whisper = twiml(post(app, whisper_path(instruction_for(app, doc)), worker_leg_form()))
    if digits is None:  # no key within the Gather's timeout: Twilio runs the Redirect
        url, form = (whisper.findtext("Redirect") or "").strip(), worker_leg_form()
    else:
        gather = whisper.find("Gather")
        assert gather is not None
        url, form = gather.get("action") or "", worker_leg_form(Digits=digits)

    hung_up = twiml(post(app, url, form))

    assert [child.tag for child in hung_up] == ["Hangup"]
    assert taskrouter_api.requests == [(RESERVATION_PATH, {"ReservationStatus": "rejected"})]


def test_a_failed_rejection_still_hangs_up(
    make_app: Any, taskrouter_api: TaskRouterDouble, caplog: pytest.LogCaptureFixture
) -> None:
    """Twilio refusing the update leaves the reservation to time out; the leg still ends."""
    taskrouter_api.status = 500
    app: Flask = make_app(
        IVR_AGENT_TARGET=f"workflow:{WORKFLOW}",
        IVR_DELIVERY="twilio",
        IVR_TWILIO_API_URL=taskrouter_api.url,
    )
    path = f"/voice/taskrouter/answer?r={RESERVATION}&w={WORKSPACE}&t={TASK}"

    with caplog.at_level("ERROR", logger="ivr.voice.taskrouter"):
        doc = twiml(post(app, path, worker_leg_form(Digits="9")))

    assert [child.tag for child in doc] == ["Hangup"]
    assert [p for p, _ in taskrouter_api.requests] == [RESERVATION_PATH]
    assert any("could not be rejected" in record.getMessage() for record in caplog.records)


def test_accepting_never_rejects(make_app: Any, taskrouter_api: TaskRouterDouble) -> None:
    app: Flask = make_app(
        IVR_AGENT_TARGET=f"workflow:{WORKFLOW}",
        IVR_DELIVERY="twilio",
        IVR_TWILIO_API_URL=taskrouter_api.url,
    )
    path = f"/voice/taskrouter/answer?r={RESERVATION}&w={WORKSPACE}&t={TASK}"

    doc = twiml(post(app, path, worker_leg_form(Digits="1")))

    assert doc.find("Dial/Queue") is not None and taskrouter_api.requests == []


def test_worker_legs_must_be_signed(workflow_app: Flask) -> None:
    path = f"/voice/taskrouter/whisper?r={RESERVATION}&c={new_sid()}"

    response = post(workflow_app, path, worker_leg_form(), token="another-auth-token")

    assert response.status_code == 403


def test_a_whisper_without_a_reservation_hangs_up(workflow_app: Flask) -> None:
    doc = twiml(post(workflow_app, "/voice/taskrouter/whisper?r=nope", worker_leg_form()))

    assert [child.tag for child in doc] == ["Hangup"]


def test_a_lost_caller_state_still_whispers_unverified(workflow_app: Flask) -> None:
    path = f"/voice/taskrouter/whisper?r={RESERVATION}&c={new_sid()}"

    doc = twiml(post(workflow_app, path, worker_leg_form()))

    assert says(doc)[0].startswith("Unverified caller.")
    assert doc.find("Gather") is not None
