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
OWN_PIN = "1357913"


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
    add_agent(app, "ann", phone="client:ann")
    doc = agent_post(app, "/voice/agent/incoming", new_sid(), "client:ann")
    assert said(doc) == [text(app, "agent_line_empty")]
    refused = agent_post(app, "/voice/agent/incoming", new_sid(), "client:mallory")
    assert said(refused) == [text(app, "agent_line_refused")]


def test_a_client_identity_must_be_an_accounts_configured_line_phone(
    app: Flask, board: LocalQueues
) -> None:
    """Review finding 3: a username alone is no credential; only the identity ops set with
    `ivr users phone NAME client:…` signs in, as that account."""
    add_agent(app, "ann")  # no line phone: client:ann is nobody's
    add_agent(app, "bob", phone="client:desk-7")
    for identity in ("client:ann", "client:bob"):
        doc = agent_post(app, "/voice/agent/incoming", new_sid(), identity)
        assert said(doc) == [text(app, "agent_line_refused")], identity
    doc = agent_post(app, "/voice/agent/incoming", new_sid(), "client:desk-7")
    assert said(doc) == [text(app, "agent_line_empty")]


def test_a_staff_pin_works_only_from_that_accounts_own_phone(
    app: Flask, board: LocalQueues
) -> None:
    """Review finding 1: the caller ID names one account; only its PIN (or the shared
    one) is checked, so ann's PIN keyed from bob's phone is wrong."""
    add_agent(app, "ann", pin=OWN_PIN, phone=AGENT_PHONE)
    add_agent(app, "bob", pin="8642097", phone=OTHER_AGENT_PHONE)
    sid = new_sid()
    first = agent_post(app, "/voice/agent/incoming", sid, OTHER_AGENT_PHONE)
    doc = agent_post(app, follow(first), sid, OTHER_AGENT_PHONE, Digits=OWN_PIN)
    assert said(doc) == [text(app, "agent_line_pin_wrong"), text(app, "agent_line_pin")]
    assert said(sign_in(app, new_sid(), OTHER_AGENT_PHONE, "8642097")) == [
        text(app, "agent_line_empty")
    ]
    assert said(sign_in(app, new_sid(), AGENT_PHONE, OWN_PIN)) == [text(app, "agent_line_empty")]


def test_one_pin_hash_per_attempt_counted_before_the_check(
    app: Flask, board: LocalQueues, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review finding 1: the attempt is counted before the slow hash (concurrent attempts
    cannot all pass a read-then-check), one hash is checked, and a right PIN does not
    wipe the wrong ones before it."""
    from ivr.agent import users
    from ivr.queues import claims
    from ivr.voice import agent_line_access

    for index in range(5):
        add_agent(app, f"agent{index}", pin=OWN_PIN)  # other accounts' PINs: never checked
    add_agent(app, "ann", pin="8642097", phone=AGENT_PHONE)
    seen: list[tuple[int, int]] = []
    real = users.line_pin_matches

    def counting(user: AgentUser | None, pin: str) -> bool:
        count = int(kv.client().get(claims.pin_key(AGENT_PHONE)) or 0)
        seen.append((count, user.id if user is not None else 0))
        return real(user, pin)

    monkeypatch.setattr(agent_line_access, "line_pin_matches", counting)
    sid = new_sid()
    for _ in range(4):
        agent_post(app, "/voice/agent/pin", sid, Digits=OWN_PIN)
    assert [count for count, _ in seen] == [1, 2, 3, 4]  # counted before each check
    assert len({user for _, user in seen}) == 1  # always ann's hash, one per attempt
    assert said(agent_post(app, "/voice/agent/pin", new_sid(), Digits="8642097")) == [
        text(app, "agent_line_empty")
    ]
    # The right PIN did not reset the count: one more wrong PIN locks the caller ID.
    doc = agent_post(app, "/voice/agent/pin", sid, Digits="999999")
    assert said(doc) == [text(app, "agent_line_locked")]


def test_wrong_pins_over_all_phones_lock_the_lines_pin_step(
    app: Flask,
    board: LocalQueues,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Review finding 1: besides each caller ID's count, wrong PINs over the whole line
    lock the PIN step for every phone (logged at WARNING, audited agent_line.locked)."""
    from ivr.queues import claims

    monkeypatch.setattr(claims, "LINE_FREE", 3)
    agent_post(app, "/voice/agent/pin", new_sid(), Digits="999999")
    agent_post(app, "/voice/agent/pin", new_sid(), Digits="999998")
    doc = agent_post(app, "/voice/agent/pin", new_sid(), OTHER_AGENT_PHONE, Digits="999997")
    assert said(doc) == [text(app, "agent_line_locked")]
    for phone in (AGENT_PHONE, OTHER_AGENT_PHONE):
        right = agent_post(app, "/voice/agent/pin", new_sid(), phone, Digits=SHARED_PIN)
        assert said(right) == [text(app, "agent_line_locked")]
        assert said(agent_post(app, "/voice/agent/incoming", new_sid(), phone)) == [
            text(app, "agent_line_locked")
        ]
    with app.app_context():
        actions = db.session().scalars(select(AuditEvent.action)).all()
    assert actions.count("agent_line.locked") == 1
    assert any(
        r.levelno == logging.WARNING and "PIN step is locked" in r.getMessage()
        for r in caplog.records
    )


# --- sessions are checked at every step ------------------------------------------------------


def test_a_disabled_or_pin_changed_agent_is_refused_at_the_next_step(
    app: Flask, board: LocalQueues
) -> None:
    """Review finding 2: each step reloads the account: disabled, PIN changed, sessions
    ended (`sessions_valid_after`) all end the session at its next step."""
    user_id = add_agent(app, "ann", pin=OWN_PIN, phone=AGENT_PHONE)
    changes = [
        lambda user: setattr(user, "disabled", True),
        lambda user: set_line_pin(user, "8642097"),
        lambda user: setattr(user, "sessions_valid_after", time.time() + 1),
        lambda user: setattr(user, "role", "ops"),
    ]
    for change in changes:
        sid = new_sid()
        doc = sign_in(app, sid, pin=OWN_PIN)
        assert said(doc) == [text(app, "agent_line_empty")]
        with app.app_context():
            user = db.session().get(AgentUser, user_id)
            assert user is not None
            change(user)
            db.session().commit()
        again = agent_post(app, follow(doc), sid, Digits="1")
        assert said(again) == [text(app, "agent_line_refused")]
        with app.app_context():  # as it was, for the next change
            user = db.session().get(AgentUser, user_id)
            assert user is not None
            user.disabled, user.role, user.sessions_valid_after = False, "agent", None
            set_line_pin(user, OWN_PIN)
            db.session().commit()


def test_a_session_ends_at_its_deadline_however_busy(app: Flask, board: LocalQueues) -> None:
    """Review finding 2: saving a session keeps its deadline (no new TTL per step)."""
    from ivr.queues import claims

    sid = new_sid()
    doc = sign_in(app, sid)
    token = parse_qs(urlsplit(follow(doc)).query)["t"][0]
    with app.app_context():
        client = kv.client()
        record = json.loads(client.get(claims.session_key(token)))
        assert record["deadline"] - record["created"] == claims.SESSION_TTL
        record["deadline"] = time.time() - 1  # as if the hour were over
        client.set(claims.session_key(token), json.dumps(record), ex=60)
    doc = agent_post(app, follow(doc), sid, Digits="1")
    assert said(doc) == [text(app, "agent_line_refused")]


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


def test_a_late_redirected_action_still_joins_the_agent(app: Flask, board: LocalQueues) -> None:
    """Twilio posts the Enqueue action for the redirect; should it come after the stored
    answer lapsed (a slow network, a retry), it still joins, never the unanswered path."""
    account = add_account(app, "Jane Doe", JANE_PHONE, "10004321")
    caller = held(app, board, account)
    sid = new_sid()
    doc = sign_in(app, sid)
    agent_post(app, follow(doc), sid, Digits="1")
    join = board.take_redirect(caller)
    assert join is not None
    with app.app_context():
        kv.client().delete(keys.call_answer(caller))  # the short-lived answer is gone

    action = twiml(post(app, "/voice/dial?s=7", call_form(caller, QueueResult="redirected")))

    assert [(child.tag, child.text) for child in action] == [("Redirect", join)]
    with app.app_context():
        steps = _steps(caller)
    assert not any(item["event"] == "exit" and item.get("exit") == "unanswered" for item in steps)


def test_a_redirect_the_service_did_not_make_takes_the_unanswered_exit(
    app: Flask, board: LocalQueues
) -> None:
    """QueueResult=redirected for a caller no agent took (someone's own REST redirect):
    the flow goes on as for any caller who left the queue."""
    account = add_account(app, "Jane Doe", JANE_PHONE, "10004321")
    caller = held(app, board, account)

    action = twiml(post(app, "/voice/dial?s=7", call_form(caller, QueueResult="redirected")))

    assert [child.tag for child in action] != ["Redirect"]
    with app.app_context():
        steps = _steps(caller)
    assert any(item["event"] == "exit" and item.get("exit") == "unanswered" for item in steps)


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


def test_passing_on_the_only_caller_offers_them_again(app: Flask, board: LocalQueues) -> None:
    """Review finding 7: after every caller was passed over, the offer starts again from
    the front instead of saying nobody waits."""
    held(app, board, None)
    sid = new_sid()
    doc = sign_in(app, sid)
    doc = agent_post(app, follow(doc), sid, Digits="2")
    assert said(doc)[-1] == text(app, "agent_line_choose")


def test_a_caller_already_taken_is_never_offered(app: Flask, board: LocalQueues) -> None:
    """Review finding 4: a queue member whose call is not holding at a transfer (taken
    already, or ended) is skipped, not claimed and announced again and again."""
    caller = held(app, board, None)
    with app.app_context():
        state = store.load(caller)
        assert state is not None
        state.ended = True
        store.save(state)
    assert said(sign_in(app, new_sid())) == [text(app, "agent_line_empty")]


def test_a_caller_that_cannot_be_taken_is_passed_over(
    app: Flask, board: LocalQueues, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review finding 4: the "gone" caller is added to the passed-over ones, so the next
    offer is the next caller, not the same one in a loop."""
    from ivr.queues import NotQueued

    first_caller = held(app, board, None)
    second_caller = held(app, board, None)

    def refuse(self: LocalQueues, queue: str, call_sid: str, url: str) -> None:
        raise NotQueued("Twilio says no")

    monkeypatch.setattr(LocalQueues, "redirect", refuse)
    sid = new_sid()
    doc = sign_in(app, sid)
    doc = agent_post(app, follow(doc), sid, Digits="1")
    assert said(doc) == [text(app, "agent_line_gone")]
    doc = agent_post(app, follow(doc, "Redirect"), sid)
    assert said(doc)[-1] == text(app, "agent_line_choose")
    token = parse_qs(urlsplit(follow(doc)).query)["t"][0]
    with app.app_context():
        from ivr.queues import claims

        record = claims.load_session(kv.client(), token, time.time())
    assert record is not None and record["claim"] == second_caller != first_caller


def _take_one(app: Flask, board: LocalQueues) -> tuple[str, str, str, ET.Element]:
    """A held caller taken by an agent: (caller, agent call, join URL, agent's document)."""
    caller = held(app, board, None)
    sid = new_sid()
    doc = sign_in(app, sid)
    agent_doc = agent_post(app, follow(doc), sid, Digits="1")
    join = board.take_redirect(caller)
    assert join is not None
    return caller, sid, join, agent_doc


def _local(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")


def _assert_back_in_the_queue(app: Flask, doc: ET.Element, caller: str) -> None:
    enqueue = doc.find("Enqueue")
    assert enqueue is not None and enqueue.text == "support", ET.tostring(doc)
    assert enqueue.get("action") == "/voice/dial?s=8"
    assert (enqueue.get("waitUrl") or "").startswith("/voice/queue/wait?s=8")
    with app.app_context():
        state = store.load(caller)
        steps = _steps(caller)
    assert state is not None and not state.ended and state.step == 8
    ends = [item.get("status") for item in steps if item["event"] == "transfer_end"]
    assert ends[-2:] == ["completed", "failed"]  # taken, then the join failed
    assert _last(steps, "transfer")["queue"] == "support"


def test_a_failed_join_sends_the_caller_back_to_their_transfer(
    app: Flask, board: LocalQueues
) -> None:
    """Review finding 4: a taken caller whose join fails re-runs their transfer (the
    `<Enqueue>` their flow renders, with action and waitUrl), never a bare Enqueue; then
    an agent can take them again."""
    caller, _sid, _join, _doc = _take_one(app, board)
    doc = twiml(post(app, "/voice/agent/join?j=expired", call_form(caller)))
    _assert_back_in_the_queue(app, doc, caller)
    board.join("support", caller)  # Twilio runs that <Enqueue>
    offer = sign_in(app, new_sid())
    assert said(offer)[-1] == text(app, "agent_line_choose")


def test_the_caller_waits_for_the_agent_without_starting_the_conference(
    app: Flask, board: LocalQueues
) -> None:
    """Review finding 5: the caller's leg does not start the room (the agent's does, and
    ends it on leaving); while waiting the caller hears a prompt, not silence."""
    caller, _sid, join, agent_doc = _take_one(app, board)
    agent_room = agent_doc.find("Dial/Conference")
    assert agent_room is not None
    assert agent_room.get("startConferenceOnEnter") == "true"
    assert agent_room.get("endConferenceOnExit") == "true"
    doc = twiml(post(app, _local(join), call_form(caller)))
    room = doc.find("Dial/Conference")
    assert room is not None and room.get("startConferenceOnEnter") == "false"
    wait_url = room.get("waitUrl") or ""
    assert wait_url.startswith("/voice/agent/wait?")
    waiting = twiml(post(app, wait_url, call_form(caller)))
    assert said(waiting) == [text(app, "connecting")]
    assert waiting.find("Redirect") is not None and waiting.find("Hangup") is None
    assert board.take_redirect(caller) is None  # still waiting for the agent


def test_the_agent_hanging_up_first_sends_the_waiting_caller_back(
    app: Flask, board: LocalQueues
) -> None:
    """Review finding 5: the agent's `<Dial>` ended (they hung up) before the caller was
    in: the caller's next wait check moves them back to their transfer."""
    caller, sid, join, agent_doc = _take_one(app, board)
    dial = agent_doc.find("Dial")
    assert dial is not None
    agent_post(app, dial.get("action") or "", sid, DialCallStatus="completed")
    doc = twiml(post(app, _local(join), call_form(caller)))
    room = doc.find("Dial/Conference")
    assert room is not None
    twiml(post(app, room.get("waitUrl") or "", call_form(caller)))
    back = board.take_redirect(caller)  # the Call resource's update, locally
    assert back is not None and urlsplit(back).path == "/voice/agent/back"
    _assert_back_in_the_queue(app, twiml(post(app, _local(back), call_form(caller))), caller)


def test_a_caller_waiting_too_long_for_the_agent_goes_back(
    app: Flask, board: LocalQueues, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review finding 5: the agent hung up before their `<Dial>` ran (no action at all):
    after JOIN_WAIT seconds of waiting the caller goes back."""
    from ivr.voice import agent_line_caller

    caller, _sid, join, _doc = _take_one(app, board)
    doc = twiml(post(app, _local(join), call_form(caller)))
    room = doc.find("Dial/Conference")
    assert room is not None
    monkeypatch.setattr(agent_line_caller, "JOIN_WAIT", -1)
    twiml(post(app, room.get("waitUrl") or "", call_form(caller)))
    back = board.take_redirect(caller)
    assert back is not None
    _assert_back_in_the_queue(app, twiml(post(app, _local(back), call_form(caller))), caller)


@pytest.mark.parametrize("still_queued", [True, False])
def test_a_redirect_error_checks_the_queue_again(
    app: Flask, board: LocalQueues, monkeypatch: pytest.MonkeyPatch, still_queued: bool
) -> None:
    """Review finding 5: a redirect whose answer was lost (QueueUnavailable) is unknown:
    the caller no longer in the queue is taken; still in it, the agent is told."""
    from ivr.queues import QueueUnavailable

    caller = held(app, board, None)
    real = LocalQueues.redirect

    def lost_answer(self: LocalQueues, queue: str, call_sid: str, url: str) -> None:
        if not still_queued:
            real(self, queue, call_sid, url)
        raise QueueUnavailable("timed out")

    monkeypatch.setattr(LocalQueues, "redirect", lost_answer)
    sid = new_sid()
    doc = sign_in(app, sid)
    doc = agent_post(app, follow(doc), sid, Digits="1")
    if still_queued:
        assert said(doc)[0] == text(app, "agent_line_unavailable")
        with app.app_context():
            state = store.load(caller)
        assert state is not None and not state.ended
        # The claim is freed: another agent is offered the caller at once.
        other = sign_in(app, new_sid(), OTHER_AGENT_PHONE)
        assert said(other)[-1] == text(app, "agent_line_choose")
    else:
        assert doc.find("Dial/Conference") is not None
        assert board.take_redirect(caller) is not None


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
    for bad in ["12", "13579", "111111", "12ab", "1234567890123"]:
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
    # One phone, one account: the agent line checks only that account's PIN.
    add_agent(app, "bob")
    taken = runner.invoke(args=["users", "phone", "bob", "client:ann"])
    assert taken.exit_code != 0 and "already ann's" in taken.output
    assert "Traceback" not in taken.output
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
    add_agent(app, "ann", phone="client:ann")
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
