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
import xml.etree.ElementTree as ET
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
        "WorkspaceSid": "WS" + "b" * 32,
        "WorkflowSid": WORKFLOW,
        "TaskQueueSid": "WQ" + "c" * 32,
        "TaskSid": "WT" + "d" * 32,
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
    assert parse_qs(url.query) == {"r": [RESERVATION], "c": [call_sid]}


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
        ({"WorkerAttributes": "{}"}, True),  # TaskRouter then calls the contact_uri itself
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
    assert ("to" in instruction) == ("WorkerAttributes" not in fields)
    assert parse_qs(urlsplit(instruction["url"]).query).get("r") == [RESERVATION]


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
    assert [child.tag for child in whisper] == ["Gather", "Hangup"]
    answer = gather.get("action") or ""
    assert urlsplit(answer).path == "/voice/taskrouter/answer"

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
