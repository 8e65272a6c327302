"""`ivr customers export|erase`: a customer's data for a data-subject request, and its erasure.

Jane's data is made the way the service makes it: simulated calls through the real
webhooks (call history, steps, audit rows, counters and the agent page's entry in
Redis), a confirmed number change, and Redis records written by the modules that own
them. After an erase every row of every table and every key of this run's Redis
prefix is dumped as text and searched for anything that identifies her; the search is
shown to find each kind of value before the erase, so it cannot pass by being blind.
"""

from __future__ import annotations

import json
import os
import stat
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from caller import Phone
from factories import change_phone, make_account
from flask import Flask
from flask.testing import FlaskCliRunner
from kit import JANE_PHONE, add_account
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from sqlalchemy import select

from ivr.agent import transfers
from ivr.calls import outbound, queue_callback, store
from ivr.customers import privacy_cli
from ivr.delivery import Outgoing, outbox
from ivr.flow import timeline
from ivr.flow.state import CallState
from ivr.history import record
from ivr.jobs import queue as jobqueue
from ivr.jobs.deliveries import send_later
from ivr.numberchange.pending import PendingChange, save_pending
from ivr.phone import mask, mask_account
from ivr.storage import audit, db, keys, kv
from ivr.storage.db import Base
from ivr.storage.models import (
    Account,
    AuditEvent,
    CallRecord,
    Customer,
    PhoneChange,
    PhoneNumber,
    Voicemail,
)
from ivr.verification import digits

JANE_NEW_PHONE = "+14155550177"  # her first account's number after a change
JANE_SECOND_PHONE = "+14155550188"  # her second account's number
JOHN_PHONE = "+14155550111"
CODE_HASH = "f" * 24 + "c0dehash"  # what a live code's stored hash looks like here


def jane_values() -> dict[str, str]:
    """Every value that identifies Jane, by kind (what an erase must leave nowhere)."""
    values = {
        "name": "Jane Doe",
        "first name": "Jane",
        "email": "jane@example.com",
        "account 1": "10004321",
        "account 2": "10008765",
        "masked account 1": mask_account("10004321"),
        "masked account 2": mask_account("10008765"),
    }
    for label, number in (
        ("old phone", JANE_PHONE),
        ("new phone", JANE_NEW_PHONE),
        ("second phone", JANE_SECOND_PHONE),
    ):
        values[label] = number
        values[f"{label} national"] = number.removeprefix("+1")
        values[f"masked {label}"] = mask(number)
    return values


JOHN = {"name": "John Roe", "email": "john@example.com", "account": "20005678"}
JANE_NOTICE = "Your phone number on file is changing."  # a notice's text
JOHN_NOTICE = "Your phone number on file changed, John."
STRANGER_PHONE = "+14155559100"  # shares nothing with Jane
NAMESAKE_PHONE = "+14155550100".replace("5550100", "5560100")  # same mask as JANE_PHONE


def write_call(session: Any, state: CallState, duration: int) -> None:
    """Store an ended call the way its job does (`record.build` + `record.write`)."""
    secret = "test-secret-key"
    known = timeline.summary_of(state, secret)
    record.write(
        session, record.build(state.call_sid, "completed", duration, known, [], time.time())
    )


def leave_voicemail(
    session: Any, n: int, number: str, account_id: int | None, secret: str = "test-secret-key"
) -> None:
    """A message as the voicemail webhooks store it: masked caller, keyed hash, the
    account only for a verified call."""
    session.add(
        Voicemail(
            call_sid="CA" + f"{n:x}" * 32,
            recording_sid="RE" + f"{n:x}" * 32,
            recording_url="https://api.twilio.com/2010-04-01/Accounts/AC/Recordings/RE",
            duration=12,
            caller=mask(number),
            caller_key=timeline.caller_key(number, secret),
            account_id=account_id,
            verification="code" if account_id else "none",
            methods=["account_digits", "code_sms"] if account_id else [],
            language="en-US",
            flow="support",
            status="ready",
        )
    )
    session.commit()


def queue_notice(app: Flask, to: str, body: str, key: str, account_id: int) -> None:
    """A notice queued for the worker (not run: no request ends here)."""
    with app.app_context():
        channel = "email" if "@" in to else "sms"
        message = Outgoing(channel, to, body, call_sid=None, purpose="number_change")
        assert send_later(message, key=key, account_id=account_id)


# --- making Jane's data ----------------------------------------------------------------------


def place_calls(app: Flask, phone: Phone) -> None:
    """Two simulated calls from Jane's phone: a verified one to an agent, one wrong digits."""
    phone.call(JANE_PHONE, ["1", "4321", "@code", "2"])
    phone.call(JANE_PHONE, ["1", "9999"])


def make_jane(app: Flask, phone: Phone | None = None) -> dict[str, int]:
    """Jane (two accounts, a number change, calls, audit rows, Redis data) and John."""
    first = add_account(app, "Jane Doe", JANE_PHONE, "10004321", "jane@example.com")
    if phone is not None:
        place_calls(app, phone)
    with app.app_context():
        session = db.session()
        jane = session.get(Account, first)
        assert jane is not None
        second = make_account(
            session, phone=JANE_SECOND_PHONE, account_number="10008765", customer=jane.customer
        )
        john = make_account(session, JOHN["name"], JOHN_PHONE, JOHN["account"], JOHN["email"])
        change_phone(session, jane, JANE_NEW_PHONE)
        sid = "CA" + "1" * 32
        state = CallState(
            call_sid=sid, flow="support", version="v1", language="en-US", node="menu",
            started_at=time.time() - 60, caller=JANE_NEW_PHONE, account_id=second.id,
            first_name="Jane", verification="code",
        )  # fmt: skip
        write_call(session, state, 60)
        audit.record(
            session, "agent.note", actor="agent1", account_id=second.id,
            details={
                "caller": mask(JANE_SECOND_PHONE),
                "account": mask_account("10008765"),
                "said": "Jane Doe asked about fees",
            },
        )  # fmt: skip
        john_sid = "CA" + "2" * 32
        john_state = CallState(
            call_sid=john_sid, flow="support", version="v1", language="en-US", node="menu",
            started_at=time.time() - 30, caller=JOHN_PHONE, account_id=john.id,
        )  # fmt: skip
        write_call(session, john_state, 30)
        # Voicemail: one verified on her second account, one from her (changed) number
        # about no account (found by the keyed hash), and John's.
        leave_voicemail(session, 7, JANE_SECOND_PHONE, second.id)
        leave_voicemail(session, 8, JANE_NEW_PHONE, None)
        leave_voicemail(session, 9, JOHN_PHONE, john.id)
        client = kv.client()
        client.hset(keys.code(first, "verify"), mapping={"hash": CODE_HASH, "tries": "1"})
        client.set(keys.account_failures(second.id), 2)
        client.zadd(digits.account_key(second.id), {"m1": time.time()})
        secret = app.config["IVR_SETTINGS"].secret_key.encode()
        client.zadd(digits.caller_key(secret, JANE_SECOND_PHONE), {"m2": time.time()})
        client.zadd(digits.caller_key(secret, JOHN_PHONE), {"m3": time.time()})
        transfers.record(
            client, target="queue:support", call_sid=sid, token="token-naming-Jane",
            account_id=second.id, at=time.time(),
        )  # fmt: skip
        client.set(keys.call_state(sid), state.to_json())  # an ended call's state, left over
        callback = outbound.new_callback(
            purpose="verify", mode=outbound.READ, account_id=second.id, bound_to=sid,
            language="en-US", to=JANE_SECOND_PHONE, placed_for=sid,
        )  # fmt: skip
        outbound.save(callback)
        client.set(keys.account_failures(john.id), 1)
        ids = {"jane": first, "second": second.id, "john": john.id, "customer": jane.customer_id}
    queue_notice(app, "jane@example.com", JANE_NOTICE, "notice:jane:email", 0)
    queue_notice(app, JANE_SECOND_PHONE, JANE_NOTICE, "notice:jane:sms", ids["second"])
    queue_notice(app, JOHN_PHONE, JOHN_NOTICE, "notice:john:sms", ids["john"])
    return ids


# --- dumping everything ------------------------------------------------------------------------


def database_text(app: Flask) -> list[str]:
    """Every row of every table, all columns (JSON as stored and as read), as text."""
    rows = []
    with app.app_context(), db.engine().connect() as connection:
        for table in Base.metadata.sorted_tables:
            for row in connection.execute(table.select()):
                values = [
                    json.dumps(v, ensure_ascii=False, default=str) if isinstance(v, dict | list)
                    else str(v)
                    for v in row
                ]  # fmt: skip
                rows.append(f"{table.name}: " + " | ".join(values))
    return rows


def redis_text(app: Flask) -> list[str]:
    """Every key of this run's prefix with its value, as text."""
    found = []
    with app.app_context():
        client = kv.client()
        for name in set(client.scan_iter(match=keys.pattern(), count=1000)):
            kind = client.type(name).decode()
            value: Any
            if kind == "string":
                value = client.get(name)
            elif kind == "hash":
                value = client.hgetall(name)
            elif kind == "zset":
                value = client.zrange(name, 0, -1, withscores=True)
            elif kind == "list":
                value = client.lrange(name, 0, -1)
            else:
                value = client.smembers(name)
            found.append(f"{name.decode()} = {_decoded(value)}")
    return found


def jobs_text(app: Flask) -> list[str]:
    """Every job record on the jobs Redis (any registry, any state), decoded with RQ's
    own API (payloads are serialised, maybe compressed), with its arguments and meta."""
    found = []
    with app.app_context():
        jobs = jobqueue.get()
        ids = sorted(
            {
                name.decode().removeprefix("rq:job:")
                for name in jobs.connection.scan_iter("rq:job:*")
            }
        )
        for job in Job.fetch_many(ids, connection=jobs.connection, serializer=JSONSerializer):
            if job is not None:
                args = json.dumps(job.args, ensure_ascii=False, default=str)
                meta = json.dumps(job.meta, ensure_ascii=False, default=str)
                found.append(
                    f"job {job.id} ({job.get_status().value}): {args} {meta} {job.description}"
                )
    return found


def job_states(app: Flask) -> dict[str, str]:
    """Each job's id → its RQ status."""
    with app.app_context():
        jobs = jobqueue.get()
        names = [name.decode() for name in jobs.connection.scan_iter("rq:job:*")]
        ids = [name.removeprefix("rq:job:") for name in names]
        fetched = Job.fetch_many(ids, connection=jobs.connection, serializer=JSONSerializer)
        return {job.id: job.get_status().value for job in fetched if job is not None}


def _decoded(value: Any) -> str:
    text = repr(value)
    # bytes reprs escape non-ASCII (the • of masked values): decode them for the search.
    return text.encode().decode("unicode_escape").encode("latin-1").decode("utf-8", "replace")


def leaks(app: Flask, values: dict[str, str]) -> dict[str, list[str]]:
    """Which of `values` appear where: kind → the rows and keys holding it."""
    everything = database_text(app) + redis_text(app) + jobs_text(app)
    found: dict[str, list[str]] = {}
    for label, value in values.items():
        holding = [line for line in everything if value in line]
        if holding:
            found[label] = holding
    return found


def book_queue_callback(app: Flask, account_id: int) -> queue_callback.QueueCallback:
    """Jane chose a call-back on hold (verified to `account_id`): its record, the
    account's one-waiting reservation, and the job that will ring her, all waiting."""
    with app.app_context(), app.test_request_context("/"):
        from ivr.voice.queue_callbacks import _schedule

        state = CallState(
            call_sid="CA" + "3" * 32, flow="support", version="v1", language="en-US",
            node="agent_verified", started_at=time.time() - 200, caller=STRANGER_PHONE,
            account_id=account_id, first_name="Jane", verification="code",
            methods=[("account_digits", time.time() - 190), ("code_sms", time.time() - 180)],
        )  # fmt: skip
        callback = queue_callback.from_state(state, time.time())
        assert queue_callback.claim(callback)
        queue_callback.save(callback)
        _schedule(callback, 1, 600)
    return callback


def erase(runner: FlaskCliRunner, account: str, *extra: str) -> Any:
    return runner.invoke(args=["customers", "erase", account, "--yes", *extra])


# --- export ------------------------------------------------------------------------------------


def test_export_holds_all_of_janes_data_and_nothing_of_johns(
    app: Flask, phone: Phone, runner: FlaskCliRunner
) -> None:
    ids = make_jane(app, phone)

    result = runner.invoke(args=["customers", "export", "1000-4321"])

    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["customer"] == {
        "id": ids["customer"],
        "name": "Jane Doe",
        "email": "jane@example.com",
        "created_at": data["customer"]["created_at"],
    }
    assert {a["number"]: a["phone"] for a in data["accounts"]} == {
        "10004321": JANE_NEW_PHONE,
        "10008765": JANE_SECOND_PHONE,
    }
    changes = data["accounts"][0]["phone_changes"]
    assert [(c["old"], c["new"]) for c in changes] == [(JANE_PHONE, JANE_NEW_PHONE)]
    assert data["phone_numbers"] == sorted([JANE_PHONE, JANE_NEW_PHONE, JANE_SECOND_PHONE])
    calls = {call["call_sid"]: call for call in data["calls"]}
    assert len(calls) == 3  # two simulated, one written directly
    assert "CA" + "2" * 32 not in calls  # John's
    simulated = [c for c in calls.values() if c["version"] != "v1"]
    assert [c["verification"] for c in simulated] == ["code", "none"] or [
        c["verification"] for c in simulated
    ] == ["none", "code"]
    assert all(c["steps"][0]["event"] == "start" for c in simulated)
    actions = {event["action"] for event in data["audit_events"]}
    assert {"call.ended", "agent.note"} <= actions
    assert all(e["account_id"] in (ids["jane"], ids["second"], None) for e in data["audit_events"])
    redis = data["redis"]
    held = {item["key"]: item["holds"] for item in redis["accounts"][str(ids["jane"])]}
    assert held["code:verify"].startswith("a live one-time code")
    assert {item["key"] for item in redis["accounts"][str(ids["second"])]} >= {
        "failures",
        "digit_failures",
    }
    assert redis["digit_failures_by_phone"] == 1
    assert sorted(entry["account_id"] for entry in redis["agent_transfers"]) == [
        ids["jane"],
        ids["second"],
    ]
    assert [cb["to"] for cb in redis["callbacks"]] == [JANE_SECOND_PHONE]
    voicemails = {item["recording_sid"]: item for item in data["voicemails"]}
    assert set(voicemails) == {"RE" + "7" * 32, "RE" + "8" * 32}  # not John's
    assert voicemails["RE" + "7" * 32]["account_id"] == ids["second"]
    assert voicemails["RE" + "8" * 32]["caller"] == mask(JANE_NEW_PHONE)
    text = result.stdout
    for value in (*JOHN.values(), JOHN_PHONE, mask(JOHN_PHONE)):
        assert value not in text
    for secret in (CODE_HASH, "token-naming-Jane"):
        assert secret not in text


def test_export_to_a_private_file_is_audited_with_the_last_four_only(
    app: Flask, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    ids = make_jane(app)
    target = tmp_path / "jane.json"

    result = runner.invoke(args=["customers", "export", "10008765", "--output", str(target)])

    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert json.loads(target.read_text())["customer"]["name"] == "Jane Doe"
    again = runner.invoke(args=["customers", "export", "10008765", "--output", str(target)])
    assert again.exit_code == 1  # never overwrites a file
    with app.app_context():
        events = (
            db.session()
            .scalars(select(AuditEvent).where(AuditEvent.action == "customer.exported"))
            .all()
        )
        assert [(e.actor, e.details["account"], e.details["to"]) for e in events] == [
            ("cli", "•••8765", "file")
        ]
        assert events[0].account_id in (ids["jane"], ids["second"])
        assert "10008765" not in json.dumps(events[0].details)


@pytest.mark.parametrize("command", ["export", "erase"])
def test_an_unknown_account_is_one_line_and_exit_1(
    app: Flask, runner: FlaskCliRunner, command: str
) -> None:
    make_jane(app)
    before = database_text(app)

    confirmed = ["--yes"] if command == "erase" else []
    result = runner.invoke(args=["customers", command, "99999999", *confirmed])

    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0
    assert "no account '99999999'" in result.output
    assert database_text(app) == before


# --- erase -------------------------------------------------------------------------------------


def test_erase_leaves_no_personal_data_in_any_table_or_redis_key(
    app: Flask, phone: Phone, runner: FlaskCliRunner
) -> None:
    ids = make_jane(app, phone)
    booked = book_queue_callback(app, ids["second"])  # its record names her ("Jane")
    assert runner.invoke(args=["customers", "export", "10004321"]).exit_code == 0  # audited
    jane = jane_values()
    before = leaks(app, jane)
    assert any(booked.id in line for line in before["first name"])
    assert set(before) == set(jane), f"the search misses {set(jane) - set(before)}"
    # The job queue holds her too: queued notices, the kept records of her calls' jobs.
    in_jobs = {label for label, value in jane.items() if any(value in j for j in jobs_text(app))}
    assert {"email", "second phone", "masked old phone"} <= in_jobs
    john_before = leaks(app, {"name": JOHN["name"], "phone": JOHN_PHONE, "mask": mask(JOHN_PHONE)})
    audit_count = _count(app, AuditEvent)
    listings = [transfers.target_key("queue:support"), transfers.target_key("+15005550006")]
    with app.app_context():
        assert [kv.client().zcard(listing) for listing in listings] == [1, 1]

    result = erase(runner, "10004321")

    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"erased customer {ids['customer']}: 2 accounts")
    assert leaks(app, jane) == {}
    # John's data is as it was, where it was.
    assert leaks(app, {"name": JOHN["name"], "phone": JOHN_PHONE, "mask": mask(JOHN_PHONE)}) == (
        john_before
    )
    with app.app_context():
        session = db.session()
        john = session.get(Account, ids["john"])
        assert john is not None
        assert (john.number, john.phone.e164, john.customer.email) == (
            JOHN["account"],
            JOHN_PHONE,
            JOHN["email"],
        )
        assert kv.client().get(keys.account_failures(ids["john"])) == b"1"
        # The agent page lists none of her calls any more (the listings are call ids).
        assert [kv.client().zcard(listing) for listing in listings] == [0, 0]
        customer = session.get(Customer, ids["customer"])
        assert customer is not None
        assert (customer.name, customer.email) == (f"erased customer {ids['customer']}", None)
        assert sorted(a.number for a in customer.accounts) == sorted(
            f"erased:{i}" for i in (ids["jane"], ids["second"])
        )
    # Every audit row is still there (plus the erase's own), pointing at real accounts.
    assert _count(app, AuditEvent) == audit_count + 1
    _assert_references_hold(app)
    erased = _events(app, "customer.erased")
    assert len(erased) == 1 and erased[0].account_id == ids["jane"]
    assert erased[0].details["account_ids"] == [ids["jane"], ids["second"]]
    assert erased[0].details["counts"]["calls"] == 3
    assert erased[0].details["counts"]["voicemails"] == 2
    # Her messages are gone (nothing at Twilio in development); John's is as it was.
    with app.app_context():
        left = list(db.session().scalars(select(Voicemail)))
        assert [(v.recording_sid, v.caller, v.account_id) for v in left] == [
            ("RE" + "9" * 32, mask(JOHN_PHONE), ids["john"])
        ]
    assert job_states(app) == {jobqueue.job_id("notice:john:sms"): "queued"}


def test_erase_is_one_transaction(app: Flask, runner: FlaskCliRunner, monkeypatch: Any) -> None:
    make_jane(app)
    before = database_text(app)

    def broken(*args: Any, **kwargs: Any) -> int:
        raise __import__("sqlalchemy").exc.OperationalError("DELETE", {}, Exception("gone"))

    monkeypatch.setattr("ivr.customers.privacy_erase._drop_unused_numbers", broken)
    result = erase(runner, "10004321")

    assert result.exit_code == 1
    assert "rolled back" in result.output
    assert database_text(app) == before


def test_a_shared_phone_stays_with_the_other_customer(app: Flask, runner: FlaskCliRunner) -> None:
    add_account(app, "Ana Lopez", "+14155550122", "30001111", "ana@example.com")
    luis = add_account(app, "Luis Lopez", "+14155550122", "30002222")

    assert erase(runner, "30001111").exit_code == 0

    with app.app_context():
        session = db.session()
        account = session.get(Account, luis)
        assert account is not None and account.phone.e164 == "+14155550122"
        assert account.customer.name == "Luis Lopez"
    assert (
        leaks(app, {"name": "Ana Lopez", "email": "ana@example.com", "account": "30001111"}) == {}
    )


def test_erase_is_refused_while_a_number_change_is_pending(
    app: Flask, runner: FlaskCliRunner
) -> None:
    ids = make_jane(app)
    with app.app_context():
        save_pending(
            PendingChange(
                id="chg1", account_id=ids["second"], call_sid="CA" + "3" * 32,
                old=JANE_SECOND_PHONE, new="+14155550199", mode="callback_on_line",
                language="en-US", created=time.time(),
            )
        )  # fmt: skip
    before = database_text(app), sorted(redis_text(app))

    result = erase(runner, "10004321")

    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0
    assert "number change in progress" in result.output and "•••8765" in result.output
    assert (database_text(app), sorted(redis_text(app))) == before


@pytest.mark.parametrize("by", ["account", "caller"])
def test_erase_is_refused_while_a_call_is_in_progress(
    app: Flask, runner: FlaskCliRunner, by: str
) -> None:
    ids = make_jane(app)
    sid = "CA" + "4" * 32
    with app.app_context():
        store.save(
            CallState(
                call_sid=sid, flow="support", version="v1", language="en-US", node="menu",
                started_at=time.time(),
                caller=JANE_SECOND_PHONE if by == "caller" else "+14155550999",
                account_id=ids["jane"] if by == "account" else None,
            )
        )  # fmt: skip
        kv.client().zadd(keys.open_calls(), {sid: time.time()})
    before = database_text(app), sorted(redis_text(app))

    result = erase(runner, "10008765")

    assert result.exit_code == 1
    assert result.output.strip() == (
        f"nothing erased: call {sid} of this customer is in progress; try again after it"
    )
    assert (database_text(app), sorted(redis_text(app))) == before


def test_an_open_call_of_someone_else_does_not_stop_the_erase(
    app: Flask, runner: FlaskCliRunner
) -> None:
    ids = make_jane(app)
    sid = "CA" + "5" * 32
    with app.app_context():
        store.save(
            CallState(
                call_sid=sid, flow="support", version="v1", language="en-US", node="menu",
                started_at=time.time(), caller=JOHN_PHONE, account_id=ids["john"],
            )
        )  # fmt: skip
        kv.client().zadd(keys.open_calls(), {sid: time.time()})

    assert erase(runner, "10008765").exit_code == 0

    with app.app_context():
        assert store.load(sid) is not None


def test_a_second_erase_is_harmless(app: Flask, phone: Phone, runner: FlaskCliRunner) -> None:
    ids = make_jane(app, phone)
    assert erase(runner, "10004321").exit_code == 0
    after_first = database_text(app)

    by_old_number = erase(runner, "10004321")
    by_pseudonym = erase(runner, f"erased:{ids['jane']}")

    assert by_old_number.exit_code == 1
    assert by_old_number.output.strip() == "nothing erased: no account '10004321'"
    assert by_pseudonym.exit_code == 0, by_pseudonym.output
    assert leaks(app, jane_values()) == {}
    _assert_references_hold(app)
    assert len(_events(app, "customer.erased")) == 2
    # Apart from the second audit row, nothing changed.
    added = [row for row in database_text(app) if row not in after_first]
    assert len(added) == 1 and "customer.erased" in added[0]


def test_erasing_again_scrubs_a_call_recorded_after_the_erase(
    app: Flask, runner: FlaskCliRunner
) -> None:
    """The record of a call that ended just before the erase may be written by a job just
    after it: erasing the pseudonymised account again scrubs it."""
    ids = make_jane(app)
    assert erase(runner, "10004321").exit_code == 0
    sid = "CA" + "6" * 32
    with app.app_context():
        late = CallState(
            call_sid=sid, flow="support", version="v1", language="en-US", node="menu",
            started_at=time.time() - 20, caller=JANE_PHONE, account_id=ids["jane"],
        )  # fmt: skip
        write_call(db.session(), late, 20)
    assert set(leaks(app, jane_values())) == {"masked old phone"}  # the late record's caller

    assert erase(runner, f"erased:{ids['jane']}").exit_code == 0

    assert leaks(app, jane_values()) == {}
    _assert_references_hold(app)


def test_erase_asks_first(app: Flask, runner: FlaskCliRunner) -> None:
    make_jane(app)
    before = database_text(app)

    result = runner.invoke(args=["customers", "erase", "10004321"], input="n\n")

    assert result.exit_code == 1
    assert "Erase customer" in result.output and "Aborted" in result.output
    assert database_text(app) == before


# --- the job queue ----------------------------------------------------------------------------


def _schedule(app: Flask, key: str) -> None:
    """Move a queued job to the scheduled registry, as a failed try waiting to retry."""
    with app.app_context():
        jobs = jobqueue.get()
        job = Job.fetch(jobqueue.job_id(key), connection=jobs.connection, serializer=JSONSerializer)
        jobs.queue.remove(job)
        job.set_status(JobStatus.SCHEDULED)
        jobs.queue.scheduled_job_registry.schedule(job, datetime.now(UTC) + timedelta(hours=1))


@pytest.mark.parametrize(
    ("name", "where"),
    [
        (jobqueue.CALL_RECORD, "queued"),
        (jobqueue.CALL_RECORD, "scheduled"),
        (jobqueue.AUDIT, "scheduled"),
        (jobqueue.AFTER_CALL, "queued"),
    ],
)
def test_erase_is_refused_while_a_job_would_write_their_data_back(
    app: Flask, runner: FlaskCliRunner, name: str, where: str
) -> None:
    ids = make_jane(app)
    sid = "CA" + "7" * 32
    with app.app_context():
        state = CallState(
            call_sid=sid, flow="support", version="v1", language="en-US", node="menu",
            started_at=time.time() - 20, caller=JANE_SECOND_PHONE, account_id=ids["second"],
        )  # fmt: skip
        payload: dict[str, Any] = {
            jobqueue.CALL_RECORD: record.build(
                sid, "completed", 20, timeline.summary_of(state, "test-secret-key"), [], time.time()
            ),
            jobqueue.AUDIT: {
                "action": "agent.note", "actor": "agent1", "call_sid": None,
                "account_id": ids["second"], "details": {"said": "Jane Doe called"},
            },
            jobqueue.AFTER_CALL: {"call_sid": sid, "account_id": ids["second"]},
        }[name]  # fmt: skip
        assert jobqueue.enqueue(name, payload, key=f"{name}:{sid}")
    if where == "scheduled":
        _schedule(app, f"{name}:{sid}")
    before = database_text(app), sorted(redis_text(app)), sorted(jobs_text(app))

    result = erase(runner, "10004321")

    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0
    identifier = jobqueue.job_id(f"{name}:{sid}")
    assert result.output.startswith(
        f"nothing erased: a {name} job ({identifier}) holding this customer's data is {where}; "
    )
    assert ("run the worker" in result.output) == (where == "queued")
    assert (database_text(app), sorted(redis_text(app)), sorted(jobs_text(app))) == before


def test_a_job_of_someone_else_does_not_stop_the_erase(app: Flask, runner: FlaskCliRunner) -> None:
    ids = make_jane(app)
    with app.app_context():
        payload = {"call_sid": "CA" + "8" * 32, "account_id": ids["john"]}
        assert jobqueue.enqueue(jobqueue.AFTER_CALL, payload, key="after_call:john")

    assert erase(runner, "10004321").exit_code == 0

    assert job_states(app) == {
        jobqueue.job_id("after_call:john"): "queued",
        jobqueue.job_id("notice:john:sms"): "queued",
    }


def test_export_lists_their_notices_and_pending_jobs(app: Flask, runner: FlaskCliRunner) -> None:
    ids = make_jane(app)
    with app.app_context():
        payload = {"call_sid": "CA" + "9" * 32, "account_id": ids["second"]}
        assert jobqueue.enqueue(jobqueue.AFTER_CALL, payload, key="after_call:jane")
    _schedule(app, "notice:jane:sms")

    result = runner.invoke(args=["customers", "export", "10004321"])

    assert result.exit_code == 0, result.output
    jobs = json.loads(result.stdout)["jobs"]
    notices = {n["to"]: (n["state"], n["body"]) for n in jobs["queued_notices"]}
    assert notices == {
        "jane@example.com": ("queued", JANE_NOTICE),
        JANE_SECOND_PHONE: ("scheduled", JANE_NOTICE),
    }
    assert [(j["job"], j["state"], j["account_id"]) for j in jobs["pending"]] == [
        (jobqueue.AFTER_CALL, "queued", ids["second"])
    ]
    assert JOHN_NOTICE not in result.stdout and JOHN_PHONE not in result.stdout
    # Erasing then is refused for the after-call job; once it has run, the notices go.
    assert "number_change.after_call job" in erase(runner, "10004321").output
    with app.app_context():
        jobs_redis = jobqueue.get()
        job = Job.fetch(
            jobqueue.job_id("after_call:jane"),
            connection=jobs_redis.connection,
            serializer=JSONSerializer,
        )
        jobs_redis.queue.remove(job)
        jobs_redis.queue.finished_job_registry.add(job, 3600)
        job.set_status(JobStatus.FINISHED)
    assert erase(runner, "10004321").exit_code == 0
    assert job_states(app) == {jobqueue.job_id("notice:john:sms"): "queued"}
    with app.app_context():
        queue = jobqueue.get().queue
        assert queue.scheduled_job_registry.get_job_ids() == []
        assert queue.finished_job_registry.get_job_ids() == []
        assert queue.get_job_ids() == [jobqueue.job_id("notice:john:sms")]


def test_a_job_of_theirs_queued_during_the_erase_is_warned_about(
    app: Flask, runner: FlaskCliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = make_jane(app)
    sid = "CA" + "d" * 32
    real = privacy_cli.erase_database

    def erase_as_a_call_ends(*args: Any, **kwargs: Any) -> dict[str, int]:
        counts = real(*args, **kwargs)
        payload = {"call_sid": sid, "account_id": ids["jane"]}
        assert jobqueue.enqueue(jobqueue.AFTER_CALL, payload, key=f"after_call:{sid}")
        return counts

    monkeypatch.setattr(privacy_cli, "erase_database", erase_as_a_call_ends)

    result = erase(runner, "10004321")

    assert result.exit_code == 0, result.output
    identifier = jobqueue.job_id(f"after_call:{sid}")
    assert (
        f"warning: a number_change.after_call job ({identifier}) of this customer was queued "
        f"during the erase; once it has run, run `ivr customers erase erased:{ids['jane']} "
        "--yes` again"
    ) in result.output


# --- a race, strangers ------------------------------------------------------------------------


@pytest.mark.parametrize("begins", ["call", "job"])
def test_erase_looks_again_after_the_confirmation(
    app: Flask, runner: FlaskCliRunner, monkeypatch: pytest.MonkeyPatch, begins: str
) -> None:
    """A call (or a job of theirs) that begins while the operator reads the question
    stops the erase as one present before it would have."""
    ids = make_jane(app)
    sid = "CA" + "4" * 32

    def meanwhile(*args: Any, **kwargs: Any) -> bool:
        if begins == "call":
            store.save(
                CallState(
                    call_sid=sid, flow="support", version="v1", language="en-US", node="menu",
                    started_at=time.time(), caller=JANE_SECOND_PHONE, account_id=None,
                )
            )  # fmt: skip
            kv.client().zadd(keys.open_calls(), {sid: time.time()})
        else:
            payload = {"call_sid": sid, "account_id": ids["jane"]}
            jobqueue.enqueue(jobqueue.AFTER_CALL, payload, key=f"after_call:{sid}")
        return True

    monkeypatch.setattr("ivr.customers.privacy_cli.click.confirm", meanwhile)
    before = database_text(app)

    result = runner.invoke(args=["customers", "erase", "10004321"])

    assert result.exit_code == 1
    expected = "in progress" if begins == "call" else "number_change.after_call job"
    assert expected in result.output and result.output.startswith("nothing erased: ")
    assert database_text(app) == before


def test_a_strangers_call_with_the_same_masked_number_is_not_theirs(
    app: Flask, runner: FlaskCliRunner
) -> None:
    """Calls about no account are hers only by the keyed hash of her full number:
    a stranger whose number masks alike keeps his call, unexported and unscrubbed."""
    assert mask(NAMESAKE_PHONE) == mask(JANE_PHONE) and NAMESAKE_PHONE != JANE_PHONE
    make_jane(app)
    calls = {"hers": ("CA" + "a" * 32, JANE_PHONE), "his": ("CA" + "b" * 32, NAMESAKE_PHONE)}
    with app.app_context():
        for sid, caller in calls.values():
            state = CallState(
                call_sid=sid, flow="support", version="v1", language="en-US", node="menu",
                started_at=time.time() - 9, caller=caller, account_id=None,
            )  # fmt: skip
            write_call(db.session(), state, 9)

    exported = json.loads(runner.invoke(args=["customers", "export", "10004321"]).stdout)
    assert erase(runner, "10004321").exit_code == 0

    sids = {call["call_sid"] for call in exported["calls"]}
    assert calls["hers"][0] in sids and calls["his"][0] not in sids
    with app.app_context():
        session = db.session()
        hers = session.get(CallRecord, calls["hers"][0])
        his = session.get(CallRecord, calls["his"][0])
        assert hers is not None and his is not None
        assert (hers.caller, hers.caller_key) == ("", None)
        assert (his.caller, his.caller_key) == (
            mask(NAMESAKE_PHONE),
            record.caller_key(NAMESAKE_PHONE, "test-secret-key"),
        )


def test_erase_leaves_other_peoples_audit_rows_but_her_exact_values(
    app: Flask, runner: FlaskCliRunner
) -> None:
    ids = make_jane(app)
    johns = {
        "caller": mask(JANE_PHONE),  # a mask about a thousand numbers share
        "contact": "Jane Smith",  # another Jane
        "ref": "A10004321",  # her account number inside a longer code
        "ticket": "9100043210",  # and inside a longer number
        "forwarded_to": JANE_SECOND_PHONE,  # her number, whole
        "note": f"asked us to call {JANE_SECOND_PHONE} or jane@example.com.",
    }
    with app.app_context():
        audit.record(
            db.session(), "agent.note", actor="agent1", account_id=ids["john"], details=johns
        )

    exported = runner.invoke(args=["customers", "export", "10004321"]).stdout
    assert erase(runner, "10004321").exit_code == 0

    # Her export shows her values in John's row, and nothing else of it.
    (shown,) = [e for e in json.loads(exported)["audit_events"] if e["action"] == "agent.note"
                and e["account_id"] is None]  # fmt: skip
    assert shown["details"] == {"forwarded_to": JANE_SECOND_PHONE, "note": johns["note"]}
    assert "Jane Smith" not in exported and "9100043210" not in exported

    (row,) = [e for e in _events(app, "agent.note") if e.account_id == ids["john"]]
    assert row.details == johns | {
        "forwarded_to": "[erased]",
        "note": "asked us to call [erased] or [erased].",
    }


def test_export_masks_a_third_partys_number(app: Flask, runner: FlaskCliRunner) -> None:
    """Someone else calling about her account: the export names her, not the caller."""
    ids = make_jane(app)
    with app.app_context():
        store.save(
            CallState(
                call_sid="CA" + "c" * 32, flow="support", version="v1", language="en-US",
                node="menu", started_at=time.time(), caller=STRANGER_PHONE,
                account_id=ids["second"],
            )
        )  # fmt: skip

    result = runner.invoke(args=["customers", "export", "10004321"])

    assert result.exit_code == 0, result.output
    callers = {
        c["call_sid"]: c["caller"] for c in json.loads(result.stdout)["redis"]["calls_in_redis"]
    }
    assert callers == {"CA" + "1" * 32: JANE_NEW_PHONE, "CA" + "c" * 32: mask(STRANGER_PHONE)}
    assert STRANGER_PHONE not in result.stdout


# --- helpers -----------------------------------------------------------------------------------


def _count(app: Flask, model: type[Base]) -> int:
    with app.app_context():
        return len(db.session().scalars(select(model)).all())


def _events(app: Flask, action: str) -> list[AuditEvent]:
    with app.app_context():
        query = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        return list(db.session().scalars(query))


def _assert_references_hold(app: Flask) -> None:
    """Every account, audit row, call and number change points at a row that exists."""
    with app.app_context():
        session = db.session()
        accounts = {a.id: a for a in session.scalars(select(Account))}
        phones = set(session.scalars(select(PhoneNumber.id)))
        customers = set(session.scalars(select(Customer.id)))
        for account in accounts.values():
            assert account.phone_id in phones and account.customer_id in customers
        linked = [
            *session.scalars(select(AuditEvent.account_id)),
            *session.scalars(select(CallRecord.account_id)),
            *session.scalars(select(PhoneChange.account_id)),
        ]
        assert all(account_id is None or account_id in accounts for account_id in linked)
        assert any(account_id is not None for account_id in linked)


def test_erase_deletes_a_waiting_call_back_chosen_on_hold_and_nothing_rings(
    app: Flask, runner: FlaskCliRunner, outbox_path: Path
) -> None:
    ids = make_jane(app)
    booked = book_queue_callback(app, ids["second"])
    exported = runner.invoke(args=["customers", "export", "10004321"])
    assert exported.exit_code == 0, exported.output
    listed = json.loads(exported.output)["redis"]["queue_callbacks"]
    assert [(c["account_id"], c["status"]) for c in listed] == [(ids["second"], "waiting")]

    result = erase(runner, "10004321")

    assert result.exit_code == 0, result.output
    with app.app_context():
        assert queue_callback.load(booked.id) is None
        assert not queue_callback.waiting(ids["second"])
        client = kv.client()
        assert list(client.scan_iter(match=queue_callback.pattern())) == []
    assert jobqueue.job_id(f"queue_callback:{booked.id}:1") not in job_states(app)
    # Nothing rings nor texts her pseudonym, even if the job had survived.
    from ivr.jobs import runner as jobs_runner

    jobs_runner.run_pending(app, retries=True)
    with app.app_context(), app.test_request_context("/"):
        from ivr.voice import queue_callbacks

        queue_callbacks.place(booked.id, 1)
        assert queue_callbacks.number_on_file(ids["second"]) is None
    assert not outbox_path.exists() or all(
        not m.to.startswith("erased:") for m in outbox.read(outbox_path)
    )
