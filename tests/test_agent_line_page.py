"""The agent page's "take next call" (issue 15): the button rings the signed-in agent's
own phone through the dialer (the local outbox here); answered, the agent line runs
already signed in as them (a one-time id, no PIN); the caller they take pops."""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from agent_kit import add_user, csrf_of, sign_in, transfer
from caller import calls_placed
from flask import Flask
from flask.testing import FlaskClient
from kit import call_form, new_sid, post, twiml
from sqlalchemy import select

from ivr.calls import runtime, store
from ivr.flow.state import CallState
from ivr.queues.local import LocalQueues, board_path
from ivr.storage import db
from ivr.storage.models import AgentUser, AuditEvent

ALICE_PHONE = "+14155550177"


@pytest.fixture
def app(make_app) -> Flask:  # type: ignore[no-untyped-def]
    return make_app(IVR_AGENT_TARGET="queue:support")  # type: ignore[no-any-return]


@pytest.fixture
def board(app: Flask) -> Iterator[LocalQueues]:
    queues = LocalQueues(board_path(app.config["IVR_SETTINGS"].outbox_path))
    queues.clear()
    yield queues
    queues.clear()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def alice(app: Flask, client: FlaskClient, phone: str | None = ALICE_PHONE) -> int:
    user_id = add_user(app)
    with app.app_context():
        user = db.session().get(AgentUser, user_id)
        assert user is not None
        user.line_phone = phone
        db.session().commit()
    assert sign_in(client).status_code == 303
    return user_id


def take_next(client: FlaskClient) -> str:
    response = client.post("/agent/take-next", data={"csrf_token": csrf_of(client, "/agent/")})
    assert response.status_code == 303
    return response.headers["Location"]


def held_caller(app: Flask, board: LocalQueues) -> str:
    sid = new_sid()
    with app.app_context():
        live = runtime.get().live()
        store.save(
            CallState(
                call_sid=sid,
                flow=live.flow.name,
                version=live.flow.version,
                language="en-US",
                node="agent_unverified",
                started_at=time.time() - 30,
                step=4,
                transfer_reason="verification_failed",
            )
        )
    board.join("support", sid)
    transfer(app, call_sid=sid)  # listed on the page, as the voice webhook records it
    return sid


def test_take_next_rings_the_agents_phone_and_pops_the_taken_caller(
    app: Flask, client: FlaskClient, board: LocalQueues
) -> None:
    alice(app, client)
    caller = held_caller(app, board)
    landing = take_next(client)
    assert "taking=" in landing
    waiting = client.get(landing).get_data(as_text=True)
    assert 'http-equiv="refresh"' in waiting  # the page reloads until the caller pops
    [ring] = calls_placed(app)
    assert ring.to == ALICE_PHONE and ring.purpose == "agent_line"
    answer = urlsplit(ring.url)
    assert answer.path == "/voice/agent/incoming" and answer.query.startswith("r=")
    form = call_form(new_sid(), From="+15005550006", To=ALICE_PHONE, Direction="outbound-api")
    ready = twiml(post(app, f"{answer.path}?{answer.query}", form))
    # Before any caller is named: "press 1" (a voicemail box that answers hears nothing).
    assert [say.text for say in ready.iter("Say")] == ["Agent line. Press 1 to start taking calls."]
    ready_gather = ready.find("Gather")
    assert ready_gather is not None and ready.find("Hangup") is not None
    doc = twiml(post(app, ready_gather.get("action") or "", {**form, "Digits": "1"}))
    assert any("Press 1 to take this call" in (say.text or "") for say in doc.iter("Say"))
    gather = doc.find("Gather")
    assert gather is not None
    taken = twiml(post(app, gather.get("action") or "", {**form, "Digits": "1"}))
    assert taken.find("Dial/Conference") is not None
    assert board.take_redirect(caller) is not None
    page = client.get(landing).get_data(as_text=True)
    assert f'data-call-sid="{caller}"' in page and 'http-equiv="refresh"' not in page
    # The ring id works once: a replayed answer URL is refused.
    again = twiml(post(app, f"{answer.path}?{answer.query}", {**form, "CallSid": new_sid()}))
    assert again.find("Hangup") is not None and again.find("Gather") is None
    with app.app_context():
        actions = db.session().scalars(select(AuditEvent.action)).all()
    assert "agent.take_next" in actions and "agent_line.taken" in actions


def test_a_voicemail_answering_the_ring_hears_no_caller(
    app: Flask, client: FlaskClient, board: LocalQueues
) -> None:
    """Review finding 6: the ring's answer asks for 1 first; no key, no whisper, and the
    caller stays in the queue."""
    alice(app, client)
    caller = held_caller(app, board)
    take_next(client)
    [ring] = calls_placed(app)
    answer = urlsplit(ring.url)
    form = call_form(new_sid(), From="+15005550006", To=ALICE_PHONE, Direction="outbound-api")
    ready = twiml(post(app, f"{answer.path}?{answer.query}", form))
    assert not any("caller" in (say.text or "").lower() for say in ready.iter("Say"))
    gather = ready.find("Gather")
    assert gather is not None
    beep = twiml(post(app, gather.get("action") or "", {**form, "Digits": "9"}))
    assert beep.find("Hangup") is not None and not list(beep.iter("Say"))
    assert [member.call_sid for member in board.members("support")] == [caller]


def test_without_a_phone_the_button_says_so(app: Flask, client: FlaskClient) -> None:
    alice(app, client, phone=None)
    page = client.get("/agent/").get_data(as_text=True)
    assert 'data-testid="take-next" disabled' in page
    response = client.post(
        "/agent/take-next",
        data={"csrf_token": csrf_of(client, "/agent/")},
        follow_redirects=True,
    )
    assert "No phone is set for you" in response.get_data(as_text=True)
    assert calls_placed(app) == []


def test_take_next_needs_the_csrf_token(app: Flask, client: FlaskClient) -> None:
    alice(app, client)
    response = client.post("/agent/take-next", data={})
    assert response.status_code == 400
    assert calls_placed(app) == []
