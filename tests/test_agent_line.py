"""The agent line (issue 15): staff phone in, hear the whisper of the held caller at the
front, and on 1 are bridged with exactly that caller; under the DEFAULT configuration
(IVR_AGENT_TARGET=queue:support), through the local queues the simulator plays."""

from __future__ import annotations

import json
import logging
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, urlsplit

import pytest
from caller import CodeKeypad, SchemaCheckingTransport
from conftest import AUTH_TOKEN, PUBLIC_URL
from flask import Flask
from kit import (
    DIGITS_AND_SMS,
    JANE_PHONE,
    add_account,
    assert_nothing_secret_logged,
    call_form,
    new_sid,
    post,
    text,
    twiml,
    verified_whisper,
)
from sqlalchemy import select

from ivr.agent.users import create_user, set_line_pin
from ivr.calls import runtime, store, timeline_store
from ivr.delivery import outbox
from ivr.flow.state import CallState
from ivr.history import record
from ivr.queues.local import LocalQueues, board_path
from ivr.simulator.player import AgentLineCall, Scripted, Simulator
from ivr.storage import db, keys, kv
from ivr.storage.models import AgentUser, AuditEvent, CallRecord

AGENT_PHONE = "+14155550199"
OTHER_AGENT_PHONE = "+14155550198"
STRANGER = "+14155550111"
SHARED_PIN = "246810"
OWN_PIN = "13579"


@pytest.fixture
def app(make_app) -> Flask:  # type: ignore[no-untyped-def]
    return make_app(  # type: ignore[no-any-return]
        IVR_AGENT_TARGET="queue:support",
        IVR_AGENT_PHONES=f"{AGENT_PHONE},{OTHER_AGENT_PHONE}",
        IVR_AGENT_PIN=SHARED_PIN,
    )


@pytest.fixture(autouse=True)
def no_pin_or_number_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Every test here: no PIN and no full phone number in any log record."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="ivr")
    yield
    records = caplog.get_records("setup") + caplog.get_records("call")
    assert_nothing_secret_logged(records, {SHARED_PIN, OWN_PIN})


@pytest.fixture
def board(app: Flask) -> Iterator[LocalQueues]:
    queues = LocalQueues(board_path(app.config["IVR_SETTINGS"].outbox_path))
    queues.clear()
    yield queues
    queues.clear()


def add_agent(app: Flask, name: str, pin: str | None = None, phone: str | None = None) -> int:
    with app.app_context():
        session = db.session()
        user = create_user(
            session,
            name,
            "a long enough password",
            role="agent",
            target="queue:support",
            region="US",
        )
        if pin is not None:
            set_line_pin(user, pin)
        user.line_phone = phone
        session.commit()
        return user.id


def held(app: Flask, board: LocalQueues, account_id: int | None) -> str:
    """A caller holding in queue support at the default flow's verified transfer."""
    sid = new_sid()
    now = time.time()
    with app.app_context():
        live = runtime.get().live()
        state = CallState(
            call_sid=sid,
            flow=live.flow.name,
            version=live.flow.version,
            language="en-US",
            node="agent_verified",
            started_at=now - 60,
            step=7,
            caller=JANE_PHONE,
            identity="one_account",
            account_id=account_id,
            verification="code" if account_id else "none",
            methods=[("account_digits", now - 50), ("code_sms", now - 40)] if account_id else [],
            transfer_reason="caller_request",
        )
        store.save(state)
        timeline_store.mark_open(sid, state.started_at)
    board.join("support", sid)
    return sid


def agent_post(
    app: Flask, path: str, sid: str, caller: str = AGENT_PHONE, **fields: str
) -> ET.Element:
    return twiml(post(app, path, call_form(sid, From=caller, Caller=caller, **fields)))


def follow(doc: ET.Element, tag: str = "Gather") -> str:
    element = doc.find(tag)
    assert element is not None, ET.tostring(doc)
    return element.get("action") or (element.text or "")


def said(doc: ET.Element) -> list[str]:
    return [" ".join((say.text or "").split()) for say in doc.iter("Say")]


def sign_in(app: Flask, sid: str, caller: str = AGENT_PHONE, pin: str = SHARED_PIN) -> ET.Element:
    first = agent_post(app, "/voice/agent/incoming", sid, caller)
    assert text(app, "agent_line_pin") in said(first)
    return agent_post(app, follow(first), sid, caller, Digits=pin)


# --- who may use the line ---------------------------------------------------------------


def test_a_caller_id_not_on_the_list_is_refused_and_logged_masked(
    app: Flask, board: LocalQueues, caplog: pytest.LogCaptureFixture
) -> None:
    doc = agent_post(app, "/voice/agent/incoming", new_sid(), STRANGER)
    assert said(doc) == [text(app, "agent_line_refused")]
    assert doc.find("Hangup") is not None and doc.find("Gather") is None
    assert "+1415•••0111" in caplog.text and STRANGER not in caplog.text


def test_shared_pin_signs_in_and_an_empty_queue_says_so(app: Flask, board: LocalQueues) -> None:
    doc = sign_in(app, new_sid())
    assert said(doc) == [text(app, "agent_line_empty")]
    assert follow(doc).startswith("/voice/agent/next?t=")


def test_an_agents_own_pin_signs_in(app: Flask, board: LocalQueues) -> None:
    add_agent(app, "ann", pin=OWN_PIN, phone=AGENT_PHONE)
    doc = sign_in(app, new_sid(), pin=OWN_PIN)
    assert said(doc) == [text(app, "agent_line_empty")]


def test_the_pin_is_stored_only_as_a_hash(app: Flask) -> None:
    add_agent(app, "ann", pin=OWN_PIN)
    with app.app_context():
        user = db.session().scalar(select(AgentUser).where(AgentUser.username == "ann"))
        assert user is not None and user.line_pin_hash and OWN_PIN not in user.line_pin_hash


def test_a_wrong_pin_asks_again_then_locks_the_caller_id(app: Flask, board: LocalQueues) -> None:
    sid = new_sid()
    first = agent_post(app, "/voice/agent/incoming", sid)
    doc = agent_post(app, follow(first), sid, Digits="999999")
    assert said(doc) == [text(app, "agent_line_pin_wrong"), text(app, "agent_line_pin")]
    for _ in range(3):
        doc = agent_post(app, "/voice/agent/pin", sid, Digits="999999")
    doc = agent_post(app, "/voice/agent/pin", sid, Digits="999999")
    assert said(doc) == [text(app, "agent_line_locked")]
    # Locked: even the right PIN is refused now, and a new call hears the lock at once.
    assert said(agent_post(app, "/voice/agent/pin", sid, Digits=SHARED_PIN)) == [
        text(app, "agent_line_locked")
    ]
    assert said(agent_post(app, "/voice/agent/incoming", new_sid())) == [
        text(app, "agent_line_locked")
    ]
    # Another allowed phone is not locked by this one's failures.
    assert text(app, "agent_line_empty") in said(sign_in(app, new_sid(), OTHER_AGENT_PHONE))
    with app.app_context():
        actions = db.session().scalars(select(AuditEvent.details)).all()
    assert any(details.get("reason") == "locked" for details in actions)


def test_a_client_identity_of_a_staff_account_needs_no_pin(app: Flask, board: LocalQueues) -> None:
    add_agent(app, "ann")
    doc = agent_post(app, "/voice/agent/incoming", new_sid(), "client:ann")
    assert said(doc) == [text(app, "agent_line_empty")]
    refused = agent_post(app, "/voice/agent/incoming", new_sid(), "client:mallory")
    assert said(refused) == [text(app, "agent_line_refused")]


def test_unsigned_requests_are_refused(app: Flask) -> None:
    response = post(
        app, "/voice/agent/incoming", call_form(new_sid(), From=AGENT_PHONE), signed=False
    )
    assert response.status_code == 403


# --- taking callers ------------------------------------------------------------------------


def test_the_whisper_of_a_verified_held_caller_and_taking_them(
    app: Flask, board: LocalQueues
) -> None:
    account = add_account(app, "Jane Doe", JANE_PHONE, "10004321")
    caller = held(app, board, account)
    sid = new_sid()
    doc = sign_in(app, sid)
    whisper = said(doc)
    assert whisper[0].startswith(
        verified_whisper(app, "Jane Doe", "4321", DIGITS_AND_SMS, "caller_request")
    )
    assert whisper[-1] == text(app, "agent_line_choose")
    doc = agent_post(app, follow(doc), sid, Digits="1")
    room = doc.find("Dial/Conference")
    assert room is not None and room.get("endConferenceOnExit") == "true"
    assert board.members("support") == []
    join = board.take_redirect(caller)
    assert join is not None and caller not in join
    query = parse_qs(urlsplit(join).query)
    assert set(query) == {"j"}
    caller_doc = twiml(
        post(app, urlsplit(join).path + "?" + urlsplit(join).query, call_form(caller))
    )
    caller_room = caller_doc.find("Dial/Conference")
    assert caller_room is not None and caller_room.text == room.text
    # The caller's Enqueue action (QueueResult=redirected) runs no unanswered path.
    action = twiml(post(app, "/voice/dial?s=7", call_form(caller, QueueResult="redirected")))
    assert [child.tag for child in action] == ["Redirect"]
    assert action[0].text == join
    with app.app_context():
        steps = _steps(caller)
    events = [item["event"] for item in steps]
    assert "taken" in events
    assert {"event": "transfer_end", "status": "completed"}.items() <= _last(
        steps, "transfer_end"
    ).items()
    assert _last(steps, "taken")["via"] == "agent_line"
    assert not any(item["event"] == "exit" and item.get("exit") == "unanswered" for item in steps)


def _steps(call_sid: str) -> list[dict[str, object]]:
    """The steps of a call still open (in Redis)."""
    raw = kv.client().lrange(keys.call_timeline(call_sid), 0, -1)
    return [json.loads(item) for item in raw]


def _last(steps: list[dict[str, object]], event: str) -> dict[str, object]:
    found = [item for item in steps if item["event"] == event]
    assert found, f"no {event} step in {steps}"
    return found[-1]


def test_two_agents_at_once_get_different_callers(app: Flask, board: LocalQueues) -> None:
    first_caller = held(app, board, None)
    second_caller = held(app, board, None)
    one, two = new_sid(), new_sid()
    one_doc = sign_in(app, one)
    two_doc = sign_in(app, two, OTHER_AGENT_PHONE)
    assert text(app, "agent_line_choose") in said(one_doc)
    assert text(app, "agent_line_choose") in said(two_doc)
    agent_post(app, follow(one_doc), one, Digits="1")
    agent_post(app, follow(two_doc), two, OTHER_AGENT_PHONE, Digits="1")
    assert board.take_redirect(first_caller) is not None
    assert board.take_redirect(second_caller) is not None
    # A third agent finds nobody left.
    assert said(sign_in(app, new_sid())) == [text(app, "agent_line_empty")]


def test_a_caller_who_left_meanwhile_is_not_connected(app: Flask, board: LocalQueues) -> None:
    gone = held(app, board, None)
    sid = new_sid()
    doc = sign_in(app, sid)
    board.leave("support", gone)  # they hung up while the agent heard the whisper
    doc = agent_post(app, follow(doc), sid, Digits="1")
    assert said(doc) == [text(app, "agent_line_gone")]
    assert doc.find("Dial") is None
    assert board.take_redirect(gone) is None
    with app.app_context():
        state = store.load(gone)
    assert state is not None and not state.ended


def test_two_passes_to_the_next_caller(app: Flask, board: LocalQueues) -> None:
    first_caller = held(app, board, None)
    second_caller = held(app, board, None)
    sid = new_sid()
    doc = sign_in(app, sid)
    doc = agent_post(app, follow(doc), sid, Digits="2")
    doc = agent_post(app, follow(doc), sid, Digits="1")
    assert doc.find("Dial/Conference") is not None
    assert board.take_redirect(second_caller) is not None
    assert board.take_redirect(first_caller) is None
    assert [member.call_sid for member in board.members("support")] == [first_caller]


# --- through the simulator ------------------------------------------------------------------


def test_journey_verified_caller_queued_agent_takes_them(app: Flask, board: LocalQueues) -> None:
    """DEFAULT configuration: the caller verifies, holds in queue support; an agent phones
    the agent line, hears 'verified' with the method, presses 1; both are in one conference."""
    add_account(app, "Jane Doe", JANE_PHONE, "10004321")
    settings = app.config["IVR_SETTINGS"]
    simulator = Simulator(
        SchemaCheckingTransport(app, AUTH_TOKEN),
        PUBLIC_URL,
        support_number=settings.support_number,
        outbox=lambda: outbox.read(settings.outbox_path),
        queues=board,
    )
    keypad = CodeKeypad(app, ["1", "4321", "@code", "2"], simulator.latest_code)
    agent = AgentLineCall(AGENT_PHONE, Scripted([SHARED_PIN, "1"]))
    result = simulator.call(JANE_PHONE, keypad, agents=[agent])

    assert "enqueue support" in result.transfers
    heard = result.heard("agent")
    whisper = verified_whisper(app, "Jane Doe", "4321", DIGITS_AND_SMS, "caller_request")
    assert any(line.startswith(whisper) for line in heard), heard
    assert text(app, "agent_line_connecting") in heard
    rooms = [(event.who, event.text) for event in result.events if event.kind == "conference"]
    assert [who for who, _ in rooms] == ["agent", "caller"]
    assert rooms[0][1] == rooms[1][1]
    assert text(app, "agents_unavailable") not in result.heard("caller")
    with app.app_context():
        row = db.session().scalar(select(CallRecord).where(CallRecord.call_sid == result.call_sid))
        assert row is not None
        steps = record.stored_steps(row)
        assert row.outcome == "transferred"
    assert any(item["event"] == "taken" and item.get("via") == "agent_line" for item in steps)


def test_journey_nobody_takes_the_caller(app: Flask, board: LocalQueues) -> None:
    """An agent who passes (2) on the only caller, then hangs up: the caller leaves the
    queue by the node's unanswered exit as before."""
    add_account(app, "Jane Doe", JANE_PHONE, "10004321")
    settings = app.config["IVR_SETTINGS"]
    simulator = Simulator(
        SchemaCheckingTransport(app, AUTH_TOKEN),
        PUBLIC_URL,
        support_number=settings.support_number,
        outbox=lambda: outbox.read(settings.outbox_path),
        queues=board,
    )
    keypad = CodeKeypad(app, ["1", "4321", "@code", "2"], simulator.latest_code)
    agent = AgentLineCall(AGENT_PHONE, Scripted([SHARED_PIN, "2"]))
    result = simulator.call(JANE_PHONE, keypad, agents=[agent])
    assert not [event for event in result.events if event.kind == "conference"]
    assert board.members("support") == []


# --- `ivr users pin` / `ivr users phone` ---------------------------------------------------------


def test_users_pin_sets_a_hash_and_refuses_a_bad_pin(app: Flask) -> None:
    add_agent(app, "ann")
    runner = app.test_cli_runner()
    done = runner.invoke(args=["users", "pin", "ann", "--pin-stdin"], input=OWN_PIN + "\n")
    assert done.exit_code == 0, done.output
    assert OWN_PIN not in done.output
    with app.app_context():
        user = db.session().scalar(select(AgentUser).where(AgentUser.username == "ann"))
        assert user is not None and user.line_pin_hash
        rows = db.session().scalars(select(AuditEvent.action)).all()
    assert "agent_user.line_pin_set" in rows
    for bad in ["12", "1111", "12ab", "1234567890123"]:
        refused = runner.invoke(args=["users", "pin", "ann", "--pin-stdin"], input=bad + "\n")
        assert refused.exit_code != 0 and "Traceback" not in refused.output
        assert "PIN" in refused.output
    unknown = runner.invoke(args=["users", "pin", "nobody", "--pin-stdin"], input=OWN_PIN + "\n")
    assert unknown.exit_code != 0 and "no user named" in unknown.output


def test_users_phone_sets_a_number_or_a_client_identity(app: Flask) -> None:
    add_agent(app, "ann")
    runner = app.test_cli_runner()
    assert runner.invoke(args=["users", "phone", "ann", "(415) 555-0199"]).exit_code == 0
    with app.app_context():
        user = db.session().scalar(select(AgentUser).where(AgentUser.username == "ann"))
        assert user is not None and user.line_phone == AGENT_PHONE
    listed = runner.invoke(args=["users", "list"]).output
    assert "+1415•••0199" in listed and AGENT_PHONE not in listed
    assert runner.invoke(args=["users", "phone", "ann", "client:ann"]).exit_code == 0
    bad = runner.invoke(args=["users", "phone", "ann", "not a number"])
    assert bad.exit_code != 0 and "not a phone number" in bad.output


def test_ivr_call_with_an_agent_on_the_agent_line(app: Flask, board: LocalQueues) -> None:
    add_account(app, "Jane Doe", JANE_PHONE, "10004321")
    args = ["call", "--from", JANE_PHONE, "--digits", "1,4321,@code,2"]
    args += ["--agent-line-from", AGENT_PHONE, "--agent-line-keys", f"{SHARED_PIN},1"]
    done = app.test_cli_runner().invoke(args=args)
    assert done.exit_code == 0, done.output
    assert "Agent hears: Verified caller Jane Doe" in done.output
    assert "Agent joins conference ivr-" in done.output
    assert "Caller joins conference ivr-" in done.output


def test_simulated_agent_call_on_its_own_takes_a_held_caller(
    app: Flask, board: LocalQueues
) -> None:
    """`Simulator.agent_call`: a Twilio Client agent phones in while a caller holds."""
    add_agent(app, "ann")
    caller = held(app, board, None)
    simulator = Simulator(SchemaCheckingTransport(app, AUTH_TOKEN), PUBLIC_URL, queues=board)
    result = simulator.agent_call(AgentLineCall("client:ann", Scripted(["1"])))
    heard = result.heard("agent")
    assert heard[0].startswith(text(app, "whisper_unverified").split("{")[0].strip())
    assert heard[1:3] == [text(app, "agent_line_choose"), text(app, "agent_line_connecting")]
    assert [event.who for event in result.events if event.kind == "conference"] == ["agent"]
    assert board.take_redirect(caller) is not None


def test_agents_signing_in_at_the_same_moment_never_share_a_caller(
    app: Flask, board: LocalQueues
) -> None:
    """Four agents' whisper requests run at once over four held callers: each claim is a
    SET NX, so every agent is offered a different caller, whatever the interleaving."""
    callers = {held(app, board, None) for _ in range(4)}
    agents = [new_sid() for _ in range(4)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        offers = list(pool.map(lambda sid: sign_in(app, sid), agents))
    assert all(text(app, "agent_line_choose") in said(doc) for doc in offers)
    for sid, doc in zip(agents, offers, strict=True):
        agent_post(app, follow(doc), sid, Digits="1")
    assert {sid for sid in callers if board.take_redirect(sid) is not None} == callers
