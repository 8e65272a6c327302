"""The funnel (calls that entered each node, took each exit, hung up there) and the
dashboard's numbers, over calls stored as the job worker stores them; the counts are
exact, per flow, version and period."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from caller import Phone
from flask import Flask
from history_kit import path_steps, store_call
from kit import JANE_PHONE, add_account
from sqlalchemy import select
from sqlalchemy.orm import Session

from ivr.flow import timeline
from ivr.history.dashboard import NO_REASON, dashboard, hour_buckets, percentile
from ivr.history.funnel import funnel
from ivr.storage import db
from ivr.storage.models import CallRecord


def last(period: timedelta) -> tuple[datetime, datetime]:
    """[now - period, now), taken when asked: after the test stored its calls (a period
    fixed at collection would miss calls stored minutes later in a full run)."""
    now = datetime.now(UTC)
    return now - period, now


DAY = timedelta(days=1)

HANG_UP_AT_LANGUAGE = [("welcome", "next"), ("language", None)]
TO_AGENT = [
    ("welcome", "next"),
    ("language", "next"),
    ("identify", "one_account"),
    ("last4", "no_input"),
    ("agent_unverified", None),
]


def transferred(
    steps: list[dict], reason: str = "no_input", node: str = "agent_unverified"
) -> list[dict]:
    at = steps[-1]["at"] + 100
    return [
        *steps,
        timeline.step(timeline.TRANSFER, at, node=node, target="number", reason=reason),
        timeline.step(timeline.TRANSFER_END, at + 9000, node=node, status="completed"),
    ]


def test_funnel_counts_entries_exits_and_drop_offs(db_session: Session) -> None:
    for _ in range(7):
        store_call(db_session, path_steps(HANG_UP_AT_LANGUAGE))
    for _ in range(4):
        store_call(db_session, transferred(path_steps(TO_AGENT)))
    # A menu entered three times counts its caller once there.
    looping = path_steps(
        [("welcome", "next"), ("language", "invalid"), ("language", "invalid"), ("language", None)]
    )
    store_call(db_session, looping)

    got = funnel(db_session, "support", "v1", *last(DAY))

    assert got.calls == 12
    assert got.entered["welcome"] == 12
    assert got.entered["language"] == 12
    assert got.entered["identify"] == 4
    assert got.entered["agent_unverified"] == 4
    assert got.exits[("welcome", "next")] == 12
    assert got.exits[("language", "next")] == 4
    assert got.exits[("language", "invalid")] == 1
    assert got.exits[("last4", "no_input")] == 4
    assert got.dropped == {"language": 8}
    assert got.share(4) == 4 / 12


def test_funnel_keeps_to_its_flow_version_and_period(db_session: Session) -> None:
    store_call(db_session, path_steps(HANG_UP_AT_LANGUAGE))
    store_call(db_session, path_steps(HANG_UP_AT_LANGUAGE, version="v2"), version="v2")
    store_call(db_session, path_steps(HANG_UP_AT_LANGUAGE, flow="other"), flow="other")
    store_call(db_session, path_steps(HANG_UP_AT_LANGUAGE), started=time.time() - 3 * 86400)

    day = last(DAY)
    assert funnel(db_session, "support", "v1", *day).entered == {"welcome": 1, "language": 1}
    assert funnel(db_session, "support", None, *day).calls == 2
    assert funnel(db_session, "support", "v2", *day).dropped == {"language": 1}
    week = funnel(db_session, "support", "v1", *last(timedelta(days=7)))
    assert week.calls == 2
    empty = funnel(db_session, "nothing", None, *day)
    assert (empty.calls, empty.entered, empty.exits, empty.dropped) == (0, {}, {}, {})
    assert empty.share(3) == 0.0


def test_dashboard_numbers_are_what_was_recorded(db_session: Session) -> None:
    begun = time.time() - 600
    for _ in range(3):
        store_call(db_session, path_steps(HANG_UP_AT_LANGUAGE), seconds=10, started=begun)
    code_call = path_steps(TO_AGENT[:4])
    code_call += [
        timeline.step(timeline.CODE_SENT, 9000, node="send_sms", channel="sms", result="sent"),
        timeline.step(
            timeline.CODE_SENT, 9500, node="send_email", channel="email", result="failed"
        ),
        timeline.step(timeline.CALLBACK, 9600, node="cb", result="started"),
        timeline.step(timeline.CALLBACK_STATUS, 9700, status="busy"),
    ]
    store_call(
        db_session,
        transferred(code_call, reason="wants_agent"),
        seconds=40,
        started=begun,
        verification="code",
        methods=["last4", "code_sms"],
        transfer_reason="wants_agent",
    )
    store_call(
        db_session,
        transferred(path_steps(TO_AGENT)),
        seconds=50,
        started=begun,
        verification="digits",
        methods=["last4"],
    )

    day = last(timedelta(hours=24))
    got = dashboard(db_session, *day)

    assert got.calls == 5
    assert sum(bucket.count for bucket in got.hours) == 5
    assert len(got.hours) in (24, 25)
    assert got.verification == {"none": 3, "digits": 1, "code": 1}
    assert got.verified == 2 and got.verified_share == 2 / 5
    assert got.methods == {"last4": 2, "code_sms": 1}
    assert got.code_delivery == {("sms", "sent"): 1, ("email", "failed"): 1}
    assert got.callbacks == {("callback", "started"): 1, ("callback_status", "busy"): 1}
    assert got.transfer_reasons == {"wants_agent": 1, NO_REASON: 1}
    assert got.outcomes == {"abandoned": 3, "transferred": 2}
    assert got.abandoned == 3 and got.abandoned_share == 3 / 5
    # ivr_seconds: until the transfer began (abandoned calls: the whole timeline).
    assert got.ivr_median is not None and got.ivr_p90 is not None
    assert got.ivr_median <= got.ivr_p90
    assert dashboard(db_session, *day, flow="other").calls == 0


def test_dashboard_groups_hours_methods_and_percentiles_exactly(db_session: Session) -> None:
    """What the database groups and ranks is what the Python reference gives: calls per
    UTC hour, methods per call (a method listed twice counts once), nearest-rank
    median and p90 of the time in the IVR."""
    now = datetime.now(UTC)
    hour = now.replace(minute=0, second=0, microsecond=0)
    placed = [hour - timedelta(hours=3)] * 2 + [hour - timedelta(hours=5, minutes=-59)]
    placed += [hour - timedelta(hours=1)] * 8 + [now - timedelta(hours=25)]  # last: outside
    for n, begun in enumerate(placed):
        store_call(
            db_session,
            path_steps(HANG_UP_AT_LANGUAGE),
            started=begun.timestamp() + 1,
            seconds=10 * (n + 1),
            verification="digits" if n < 2 else "none",
            methods=["last4", "last4", "code_sms"] if n == 0 else ["last4"] if n == 1 else [],
        )

    got = dashboard(db_session, now - timedelta(hours=24), now)

    counted = {bucket.start: bucket.count for bucket in got.hours if bucket.count}
    assert counted == {
        hour - timedelta(hours=5): 1,
        hour - timedelta(hours=3): 2,
        hour - timedelta(hours=1): 8,
    }
    assert got.hours == hour_buckets(
        [moment + timedelta(seconds=1) for moment in placed], now - timedelta(hours=24), now
    )
    assert got.calls == 11
    assert got.methods == {"last4": 2, "code_sms": 1}
    in_period = db_session.scalars(
        select(CallRecord.ivr_seconds).where(CallRecord.started_at >= now - timedelta(hours=24))
    )
    seconds = sorted(float(value) for value in in_period if value is not None)
    assert len(seconds) == 11
    assert got.ivr_median == percentile(seconds, 50) == seconds[5]
    assert got.ivr_p90 == percentile(seconds, 90) == seconds[9]
    assert seconds[5] < seconds[9]


def test_hour_buckets_and_percentiles() -> None:
    since = datetime(2026, 1, 1, 10, 30, tzinfo=UTC)
    until = since + timedelta(hours=3)
    started = [since, since + timedelta(minutes=40), since + timedelta(hours=2), until]
    buckets = hour_buckets([moment.replace(tzinfo=None) for moment in started], since, until)
    assert [(b.start.hour, b.count) for b in buckets] == [(10, 1), (11, 1), (12, 1), (13, 0)]
    assert percentile([], 50) is None
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert percentile([float(n) for n in range(1, 11)], 90) == 9.0


# --- 50 simulated calls through the default flow -------------------------------------


def test_funnel_of_fifty_simulated_calls_is_exact(app: Flask, phone: Phone) -> None:
    """50 calls played through the simulator into flows/support.yaml, in four known
    shapes; the funnel over them counts every node, exit and drop-off exactly."""
    add_account(app, "Jane Doe", JANE_PHONE, "10004321")
    verifiers = [f"+1415555{110 + n:04d}" for n in range(15)]
    for n, number in enumerate(verifiers):
        add_account(app, f"Caller {n}", number, f"2000{n:04d}")
    for _ in range(20):  # hang up while the language choice plays
        phone.call(JANE_PHONE, [])
    for _ in range(5):  # choose English, hang up at the digits prompt
        phone.call(JANE_PHONE, ["1"])
    for _ in range(10):  # silence twice at the digits: an agent, unverified
        phone.call(JANE_PHONE, ["1", "", ""])
    for n, number in enumerate(verifiers):  # digits and texted code, then 2: an agent
        phone.call(number, ["1", f"{n:04d}", "@code", "2"])

    with app.app_context():
        session = db.session()
        version = session.scalars(select(CallRecord.version).distinct()).one()
        got = funnel(session, "support", version, *last(DAY))

    assert got.calls == 50
    assert got.entered == {
        "hours": 50,
        "welcome": 50,
        "language": 50,
        "identify": 30,
        "last4": 30,
        "agent_unverified": 10,
        "send_sms": 15,
        "enter_code": 15,
        "menu": 15,
        "agent_verified": 15,
    }
    assert got.exits == {
        ("hours", "open"): 50,
        ("welcome", "next"): 50,
        ("language", "next"): 30,
        ("identify", "one_account"): 30,
        ("last4", "no_input"): 10,
        ("last4", "ok"): 15,
        ("send_sms", "sent"): 15,
        ("enter_code", "ok"): 15,
        ("menu", "options.2"): 15,
    }
    assert got.dropped == {"language": 20, "last4": 5}
