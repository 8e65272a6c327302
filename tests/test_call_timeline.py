"""Call timelines (issue 14): what a simulated call did is what its stored timeline says.

Calls are played through the simulator over signed webhooks; their steps ride in the
call state's saves, and the status callback's job writes them to `calls` and
`call_steps`. Each branch family of the default flow is checked step by step (inputs by
kind and count, exits by label, verifications, codes, the call-back, transfers,
hang-ups), and no timeline holds a code, keypad digits, an account number or a full
phone number. The sweeper closes calls whose status callback never came.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
from caller import Phone
from flask import Flask
from kit import JANE_PHONE, add_account, call_form, new_sid, post
from sqlalchemy import select

from ivr.calls import store
from ivr.errors import StorageUnavailable
from ivr.history import closing, record
from ivr.jobs import calls as job_calls
from ivr.jobs import queue as jobqueue
from ivr.jobs import schedule
from ivr.storage import db, keys, kv
from ivr.storage.models import CallRecord

JANE_NUMBER = "10004321"
NEW_PHONE = "+14155550199"
NEW_KEYED = "4155550199"
UNKNOWN_PHONE = "+14155550177"


def stored(app: Flask, call_sid: str) -> tuple[CallRecord, list[dict[str, Any]]]:
    """A call's stored summary and its steps, read on a fresh session."""
    with app.app_context():
        session = db.session()
        row = session.scalar(select(CallRecord).where(CallRecord.call_sid == call_sid))
        assert row is not None, f"call {call_sid} was not recorded"
        steps = record.stored_steps(row)
        session.expunge(row)
        return row, steps


def brief(steps: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The steps without their times, as comparable tuples."""
    shapes: list[tuple[Any, ...]] = []
    for item in steps:
        event = item["event"]
        if event == "enter":
            shapes.append(("enter", item["node"]))
        elif event == "input":
            shapes.append(("input", item["node"], item["input"], item["keys"], item["result"]))
        elif event == "exit":
            shapes.append(("exit", item["node"], item["exit"], item["to"]))
        elif event in ("verified",):
            shapes.append((event, item["method"]))
        elif event in ("code_sent",):
            shapes.append((event, item["channel"], item["result"]))
        elif event in ("code_checked", "callback", "callback_code"):
            shapes.append((event, item["result"]))
        elif event == "transfer":
            shapes.append((event, item.get("node"), item["target"], item.get("queue")))
        elif event == "transfer_end":
            shapes.append((event, item["status"]))
        elif event == "end":
            shapes.append((event, item["status"], item["outcome"]))
        else:
            shapes.append((event, item.get("node")))
    return shapes


def test_a_verified_caller_to_an_agent(app: Flask, phone: Phone) -> None:
    add_account(app, "Jane Doe", JANE_PHONE, JANE_NUMBER)
    result = phone.call(JANE_PHONE, ["1", "4321", "@code", "2"])

    row, steps = stored(app, result.call_sid)
    assert brief(steps) == [
        ("start", None),
        ("enter", "hours"),
        ("exit", "hours", "open", "welcome"),
        ("enter", "welcome"),
        ("exit", "welcome", "next", "language"),
        ("enter", "language"),
        ("input", "language", "keys", 1, "accepted"),
        ("exit", "language", "next", "identify"),
        ("enter", "identify"),
        ("exit", "identify", "one_account", "last4"),
        ("enter", "last4"),
        ("input", "last4", "keys", 4, "accepted"),
        ("verified", "account_digits"),
        ("exit", "last4", "ok", "send_sms"),
        ("enter", "send_sms"),
        ("code_sent", "sms", "sent"),
        ("exit", "send_sms", "sent", "enter_code"),
        ("enter", "enter_code"),
        ("input", "enter_code", "keys", 6, "accepted"),
        ("code_checked", "ok"),
        ("verified", "code_sms"),
        ("exit", "enter_code", "ok", "menu"),
        ("enter", "menu"),
        ("input", "menu", "keys", 1, "accepted"),
        ("exit", "menu", "options.2", "agent_verified"),
        ("enter", "agent_verified"),
        ("transfer", "agent_verified", "number", None),
        ("transfer_end", "completed"),
        ("end", "completed", "transferred"),
    ]
    assert steps[0]["flow"] == "support" and steps[0]["version"] == row.version
    assert [item["at"] for item in steps] == sorted(item["at"] for item in steps)
    assert row.outcome == "transferred" and row.status == "completed"
    assert row.verification == "code" and row.methods == ["account_digits", "code_sms"]
    assert row.caller == "+1415•••0100" and row.identity == "one_account"
    assert row.transfer_reason == "caller_request" and row.last_node == "agent_verified"
    assert row.ivr_seconds is not None and row.ivr_seconds >= 0


def test_silence_repeats_invalid_entries_and_too_many_tries(app: Flask, phone: Phone) -> None:
    """Silence twice at the language menu takes its no_input exit (not `next`, which
    leads to the same node); *, silence, a short entry and wrong numbers at the account
    prompt, then its too_many_tries exit to an agent."""
    result = phone.call(UNKNOWN_PHONE, ["", "", "*", "", "12", "99998888", "99997777"])

    row, steps = stored(app, result.call_sid)
    shapes = brief(steps)
    assert shapes[:5] == [
        ("start", None),
        ("enter", "hours"),
        ("exit", "hours", "open", "welcome"),
        ("enter", "welcome"),
        ("exit", "welcome", "next", "language"),
    ]
    assert shapes[5:11] == [
        ("enter", "language"),
        ("input", "language", "none", 0, "reprompt"),
        ("input", "language", "none", 0, "no_input"),
        ("exit", "language", "no_input", "identify"),
        ("enter", "identify"),
        ("exit", "identify", "unknown_number", "account_number"),
    ]
    inputs = [shape for shape in shapes if shape[0] == "input" and shape[1] == "account_number"]
    assert inputs == [
        ("input", "account_number", "repeat", 1, "reprompt"),
        ("input", "account_number", "none", 0, "reprompt"),
        ("input", "account_number", "keys", 2, "invalid"),
        ("input", "account_number", "keys", 8, "invalid"),
        ("input", "account_number", "keys", 8, "too_many_tries"),
    ]
    exits = [shape for shape in shapes if shape[0] == "exit" and shape[1] == "account_number"]
    assert exits == [
        ("exit", "account_number", "invalid", "account_number"),
        ("exit", "account_number", "invalid", "account_number"),
        ("exit", "account_number", "too_many_tries", "agent_unverified"),
    ]
    assert shapes[-3:] == [
        ("transfer", "agent_unverified", "number", None),
        ("transfer_end", "completed"),
        ("end", "completed", "transferred"),
    ]
    assert row.verification == "none" and row.failure == "digits_failed"
    assert row.identity == "unknown_number"


def test_a_caller_who_hangs_up_is_abandoned_where_they_left(app: Flask, phone: Phone) -> None:
    add_account(app, "Jane Doe", JANE_PHONE, JANE_NUMBER)
    result = phone.call(JANE_PHONE, ["1"])

    row, steps = stored(app, result.call_sid)
    assert row.outcome == "abandoned" and row.last_node == "last4"
    assert brief(steps)[-2:] == [("enter", "last4"), ("end", "completed", "abandoned")]


def test_a_number_change_with_its_call_back_then_goodbye(app: Flask, phone: Phone) -> None:
    add_account(app, "Jane Doe", JANE_PHONE, JANE_NUMBER)
    keys = ["1", "4321", "@code", "1", NEW_KEYED, "1", "@code", "3"]
    result = phone.call(JANE_PHONE, keys, callee_keys=["1"])

    row, steps = stored(app, result.call_sid)
    shapes = brief(steps)
    assert ("exit", "change_number", "allowed", "new_number") in shapes
    assert ("input", "new_number", "keys", len(NEW_KEYED), "accepted") in shapes
    assert ("callback", "calling") in shapes
    assert ("callback_code", "ok") in shapes
    assert ("exit", "enter_callback_code", "ok", "number_changed") in shapes
    assert shapes[-4:] == [
        ("exit", "menu", "options.3", "goodbye"),
        ("enter", "goodbye"),
        ("hangup", "goodbye"),
        ("end", "completed", "ended"),
    ]
    assert row.outcome == "ended" and row.last_node == "goodbye"


def test_no_timeline_holds_a_secret(app: Flask, phone: Phone) -> None:
    """Codes, keypad digits, account numbers and full phone numbers appear in no step
    and no summary field of any of these calls."""
    add_account(app, "Jane Doe", JANE_PHONE, JANE_NUMBER)
    calls = [
        phone.call(JANE_PHONE, ["1", "4321", "@code", "2"]),
        phone.call(UNKNOWN_PHONE, ["1", JANE_NUMBER, "@code", "2"]),
        phone.call(
            JANE_PHONE, ["1", "4321", "@code", "1", NEW_KEYED, "1", "@code", "3"], callee_keys=["1"]
        ),
    ]
    secrets = {JANE_NUMBER, "4321", NEW_KEYED, *(code for call in calls for code in call.codes)}
    numbers = {JANE_PHONE, NEW_PHONE, UNKNOWN_PHONE, JANE_PHONE[2:], UNKNOWN_PHONE[2:]}
    assert len(secrets) >= 6  # three codes at least, so the check has something to find

    for result in calls:
        row, steps = stored(app, result.call_sid)
        summary = {
            column.name: getattr(row, column.name) for column in CallRecord.__table__.columns
        }
        for item in [*steps, summary]:
            text = json.dumps(
                {key: value for key, value in item.items() if key not in ("at", "duration")},
                default=str,
                ensure_ascii=False,
            )
            runs = set(re.findall(r"\d+", text))
            assert not runs & secrets, (runs & secrets, item)
            assert not any(number in text for number in numbers), item


def test_a_repeated_status_callback_records_the_call_once(app: Flask, phone: Phone) -> None:
    add_account(app, "Jane Doe", JANE_PHONE, JANE_NUMBER)
    result = phone.call(JANE_PHONE, ["1"])
    before = stored(app, result.call_sid)[1]

    again = post(app, "/voice/status", call_form(result.call_sid, CallStatus="completed"))
    assert again.status_code == 200
    assert stored(app, result.call_sid)[1] == before  # nothing written twice, nothing lost


def test_the_record_is_written_now_when_the_queue_is_out_of_reach(
    app: Flask, phone: Phone, monkeypatch: pytest.MonkeyPatch
) -> None:
    def queue_down(*_args: Any, **_kwargs: Any) -> bool:
        raise StorageUnavailable("redis unavailable")

    monkeypatch.setattr(job_calls, "enqueue", queue_down)
    add_account(app, "Jane Doe", JANE_PHONE, JANE_NUMBER)
    result = phone.call(JANE_PHONE, ["1"])

    row, steps = stored(app, result.call_sid)
    assert row.outcome == "abandoned" and brief(steps)[-1] == ("end", "completed", "abandoned")


def test_the_sweeper_closes_a_call_whose_status_never_came(app: Flask) -> None:
    add_account(app, "Jane Doe", JANE_PHONE, JANE_NUMBER)
    sid = new_sid()
    assert post(app, "/voice/incoming", call_form(sid, From=JANE_PHONE)).status_code == 200
    assert post(app, "/voice/input?s=1", call_form(sid, Digits="1")).status_code == 200
    settings = app.config["IVR_SETTINGS"]

    with app.app_context():
        assert sid in store.open_call_sids()
        # Not yet: the call may still be running.
        assert closing.sweep(db.session(), settings.call_state_ttl) == 0
        later = time.time() + settings.call_state_ttl + 60
        # Older than the TTL but its state still lives (saved lately): a long call
        # with an agent, say. It is left alone.
        assert closing.sweep(db.session(), settings.call_state_ttl, now=later) == 0
        assert store.load(sid) is not None
        kv.client().delete(keys.call_state(sid))  # the state expires
        assert closing.sweep(db.session(), settings.call_state_ttl, now=later) == 1
        assert sid not in store.open_call_sids()
        assert not kv.client().exists(keys.call_timeline(sid), keys.call_summary(sid))
        assert closing.sweep(db.session(), settings.call_state_ttl, now=later) == 0

    row, steps = stored(app, sid)
    assert row.status == "unknown" and row.outcome == "abandoned"
    assert row.last_node == "last4" and row.caller == "+1415•••0100"
    assert ("input", "language", "keys", 1, "accepted") in brief(steps)
    assert brief(steps)[-1] == ("end", "unknown", "abandoned")
    assert row.ended_at >= row.started_at


def test_housekeeping_jobs_are_queued_once_per_period(app: Flask) -> None:
    with app.app_context():
        jobs = jobqueue.get(app)
        start = 1_800_000_000.0  # a round multiple of both periods
        assert schedule.queue_due(jobs, start) == [
            jobqueue.SWEEP,
            jobqueue.PRUNE,
            jobqueue.VOICEMAIL_PRUNE,
        ]
        assert schedule.queue_due(jobs, start + 10) == []  # another worker, same period
        assert schedule.queue_due(jobs, start + schedule.SWEEP_EVERY) == [jobqueue.SWEEP]
        assert schedule.queue_due(jobs, start + schedule.PRUNE_EVERY) == [
            jobqueue.SWEEP,
            jobqueue.PRUNE,
            jobqueue.VOICEMAIL_PRUNE,
        ]


def test_a_failure_mid_call_is_on_the_timeline_with_the_apology_transfer(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ivr.voice import services

    add_account(app, "Jane Doe", JANE_PHONE, JANE_NUMBER)
    sid = new_sid()
    assert post(app, "/voice/incoming", call_form(sid, From=JANE_PHONE)).status_code == 200

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(services, "engine", broken)
    answer = post(app, "/voice/input?s=1", call_form(sid, Digits="1"))
    assert answer.status_code == 200 and b"<Dial" in answer.data  # the apology's transfer
    monkeypatch.undo()
    post(app, "/voice/status", call_form(sid, CallStatus="completed", CallDuration="20"))

    row, steps = stored(app, sid)
    assert brief(steps)[-3:] == [
        ("error", None),
        ("transfer", None, "number", None),
        ("end", "completed", "abandoned"),
    ]
    assert steps[-3]["result"] == "failure" and steps[-2]["reason"] == "error"
    assert row.duration == 20


def test_a_caller_who_hangs_up_while_holding_abandoned_the_queue(make_app: Any) -> None:
    """QueueResult=hangup: the flow's unanswered path plays to nobody; the call is
    abandoned at the transfer, not ended by the hang-up node that follows."""
    app = make_app(IVR_AGENT_TARGET="queue:support")
    sid = new_sid()
    post(app, "/voice/incoming", call_form(sid, From=UNKNOWN_PHONE))
    post(app, "/voice/input?s=1", call_form(sid, Digits="1"))
    post(app, "/voice/input?s=2", call_form(sid))
    post(app, "/voice/input?s=3", call_form(sid))
    post(app, "/voice/dial?s=4", call_form(sid, QueueResult="hangup", QueueTime="40"))
    post(app, "/voice/status", call_form(sid, CallStatus="completed", CallDuration="70"))

    row, steps = stored(app, sid)
    assert ("transfer", "agent_unverified", "queue", "support") in brief(steps)
    assert ("transfer_end", "canceled") in brief(steps)
    assert row.outcome == "abandoned" and row.last_node == "agent_unverified"


def test_an_entry_that_locks_the_digits_is_recorded_as_locked(make_app: Any) -> None:
    app = make_app(IVR_DIGITS_MAX_FAILURES="2")
    add_account(app, "Jane Doe", JANE_PHONE, JANE_NUMBER)
    result = Phone(app).call(JANE_PHONE, ["1", "1111", "2222"])

    _row, steps = stored(app, result.call_sid)
    inputs = [shape for shape in brief(steps) if shape[0] == "input" and shape[1] == "last4"]
    assert inputs == [
        ("input", "last4", "keys", 4, "invalid"),
        ("input", "last4", "keys", 4, "locked"),
    ]
    assert ("exit", "last4", "locked", "agent_unverified") in brief(steps)


def test_a_bare_record_written_in_a_redis_outage_gives_way_to_the_timeline(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis out of reach at the status callback: the call is recorded bare at once; the
    sweeper's later find (its timeline) replaces it, keeping the status Twilio reported."""
    from ivr.calls import timeline_store

    add_account(app, "Jane Doe", JANE_PHONE, JANE_NUMBER)
    sid = new_sid()
    post(app, "/voice/incoming", call_form(sid, From=JANE_PHONE))
    post(app, "/voice/input?s=1", call_form(sid, Digits="1"))

    def down(*_args: Any, **_kwargs: Any) -> Any:
        raise StorageUnavailable("redis unavailable")

    with monkeypatch.context() as patch:
        patch.setattr(timeline_store, "take_ended", down)
        patch.setattr(job_calls, "enqueue", down)
        patch.setattr(job_calls, "was_queued", down)
        post(app, "/voice/status", call_form(sid, CallStatus="completed", CallDuration="33"))
    row, steps = stored(app, sid)
    assert [item["event"] for item in steps] == ["end"]

    settings = app.config["IVR_SETTINGS"]
    with app.app_context():
        kv.client().delete(keys.call_state(sid))  # the state expires; the timeline lives on
        later = time.time() + settings.call_state_ttl + 60
        assert closing.sweep(db.session(), settings.call_state_ttl, now=later) == 1

    row, steps = stored(app, sid)
    assert brief(steps)[0] == ("start", None) and ("enter", "last4") in brief(steps)
    assert brief(steps)[-1] == ("end", "completed", "abandoned")
    assert row.status == "completed" and row.duration == 33 and row.last_node == "last4"
