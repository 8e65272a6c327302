"""Pruning call history: `ivr calls prune`, `prune` and `prune_expired` (ivr.history.prune).

What is left is counted on a connection of its own, so only committed rows count; the
steps are counted apart from the calls, since pruning must remove them even where the
database would not cascade.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskCliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session

from ivr.flow import timeline
from ivr.history import prune as pruning
from ivr.history import record
from ivr.history.prune import count_older, cutoff_for, prune, prune_expired
from ivr.storage import db as ivr_db
from ivr.storage.models import AuditEvent, CallRecord, CallStep


@pytest.fixture
def now() -> datetime:
    """The test's present, taken when the test runs: the CLI prunes against the clock,
    and collection in a full run can be many minutes earlier."""
    return datetime.now(UTC)


def store_call(session: Session, n: int, started: datetime) -> str:
    """A stored call (three steps and its end) that started at `started`."""
    call_sid = f"CA{n:032x}"
    began = started.timestamp()
    steps = [
        timeline.step(timeline.START, 0, flow="support", version="v1", language="en"),
        timeline.step(timeline.ENTER, 0, node="main_menu", type="menu"),
        timeline.step(timeline.HANGUP, 1000, node="main_menu"),
    ]
    assert record.write(session, record.build(call_sid, "completed", 5, None, steps, began + 5))
    return call_sid


def stored(app: Flask) -> tuple[set[str], set[str]]:
    """The CallSids of the committed calls, and those that still have steps."""
    with app.app_context(), ivr_db.engine().connect() as connection:
        calls = set(connection.scalars(select(CallRecord.call_sid)))
        stepped = set(connection.scalars(select(CallStep.call_sid).distinct()))
    return calls, stepped


def pruned_audits(app: Flask) -> list[AuditEvent]:
    with app.app_context():
        session = ivr_db.session()
        session.expire_all()
        query = select(AuditEvent).where(AuditEvent.action == "calls.pruned")
        return list(session.scalars(query.order_by(AuditEvent.id)))


@pytest.fixture
def ages(db_session: Session, now: datetime) -> dict[str, str]:
    """Calls of known ages either side of 30 and 90 days."""
    return {
        "today": store_call(db_session, 1, now - timedelta(hours=1)),
        "29_days": store_call(db_session, 2, now - timedelta(days=29)),
        "31_days": store_call(db_session, 3, now - timedelta(days=31)),
        "89_days": store_call(db_session, 4, now - timedelta(days=89, hours=23)),
        "91_days": store_call(db_session, 5, now - timedelta(days=91)),
        "400_days": store_call(db_session, 6, now - timedelta(days=400)),
    }


def test_prune_deletes_exactly_the_older_calls_and_their_steps(
    app: Flask, db_session: Session, ages: dict[str, str], now: datetime
) -> None:
    assert prune(db_session, now - timedelta(days=30)) == 4
    calls, stepped = stored(app)
    kept = {ages["today"], ages["29_days"]}
    assert calls == kept
    assert stepped == kept
    assert prune(db_session, now - timedelta(days=30)) == 0


def test_prune_works_in_batches(
    app: Flask, db_session: Session, ages: dict[str, str], now: datetime
) -> None:
    assert prune(db_session, now, batch=1) == 6
    assert stored(app) == (set(), set())


def test_prune_expired_keeps_the_days_it_is_given(
    app: Flask, db_session: Session, ages: dict[str, str], now: datetime
) -> None:
    assert prune_expired(db_session, 90, now) == 2
    assert stored(app)[0] == {ages[name] for name in ("today", "29_days", "31_days", "89_days")}
    assert pruned_audits(app) == []  # no actor: not audited


def test_prune_expired_audits_when_given_an_actor(
    app: Flask, db_session: Session, ages: dict[str, str], now: datetime
) -> None:
    assert prune_expired(db_session, 30, now, actor="scheduler") == 4
    [event] = pruned_audits(app)
    assert (event.actor, event.details["deleted"], event.details["days"]) == ("scheduler", 4, 30)
    assert (event.details["total"], event.details["batch"]) == (4, 1)
    assert datetime.fromisoformat(event.details["before"]) == now - timedelta(days=30)


def test_an_audited_prune_records_each_batch_with_a_running_total(
    app: Flask, db_session: Session, ages: dict[str, str], now: datetime
) -> None:
    assert prune(db_session, now - timedelta(days=30), 3, actor="cli", days=30) == 4
    details = [event.details for event in pruned_audits(app)]
    assert [(d["deleted"], d["total"], d["batch"], d["days"]) for d in details] == [
        (3, 3, 1, 30),
        (1, 4, 2, 30),
    ]


def test_a_run_that_finds_nothing_is_audited_as_such(
    app: Flask, db_session: Session, now: datetime
) -> None:
    assert prune_expired(db_session, 30, now, actor="scheduler") == 0
    [event] = pruned_audits(app)
    assert (event.details["deleted"], event.details["total"], event.details["batch"]) == (0, 0, 0)


def test_a_run_is_bounded_and_the_next_continues(
    app: Flask, db_session: Session, ages: dict[str, str], now: datetime
) -> None:
    cutoff = now - timedelta(days=30)
    assert prune(db_session, cutoff, 1, max_batches=2, actor="scheduler") == 2
    assert ages["400_days"] not in stored(app)[0] and ages["91_days"] not in stored(app)[0]
    assert {ages["31_days"], ages["89_days"]} <= stored(app)[0]  # the oldest went first
    assert prune(db_session, cutoff, 1, max_batches=2, actor="scheduler") == 2
    assert stored(app)[0] == {ages["today"], ages["29_days"]}
    assert [event.details["total"] for event in pruned_audits(app)] == [1, 2, 1, 2]
    # A spent time budget still lets one batch run, and stops before the next.
    store_call(db_session, 7, now - timedelta(days=40))
    store_call(db_session, 8, now - timedelta(days=50))
    assert prune(db_session, cutoff, 1, budget=0.0) == 1
    assert prune(db_session, cutoff, 1, budget=0.0) == 1
    assert prune(db_session, cutoff, 1, budget=0.0) == 0


def test_a_prune_cut_short_has_audited_every_deletion_it_committed(
    app: Flask, db_session: Session, ages: dict[str, str], now: datetime, monkeypatch: Any
) -> None:
    """The job's timeout (or a lost connection) stops a run mid-way: the batches already
    committed are each on record, and together they account for every call gone."""
    real = pruning._oldest
    calls = {"n": 0}

    def dies_on_the_third_batch(session: Session, cutoff: datetime, limit: int) -> list[str]:
        calls["n"] += 1
        if calls["n"] == 3:
            raise TimeoutError("job timeout")
        return real(session, cutoff, limit)

    monkeypatch.setattr(pruning, "_oldest", dies_on_the_third_batch)
    with pytest.raises(TimeoutError):
        prune(db_session, now - timedelta(days=30), 1, actor="scheduler", days=30)
    db_session.rollback()
    gone = set(ages.values()) - stored(app)[0]
    assert len(gone) == 2
    events = pruned_audits(app)
    assert [event.details["deleted"] for event in events] == [1, 1]
    assert sum(event.details["deleted"] for event in events) == len(gone)


def test_prune_refuses_nonsense(db_session: Session, now: datetime) -> None:
    with pytest.raises(ValueError, match="batch must be at least 1"):
        prune(db_session, now, batch=0)
    with pytest.raises(ValueError, match="max_batches must be at least 1"):
        prune(db_session, now, max_batches=0)
    with pytest.raises(ValueError, match="days must be at least 1"):
        cutoff_for(0, now)


def test_cli_prune_uses_the_setting_and_audits(
    app: Flask, runner: FlaskCliRunner, ages: dict[str, str], now: datetime
) -> None:
    result = runner.invoke(args=["calls", "prune"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("deleted 2 call(s) started before ")
    assert result.output.rstrip().endswith("(older than 90 days)")
    assert stored(app)[0] == {ages[name] for name in ("today", "29_days", "31_days", "89_days")}
    [event] = pruned_audits(app)
    assert event.actor == "cli"
    assert event.details["deleted"] == 2
    assert event.details["days"] == 90
    cutoff = datetime.fromisoformat(event.details["before"])
    assert abs(cutoff - (now - timedelta(days=90))) < timedelta(minutes=5)


def test_cli_prune_takes_days(app: Flask, runner: FlaskCliRunner, ages: dict[str, str]) -> None:
    result = runner.invoke(args=["calls", "prune", "--days", "30"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("deleted 4 call(s)")
    assert stored(app)[0] == {ages["today"], ages["29_days"]}
    assert [event.details["days"] for event in pruned_audits(app)] == [30]


def test_cli_prune_reads_ivr_call_history_days(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app(IVR_CALL_HISTORY_DAYS="30")
    with app.app_context():
        session = ivr_db.session()
        now = datetime.now(UTC)
        store_call(session, 1, now - timedelta(days=29))
        store_call(session, 2, now - timedelta(days=31))
    result = app.test_cli_runner().invoke(args=["calls", "prune"])
    assert result.exit_code == 0, result.output
    assert "deleted 1 call(s)" in result.output
    assert "(older than 30 days)" in result.output
    assert stored(app)[0] == {f"CA{1:032x}"}


def test_cli_dry_run_deletes_nothing_and_audits_nothing(
    app: Flask, runner: FlaskCliRunner, db_session: Session, ages: dict[str, str], now: datetime
) -> None:
    result = runner.invoke(args=["calls", "prune", "--days", "30", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("would delete 4 call(s) started before ")
    assert stored(app) == (set(ages.values()), set(ages.values()))
    assert pruned_audits(app) == []
    assert count_older(db_session, now - timedelta(days=30)) == 4


@pytest.mark.parametrize("days", ["0", "-3", "abc", "100000"])
def test_cli_prune_refuses_bad_days(
    app: Flask, runner: FlaskCliRunner, ages: dict[str, str], days: str
) -> None:
    result = runner.invoke(args=["calls", "prune", "--days", days])
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "--days" in errors[0], result.output
    assert "Traceback" not in result.output
    assert stored(app)[0] == set(ages.values())
