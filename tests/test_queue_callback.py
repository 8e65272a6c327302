"""Call-back instead of holding (issue 15, item 3): after `offer_callback_after` seconds on
hold a fully verified caller may press 1 to hang up and keep their place; a job rings
the number on file when their turn should come, and on 1 that leg joins the queue ahead
of new callers, its verification carried over and flagged "called back on the number
on file". Unanswered: one more try, then a text. Every step audited, numbers masked.

Under the DEFAULT flow and configuration (IVR_AGENT_TARGET=queue:support: the verified
menu's agent transfer offers the call-back after 120 s), with webhooks posted signed as
Twilio posts them and the job run when the test says so (never by waiting).
"""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from caller import CodeKeypad, SchemaCheckingTransport
from conftest import AUTH_TOKEN, PUBLIC_URL
from flask import Flask
from kit import JANE_PHONE, add_account, call_form, new_sid, post, says, state_of, text, twiml
from sqlalchemy import select

from ivr.calls import queue_callback, runtime, store, timeline_store
from ivr.delivery import outbox
from ivr.flow import timeline
from ivr.flow.loader import check_definitions
from ivr.flow.state import CallState
from ivr.jobs import runner
from ivr.phone import mask
from ivr.queues.local import LocalQueues, board_path
from ivr.simulator.player import Simulator, every_callee
from ivr.storage import db
from ivr.storage.models import Account, AuditEvent, CallRecord
from ivr.voice.queue_callbacks import number_on_file

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = ROOT / "prompts"
# Jane calls from a phone that is not the one on file: the call-back must ring the one on file.
OTHER_PHONE = "+14155550177"
AGENT_PHONE = "+14155550199"
SHARED_PIN = "246810"
STEP = 7


@pytest.fixture
def app(make_app: Any) -> Flask:
    built: Flask = make_app(
        IVR_AGENT_TARGET="queue:support",
        IVR_AGENT_PHONES=AGENT_PHONE,
        IVR_AGENT_PIN=SHARED_PIN,
    )
    return built


@pytest.fixture
def board(app: Flask) -> Any:
    queues = LocalQueues(board_path(app.config["IVR_SETTINGS"].outbox_path))
    queues.clear()
    yield queues
    queues.clear()


def holding(app: Flask, account_id: int | None, *, code: bool = True) -> str:
    """A caller holding at the default flow's verified agent transfer (agent_verified),
    calling from OTHER_PHONE; verified by digits and a code to `account_id`."""
    sid = new_sid()
    now = time.time()
    with app.app_context():
        live = runtime.get().live()
        methods = [("account_digits", now - 50)]
        if code:
            methods.append(("code_sms", now - 40))
        state = CallState(
            call_sid=sid,
            flow=live.flow.name,
            version=live.flow.version,
            language="en-US",
            node="agent_verified",
            started_at=now - 60,
            step=STEP,
            caller=OTHER_PHONE,
            identity="unknown_number",
            account_id=account_id,
            verification="code" if code else "digits",
            methods=methods,
            transfer_reason="caller_request",
            flags=["caller_id_mismatch"],  # calling from a phone that is not on file
        )
        store.save(state)
        timeline_store.mark_open(sid, state.started_at)
    return sid


def form(sid: str, **fields: str) -> dict[str, str]:
    return call_form(sid, From=OTHER_PHONE, Caller=OTHER_PHONE, **fields)


def wait(app: Flask, sid: str, waited: int, position: int = 3, average: int = 50) -> ET.Element:
    fields = {
        "QueueSid": "QU" + "1" * 32,
        "QueueTime": str(waited),
        "QueuePosition": str(position),
        "CurrentQueueSize": "5",
        "AvgQueueTime": str(average),
    }
    return twiml(post(app, f"/voice/queue/wait?s={STEP}", form(sid, **fields)))


def offer_action(doc: ET.Element) -> str | None:
    gather = doc.find("Gather")
    return None if gather is None else gather.get("action")


def path_of(url: str) -> str:
    """A URL as the app routes it (the outbox keeps absolute public URLs)."""
    parts = urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")


def audits(app: Flask, prefix: str = "queue_callback.") -> list[AuditEvent]:
    with app.app_context():
        query = select(AuditEvent).where(AuditEvent.action.startswith(prefix))
        return list(db.session().scalars(query.order_by(AuditEvent.id)))


def calls_placed(outbox_path: Path) -> list[outbox.OutboxMessage]:
    return [m for m in outbox.read(outbox_path) if m.channel == "call"]


def choose(app: Flask, sid: str, digits: str = "1") -> ET.Element:
    doc = wait(app, sid, 120)
    action = offer_action(doc)
    assert action is not None, ET.tostring(doc)
    return twiml(post(app, action, form(sid, Digits=digits)))


# --- the offer ------------------------------------------------------------------------------


def test_the_offer_comes_only_after_the_delay_and_only_to_a_fully_verified_caller(
    app: Flask,
) -> None:
    jane = add_account(app, "Jane Doe", JANE_PHONE, "10004321")
    sid = holding(app, jane)

    early = wait(app, sid, 60)
    assert offer_action(early) is None
    assert text(app, "queue_callback_offer") not in says(early)

    due = wait(app, sid, 120)
    gather = due.find("Gather")
    assert gather is not None
    assert urlsplit(gather.get("action") or "").path == "/voice/queue-callback/choose"
    assert gather.get("numDigits") == "1"
    assert says(gather) == [text(app, "queue_callback_offer")]
    assert due[-1].tag == "Redirect"  # no key: the hold goes on

    digits_only = holding(app, jane, code=False)
    assert offer_action(wait(app, digits_only, 120)) is None
    no_account = holding(app, None)
    assert offer_action(wait(app, no_account, 120)) is None


def test_pressing_1_books_the_call_back_and_ends_the_call_politely(
    app: Flask, outbox_path: Path
) -> None:
    jane = add_account(app, "Jane Doe", JANE_PHONE, "10004321")
    sid = holding(app, jane)

    other_key = choose(app, sid, "2")
    assert [child.tag for child in other_key] == ["Redirect"]  # keeps holding
    assert audits(app) == []

    doc = choose(app, sid)
    assert says(doc) == [text(app, "queue_callback_confirm")]
    assert [child.tag for child in doc] == ["Say", "Hangup"]
    state = state_of(app, sid)
    assert state is not None and state["ended"] is True
    assert queue_callback.REQUESTED in state["flags"]
    (requested,) = audits(app)
    assert requested.action == "queue_callback.requested"
    assert requested.account_id == jane and requested.call_sid == sid

    # The <Enqueue> action after the hang-up runs no unanswered path (no "agents busy").
    after = twiml(post(app, f"/voice/dial?s={STEP}", form(sid, QueueResult="hangup")))
    assert text(app, "agents_busy") not in says(after)
    with app.app_context():
        ((_, ended),) = timeline_store.peek([sid])
        steps = ended.steps
    chosen = [s for s in steps if s["event"] == timeline.QUEUE_CALLBACK]
    assert chosen == [
        {
            "at": chosen[0]["at"],
            "event": "queue_callback",
            "node": "agent_verified",
            "result": "requested",
            "position": 3,
        }
    ]
    assert timeline.outcome_of(steps) == timeline.ENDED
    # The job waits for the caller's turn: nothing rings now.
    assert calls_placed(outbox_path) == []


def test_the_call_back_rings_the_number_on_file_then_joins_the_priority_queue(
    app: Flask, outbox_path: Path
) -> None:
    jane = add_account(app, "Jane Doe", JANE_PHONE, "10004321")
    sid = holding(app, jane)
    choose(app, sid)
    assert runner.run_pending(app) is False  # scheduled for the caller's turn, not now
    runner.run_pending(app, retries=True)  # as if that time had come

    (placed,) = calls_placed(outbox_path)
    assert placed.to == JANE_PHONE and placed.to != OTHER_PHONE  # the number on file only
    assert placed.purpose == "queue_callback"
    leg = placed.id  # the CallSid Twilio gave the call-back leg

    answered = twiml(post(app, path_of(placed.url), form(leg, To=JANE_PHONE)))
    gather = answered.find("Gather")
    assert gather is not None
    assert says(gather) == [text(app, "queue_callback_intro")]
    assert "Jane" not in " ".join(says(answered))  # no account data before the key

    joined = twiml(post(app, gather.get("action") or "", form(leg, Digits="1")))
    enqueue = joined.find("Enqueue")
    assert enqueue is not None, ET.tostring(joined)
    assert (enqueue.text or "").strip() == "support-callbacks"
    assert urlsplit(enqueue.get("waitUrl") or "").path == "/voice/queue/wait"
    state = state_of(app, leg)
    assert state is not None
    assert state["verification"] == "code" and state["account_id"] == jane
    assert queue_callback.CALLED_BACK in state["flags"]
    assert state["node"] == "agent_verified"

    # The whisper says so, after the verification.
    with app.test_request_context("/"):
        from ivr.voice.views import whisper_document

        heard = " ".join(says(ET.fromstring(whisper_document(leg, "/voice/whisper/answer"))))
    assert text(app, "whisper_flag_called_back") in heard
    # This leg rang the number on file: the first call's "not on file" flag is not carried.
    assert "caller_id_mismatch" not in state["flags"]
    assert text(app, "whisper_flag_caller_id_mismatch") not in heard

    # The leg holds like any held caller, and is never offered another call-back.
    leg_wait = path_of(enqueue.get("waitUrl") or "")
    fields = {"QueueTime": "600", "QueuePosition": "1", "CurrentQueueSize": "1"}
    held = twiml(post(app, leg_wait, form(leg, **fields)))
    assert held[-1].tag == "Redirect" and offer_action(held) is None

    actions = [(row.action, row.details.get("to")) for row in audits(app)]
    assert actions == [
        ("queue_callback.requested", None),
        ("queue_callback.placed", mask(JANE_PHONE)),
        ("queue_callback.answered", None),
        ("queue_callback.joined", None),
    ]
    assert all(JANE_PHONE not in str(row.details) for row in audits(app))


def test_unanswered_is_tried_once_more_then_texted(app: Flask, outbox_path: Path) -> None:
    jane = add_account(app, "Jane Doe", JANE_PHONE, "10004321")
    sid = holding(app, jane)
    choose(app, sid)
    runner.run_pending(app, retries=True)
    (first,) = calls_placed(outbox_path)
    post(app, path_of(first.status_callback), form(first.id, CallStatus="no-answer"))
    assert len(calls_placed(outbox_path)) == 1  # the second try waits a few minutes
    runner.run_pending(app, retries=True)
    first_again, second = calls_placed(outbox_path)
    assert second.to == JANE_PHONE
    assert first_again == first
    post(app, path_of(second.status_callback), form(second.id, CallStatus="busy"))
    runner.run_pending(app, retries=True)

    texts = [m for m in outbox.read(outbox_path) if m.channel == "sms"]
    assert [(m.to, m.body) for m in texts] == [(JANE_PHONE, text(app, "queue_callback_missed_sms"))]
    assert len(calls_placed(outbox_path)) == 2  # never a third try
    actions = [(row.action, row.details.get("attempt")) for row in audits(app)]
    assert actions == [
        ("queue_callback.requested", 0),
        ("queue_callback.placed", 1),
        ("queue_callback.failed", 1),
        ("queue_callback.placed", 2),
        ("queue_callback.failed", 2),
        ("queue_callback.texted", 2),
    ]


def test_the_agent_line_takes_call_backs_first(app: Flask, board: LocalQueues) -> None:
    jane = add_account(app, "Jane Doe", JANE_PHONE, "10004321")
    waiting = holding(app, None, code=False)  # a new caller, first in the plain queue
    board.join("support", waiting)
    sid = holding(app, jane)
    leg = new_sid()
    with app.app_context():
        record = queue_callback.load("missing")
        assert record is None
        live = runtime.get().live()
        state = store.load(sid)
        assert state is not None
        callback = queue_callback.from_state(state, time.time())
        leg_state = callback.leg_state(leg, time.time())
        assert leg_state.version == live.flow.version
        store.save(leg_state)
    board.join("support-callbacks", leg)

    agent = new_sid()
    first = twiml(post(app, "/voice/agent/incoming", call_form(agent, From=AGENT_PHONE)))
    gather = first.find("Gather")
    assert gather is not None
    offered = twiml(
        post(
            app,
            gather.get("action") or "",
            call_form(agent, From=AGENT_PHONE, Digits=SHARED_PIN),
        )
    )
    heard = " ".join(says(offered))
    assert text(app, "whisper_flag_called_back") in heard
    assert "Jane Doe" in heard  # the called-back, verified caller, not the new one


# --- the definition ---------------------------------------------------------------------


def flow_problems(tmp_path: Path, body: str) -> list[str]:
    flows = tmp_path / "flows"
    flows.mkdir()
    path = flows / "cb.yaml"
    path.write_text(body)
    _, problems = check_definitions(flows, PROMPTS, "US", only=[path])
    return [f"{p.where}: {p.field}: {p.message}" for p in problems]


UNVERIFIED = """name: cb
start: agent
languages: [en-US, es-US]
nodes:
  agent:
    type: transfer
    reason: caller_request
    target: queue:support
    offer_callback_after: 120
    unanswered: sorry
  sorry:
    type: hangup
    prompt: agents_busy
"""


def test_the_proof_refuses_a_call_back_offer_reachable_unverified(tmp_path: Path) -> None:
    (problem,) = flow_problems(tmp_path, UNVERIFIED)
    assert problem.startswith("agent: offer_callback_after: offers a call-back")
    assert problem.endswith("before any verification: agent")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("offer_callback_after: 10", "offer_callback_after"),
        ("offer_callback_after: 99999", "offer_callback_after"),
    ],
)
def test_the_offer_delay_is_bounded(tmp_path: Path, change: str, expected: str) -> None:
    problems = flow_problems(tmp_path, UNVERIFIED.replace("offer_callback_after: 120", change))
    assert problems and all(expected in p for p in problems), problems


def test_an_offer_on_a_target_that_rings_a_person_is_refused(tmp_path: Path) -> None:
    body = UNVERIFIED.replace("queue:support", '"+14155550100"')
    problems = flow_problems(tmp_path, body)
    assert any("only a queue: or workflow: target holds callers" in p for p in problems), problems


def test_the_priority_queue_name_fits_twilios_limit() -> None:
    assert queue_callback.priority_queue("support") == "support-callbacks"
    assert len(queue_callback.priority_queue("q" * 64)) == 64


@pytest.mark.parametrize(
    ("position", "average", "seconds"),
    [(None, 50, 120), (3, None, 120), (3, 50, 150), (1, 5, 30), (50, 600, 1800)],
)
def test_the_call_back_is_timed_by_the_queue_and_bounded(
    position: int | None, average: int | None, seconds: int
) -> None:
    assert queue_callback.delay(position, average) == seconds


def test_the_public_url_is_used_for_the_call_backs_webhooks(app: Flask, outbox_path: Path) -> None:
    jane = add_account(app, "Jane Doe", JANE_PHONE, "10004321")
    choose(app, holding(app, jane))
    runner.run_pending(app, retries=True)
    (placed,) = calls_placed(outbox_path)
    assert placed.url.startswith(PUBLIC_URL + "/voice/queue-callback/answer?o=")
    assert parse_qs(urlsplit(placed.status_callback).query)["o"]


# --- a journey through the simulator -----------------------------------------------------


def test_a_journey_on_the_default_flow_chooses_a_call_back_that_an_agent_takes(
    app: Flask, outbox_path: Path
) -> None:
    """Jane verifies (digits and a code), asks for an agent, holds, hears the offer after
    120 s and presses 1; when the job runs, her phone on file rings, she presses 1, holds
    in the call-back queue and an agent takes her."""
    add_account(app, "Jane Doe", JANE_PHONE, "10004321")
    settings = app.config["IVR_SETTINGS"]
    simulator = Simulator(
        SchemaCheckingTransport(app, AUTH_TOKEN),
        PUBLIC_URL,
        agent="accept",
        support_number=settings.support_number,
        outbox=lambda: outbox.read(settings.outbox_path),
        callee=every_callee("answer", CodeKeypad(app, ["1"])),
    )
    keypad = CodeKeypad(app, ["1", "4321", "@code", "2", "1"], simulator.latest_code)
    call = simulator.call(JANE_PHONE, keypad)

    heard = call.heard("caller")
    assert heard[-2:] == [text(app, "queue_callback_offer"), text(app, "queue_callback_confirm")]
    assert call.ended_by == "ivr"
    assert not any(e.kind == "agent" for e in call.events)  # nobody took the first call
    assert calls_placed(outbox_path) == []
    with app.app_context():
        record = db.session().get(CallRecord, call.call_sid)
        assert record is not None
        assert record.outcome == "ended"  # she chose a call-back: not an abandoned call
        assert queue_callback.REQUESTED in record.flags

    runner.run_pending(app, retries=True)  # her turn has come
    later = simulator.ring_placed()
    (callback,) = later.callbacks
    assert callback.to == JANE_PHONE and callback.purpose == "queue_callback"
    documents = [ET.fromstring(body) for _, body in callback.documents]
    intro = documents[0].find("Gather")
    assert intro is not None and says(intro) == [text(app, "queue_callback_intro")]
    enqueued = [doc.find("Enqueue") for doc in documents if doc.find("Enqueue") is not None]
    assert [(e.text or "").strip() for e in enqueued if e is not None] == ["support-callbacks"]
    assert any(e.kind == "agent" and "took the call" in e.text for e in later.events)
    assert [row.action for row in audits(app)] == [
        "queue_callback.requested",
        "queue_callback.placed",
        "queue_callback.answered",
        "queue_callback.joined",
    ]


WORKFLOW = "WW" + "0123456789abcdef" * 2


def test_a_taskrouter_call_back_joins_with_a_high_priority_task(
    make_app: Any, outbox_path: Path
) -> None:
    """With a TaskRouter workflow target the call-back leg is enqueued to the workflow with
    a Task of high priority (ahead of new callers' tasks), its attributes the leg's."""
    app: Flask = make_app(IVR_AGENT_TARGET=f"workflow:{WORKFLOW}")
    jane = add_account(app, "Jane Doe", JANE_PHONE, "10004321")
    choose(app, holding(app, jane))
    runner.run_pending(app, retries=True)
    (placed,) = calls_placed(outbox_path)
    answered = twiml(post(app, path_of(placed.url), form(placed.id, To=JANE_PHONE)))
    gather = answered.find("Gather")
    assert gather is not None
    joined = twiml(post(app, gather.get("action") or "", form(placed.id, Digits="1")))
    enqueue = joined.find("Enqueue")
    assert enqueue is not None and enqueue.get("workflowSid") == WORKFLOW
    task = enqueue.find("Task")
    assert task is not None and task.get("priority") == str(queue_callback.TASK_PRIORITY)
    attributes = json.loads(task.text or "{}")
    assert attributes["call_sid"] == placed.id and attributes["verification"] == "code"


# --- review findings: the leg's record, one waiting call-back per account ------------------


def test_the_called_back_leg_is_recorded_as_transferred_when_an_agent_takes_it(
    app: Flask, outbox_path: Path
) -> None:
    """The call-back leg is a call like any other: listed open while it runs (so an erase
    sees it in progress) and, on its final status, recorded in the history."""
    add_account(app, "Jane Doe", JANE_PHONE, "10004321")
    settings = app.config["IVR_SETTINGS"]
    simulator = Simulator(
        SchemaCheckingTransport(app, AUTH_TOKEN),
        PUBLIC_URL,
        agent="accept",
        support_number=settings.support_number,
        outbox=lambda: outbox.read(settings.outbox_path),
        callee=every_callee("answer", CodeKeypad(app, ["1"])),
    )
    keypad = CodeKeypad(app, ["1", "4321", "@code", "2", "1"], simulator.latest_code)
    first = simulator.call(JANE_PHONE, keypad)
    runner.run_pending(app, retries=True)  # her turn has come
    later = simulator.ring_placed()
    assert any(e.kind == "agent" and "took the call" in e.text for e in later.events)
    (placed,) = calls_placed(outbox_path)
    leg = placed.id
    runner.run_pending(app)  # the records' jobs

    with app.app_context():
        record = db.session().get(CallRecord, leg)
        assert record is not None, "the called-back leg has no call record"
        assert record.outcome == "transferred"
        assert queue_callback.CALLED_BACK in record.flags
        assert db.session().get(CallRecord, first.call_sid) is not None
        assert leg not in store.open_call_sids(limit=1000)  # closed, not left to the sweeper


def test_the_joined_leg_is_open_until_its_status_comes(app: Flask, outbox_path: Path) -> None:
    jane = add_account(app, "Jane Doe", JANE_PHONE, "10004321")
    sid = holding(app, jane)
    choose(app, sid)
    runner.run_pending(app, retries=True)
    (placed,) = calls_placed(outbox_path)
    leg = placed.id
    answered = twiml(post(app, path_of(placed.url), form(leg, To=JANE_PHONE)))
    gather = answered.find("Gather")
    assert gather is not None
    post(app, gather.get("action") or "", form(leg, Digits="1"))
    with app.app_context():
        assert leg in store.open_call_sids(limit=1000)  # an erase sees it in progress
    status = form(leg, CallStatus="completed", CallDuration="95")
    post(app, path_of(placed.status_callback), status)
    post(app, path_of(placed.status_callback), status)  # Twilio repeating itself
    runner.run_pending(app)
    with app.app_context():
        assert leg not in store.open_call_sids(limit=1000)
        record = db.session().get(CallRecord, leg)
        assert record is not None and record.account_id == jane
        assert record.duration == 95
    assert len(calls_placed(outbox_path)) == 1  # a joined leg's end is no failed try


def test_a_second_call_is_not_offered_a_call_back_while_one_waits(
    app: Flask, outbox_path: Path
) -> None:
    jane = add_account(app, "Jane Doe", JANE_PHONE, "10004321")
    first = holding(app, jane)
    choose(app, first)
    second = holding(app, jane)  # another call of hers, holding as long
    assert offer_action(wait(app, second, 120)) is None
    # Nor is a forged "1" on the second call booked: it keeps holding.
    kept = twiml(post(app, f"/voice/queue-callback/choose?s={STEP}", form(second, Digits="1")))
    assert kept[-1].tag == "Redirect" and kept.find("Hangup") is None
    assert [row.action for row in audits(app)] == ["queue_callback.requested"]
    with app.app_context():
        state = store.load(second)
        assert state is not None and not state.ended
    # Someone else's call is offered one meanwhile.
    john = add_account(app, "John Roe", "+14155550111", "20005678")
    assert offer_action(wait(app, holding(app, john), 120)) is not None

    # Once hers has joined, a new call of hers may be offered one again.
    runner.run_pending(app, retries=True)
    (placed,) = calls_placed(outbox_path)
    answered = twiml(post(app, path_of(placed.url), form(placed.id, To=JANE_PHONE)))
    gather = answered.find("Gather")
    assert gather is not None
    post(app, gather.get("action") or "", form(placed.id, Digits="1"))
    assert offer_action(wait(app, holding(app, jane), 120)) is not None


def test_a_call_back_given_up_frees_the_account(app: Flask, outbox_path: Path) -> None:
    jane = add_account(app, "Jane Doe", JANE_PHONE, "10004321")
    choose(app, holding(app, jane))
    for attempt in (1, 2):
        runner.run_pending(app, retries=True)
        placed = calls_placed(outbox_path)[-1]
        post(app, path_of(placed.status_callback), form(placed.id, CallStatus="no-answer"))
        if attempt == 1:
            assert offer_action(wait(app, holding(app, jane), 120)) is None
    runner.run_pending(app, retries=True)
    assert offer_action(wait(app, holding(app, jane), 120)) is not None


@pytest.mark.parametrize("phone", ["erased:7", "", "14155550100", "+1415555010x"])
def test_only_an_e164_number_on_file_is_rung(app: Flask, phone: str) -> None:
    jane = add_account(app, "Jane Doe", JANE_PHONE, "10004321")
    with app.app_context():
        assert number_on_file(jane) == JANE_PHONE
        account = db.session().get(Account, jane)
        assert account is not None
        account.phone.e164 = phone
        db.session().commit()
        assert number_on_file(jane) is None
