"""The line's emergency closure, switched without a publish: the table and its
migration, `ivr hours close|open|status` with their audit records, the console's
switch (roles, CSRF, a bad message marked), the per-worker cache the engine reads it
through, and whole calls through the simulator at a chosen time (open → the menu,
closed → the hours message, an emergency closure switched on by the CLI → its message).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from agent_kit import add_user, csrf_of, sign_in
from alembic import command
from caller import Phone
from flask import Flask
from flask.testing import FlaskClient
from kit import Clock
from schema import assert_schema_matches_models
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from test_schedule import SCHEDULE, write_flow

from ivr.calls import runtime
from ivr.errors import StorageUnavailable
from ivr.flow.engine import Engine
from ivr.hours import closures, status
from ivr.storage import db, roundtrips
from ivr.storage.migrate import alembic_config, upgrade
from ivr.storage.models import AuditEvent, LineClosure
from ivr.versions.store import LoadedFlow

CALLER = "+14155550100"
MONDAY_OPEN = "2026-12-07T15:00:00"  # Monday 10:00 in New York
MONDAY_EVENING = "2026-12-07T23:00:00"  # Monday 18:00 in New York: closed


def epoch(utc: str) -> float:
    return datetime.fromisoformat(utc).replace(tzinfo=UTC).timestamp()


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def line(make_app: Any, tmp_path: Path) -> Flask:
    """An app answering with the schedule test flow (IVR_FLOW=hours)."""
    flows, prompts = write_flow(tmp_path, SCHEDULE)
    app: Flask = make_app(IVR_FLOWS_DIR=str(flows), IVR_PROMPTS_DIR=str(prompts), IVR_FLOW="hours")
    return app


@pytest.fixture
def call_at(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Clock]:
    """Calls through the webhooks happen at a chosen moment: `call_at("2026-12-07T15:00")`
    (UTC) sets the clock every engine the webhooks build reads (the schedule node's, the
    call's timeline) and the one-time codes' clock alike, so a verification made on the
    call stays fresh; time then runs on from there."""
    from ivr.verification.codes import CodeService
    from ivr.voice import services

    clock = Clock()
    real_engine, real_codes = services.engine, services.CodeService

    def clocked_engine(loaded: LoadedFlow) -> Engine:
        built = real_engine(loaded)
        built.clock = clock
        return built

    def clocked_codes(client: Any, secret: str, policy: Any) -> CodeService:
        return real_codes(client, secret, policy, clock=clock)

    monkeypatch.setattr(services, "engine", clocked_engine)
    monkeypatch.setattr(services, "CodeService", clocked_codes)

    def at(utc: str) -> Clock:
        clock.ahead = epoch(utc) - time.time()
        return clock

    return at


def text(app: Flask, key: str, language: str = "en-US") -> str:
    raw = app.extensions["ivr.runtime"].working.catalog.text(language, key)
    return " ".join(raw.split())


def audit_rows(app: Flask, *actions: str) -> list[AuditEvent]:
    with app.app_context():
        query = select(AuditEvent).where(AuditEvent.action.in_(actions)).order_by(AuditEvent.id)
        rows = list(db.session().scalars(query))
        db.session().expunge_all()
        return rows


def closure_rows(app: Flask) -> list[LineClosure]:
    with app.app_context():
        rows = list(db.session().scalars(select(LineClosure).order_by(LineClosure.id)))
        db.session().expunge_all()
        return rows


def hours_cli(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=["hours", *args])


# ---------------------------------------------------------------- the migration


def test_migration_0011_adds_and_drops_the_closures(scratch_database_url: str) -> None:
    url = scratch_database_url
    upgrade(url, "0010")
    engine = sa.create_engine(url)
    insert = sa.text(
        "INSERT INTO line_closures (line, message, closed_at, closed_by)"
        " VALUES ('support', 'closed_emergency', CURRENT_TIMESTAMP, 'olga')"
    )
    try:
        with engine.connect() as connection:
            assert "line_closures" not in sa.inspect(connection).get_table_names()
        upgrade(url, "0011")
        with engine.begin() as connection:
            connection.execute(insert)
            with pytest.raises(sa.exc.IntegrityError), connection.begin_nested():
                connection.execute(insert)  # one closure in force per line
            connection.execute(
                sa.text("UPDATE line_closures SET opened_at = CURRENT_TIMESTAMP, opened_by = 'o'")
            )
            connection.execute(insert)  # once opened, the line may close again
        command.downgrade(alembic_config(url), "0010")
        with engine.connect() as connection:
            assert "line_closures" not in sa.inspect(connection).get_table_names()
        upgrade(url)
        with engine.connect() as connection:
            assert_schema_matches_models(connection)
    finally:
        engine.dispose()


# ---------------------------------------------------------------- the CLI


def test_close_status_open_with_their_audit_and_history(line: Flask) -> None:
    result = hours_cli(line, "status")
    assert result.exit_code == 0 and "the line hours is open" in result.output

    result = hours_cli(line, "close", "--message", "closed_emergency", "--by", "olga")
    assert result.exit_code == 0, result.output
    assert "closed the line hours with the message closed_emergency" in result.output

    result = hours_cli(line, "status", "--json")
    assert result.exit_code == 0
    shown = json.loads(result.output)
    assert shown["state"] == "closed" and shown["message"] == "closed_emergency"
    assert shown["closed_by"] == "olga" and shown["closed_at"].endswith("+00:00")

    again = hours_cli(line, "close", "--message", "closed_hours", "--by", "omar")
    assert again.exit_code == 3
    assert "is closed already (since" in again.output and "by olga" in again.output
    assert "nothing was changed" in again.output

    result = hours_cli(line, "open", "--by", "omar")
    assert result.exit_code == 0, result.output
    assert "opened the line hours" in result.output
    again = hours_cli(line, "open", "--by", "olga")
    assert again.exit_code == 3 and "is open already" in again.output
    assert json.loads(hours_cli(line, "status", "--json").output)["state"] == "open"

    assert hours_cli(line, "close", "--message", "closed_holiday", "--by", "olga").exit_code == 0
    rows = closure_rows(line)  # the history is kept
    assert [(r.message, r.closed_by, r.opened_by) for r in rows] == [
        ("closed_emergency", "olga", "omar"),
        ("closed_holiday", "olga", None),
    ]
    assert rows[0].opened_at is not None and rows[1].opened_at is None
    events = audit_rows(line, "line.closed", "line.opened")
    assert [(e.action, e.actor, e.details["message"]) for e in events] == [
        ("line.closed", "olga", "closed_emergency"),
        ("line.opened", "omar", "closed_emergency"),
        ("line.closed", "olga", "closed_holiday"),
    ]
    assert all(e.details["line"] == "hours" for e in events)
    assert events[0].details["closure"] == rows[0].id


def test_by_defaults_to_the_operator(line: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IVR_OPERATOR", "night-shift")
    assert hours_cli(line, "close", "--message", "closed_emergency").exit_code == 0
    assert closure_rows(line)[0].closed_by == "night-shift"


@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("closed_for_the_storm", "no prompt 'closed_for_the_storm' in the live version's en-US"),
        ("message_code_sms", "'message_code_sms' is not a closure message; their prompt keys"),
        ("welcome", "start with 'closed_'"),
    ],
)
def test_close_refuses_a_message_the_live_version_cannot_speak(
    line: Flask, key: str, words: str
) -> None:
    result = hours_cli(line, "close", "--message", key, "--by", "olga")
    assert result.exit_code == 1
    assert words in result.output and "nothing was changed" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert closure_rows(line) == [] and audit_rows(line, "line.closed") == []


def test_the_message_must_be_in_the_live_version_not_only_the_working_files(
    make_app: Any, tmp_path: Path
) -> None:
    flows, prompts = write_flow(tmp_path, SCHEDULE)
    first: Flask = make_app(
        IVR_FLOWS_DIR=str(flows), IVR_PROMPTS_DIR=str(prompts), IVR_FLOW="hours"
    )
    published = first.test_cli_runner().invoke(args=["flows", "publish", "hours", "-m", "v1"])
    assert published.exit_code == 0, published.output
    for language, words in (
        ("en-US", "Closed for the storm."),
        ("es-US", "Cerrado por la tormenta."),
    ):
        path = prompts / f"{language}.yaml"
        path.write_text(path.read_text() + f"  closed_storm: {words}\n")
    # A worker started since (its working files have the prompt; the live version not).
    second: Flask = make_app(
        IVR_FLOWS_DIR=str(flows), IVR_PROMPTS_DIR=str(prompts), IVR_FLOW="hours"
    )
    result = hours_cli(second, "close", "--message", "closed_storm")
    assert result.exit_code == 1
    assert "no prompt 'closed_storm' in the live version's en-US, es-US" in result.output
    assert hours_cli(second, "close", "--message", "closed_emergency").exit_code == 0


def test_storage_trouble_is_one_line(line: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    def down(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    monkeypatch.setattr(closures, "current", down)
    for args in (("close", "--message", "closed_emergency"), ("open",), ("status",)):
        result = hours_cli(line, *args)
        assert result.exit_code == 1, args
        assert "storage is not reachable" in result.output
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


# ---------------------------------------------------------------- the cache


def test_a_worker_reads_the_closure_at_most_once_per_cache_period(line: Flask) -> None:
    with line.app_context():
        cache = status.cache()
        now = [100.0]
        cache.clock = lambda: now[0]
        reads: list[str] = []

        def read(name: str) -> str | None:
            reads.append(name)
            return status.read_message(name)

        assert cache.message("hours", read) is None
        db.session().add(LineClosure(line="hours", message="closed_emergency", closed_by="t"))
        db.session().commit()  # behind the cache's back, as another worker would
        now[0] += status.CACHE_SECONDS - 0.5
        assert cache.message("hours", read) is None  # still what it read
        now[0] += 0.5
        assert cache.message("hours", read) == "closed_emergency"  # read again
        assert reads == ["hours", "hours"]
        status.forget()  # what tests (and a switch in this process) do
        assert cache.message("hours", read) == "closed_emergency"
        assert len(reads) == 3


def test_a_switch_in_this_process_is_seen_at_once(line: Flask) -> None:
    with line.app_context():
        line_status = status.line_status("hours")
        assert line_status.emergency() is None
        closures.close(db.session(), "hours", "closed_emergency", "olga")
        assert line_status.emergency() == "closed_emergency"
        closures.reopen(db.session(), "hours", "olga")
        assert line_status.emergency() is None


def test_unreadable_storage_keeps_what_the_worker_knew(
    line: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    with line.app_context():
        cache = status.cache()
        now = [0.0]
        cache.clock = lambda: now[0]

        def down(name: str) -> str | None:
            raise StorageUnavailable("database unavailable")

        assert cache.message("hours", down) is None  # never knew: open
        assert "closure status unreadable" in caplog.text
        now[0] += status.CACHE_SECONDS
        assert cache.message("hours", lambda name: "closed_emergency") == "closed_emergency"
        now[0] += status.CACHE_SECONDS
        assert cache.message("hours", down) == "closed_emergency"  # kept


# ---------------------------------------------------------------- the console


def signed_in(app: Flask, username: str, role: str) -> FlaskClient:
    add_user(app, username, role=role)
    client = app.test_client()
    assert sign_in(client, username).status_code == 303
    return client


def test_agents_get_nothing_supervisors_read_ops_switch(line: Flask) -> None:
    agent = signed_in(line, "ann", "agent")
    assert agent.get("/ops/hours").status_code == 403

    supervisor = signed_in(line, "sue", "supervisor")
    page = supervisor.get("/ops/hours")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'data-testid="state">Open' in html and 'data-testid="switch"' not in html
    token = csrf_of(supervisor, "/ops/hours")
    refused = supervisor.post(
        "/ops/hours", data={"csrf_token": token, "action": "close", "message": "closed_emergency"}
    )
    assert refused.status_code == 403
    assert closure_rows(line) == []

    ops = signed_in(line, "olga", "ops")
    html = ops.get("/ops/hours").get_data(as_text=True)
    assert 'data-testid="switch"' in html and '<option value="closed_emergency"' in html
    assert '<option value="welcome"' not in html  # only closure messages are offered
    assert "Hours</a>" in html  # the menu links the page
    token = csrf_of(ops, "/ops/hours")
    closed = ops.post(
        "/ops/hours", data={"csrf_token": token, "action": "close", "message": "closed_emergency"}
    )
    assert closed.status_code == 303
    html = ops.get("/ops/hours").get_data(as_text=True)
    assert "The line is closed: callers hear closed_emergency" in html
    assert 'data-testid="state">Closed' in html and 'data-testid="closed-by">ops:olga' in html
    assert text(line, "closed_emergency") in " ".join(html.split())

    html = supervisor.get("/ops/hours").get_data(as_text=True)
    assert 'data-testid="state">Closed' in html  # readers see it too

    stale = closure_rows(line)[0].id + 1  # a page showing a closure that is not in force
    refused = ops.post(
        "/ops/hours", data={"csrf_token": token, "action": "open", "closure": str(stale)}
    )
    assert refused.status_code == 303
    html = ops.get("/ops/hours").get_data(as_text=True)
    assert "was opened and closed again meanwhile" in html
    assert 'data-testid="state">Closed' in html

    assert f'name="closure" value="{stale - 1}"' in html  # the page's form names its closure
    opened = ops.post(
        "/ops/hours", data={"csrf_token": token, "action": "open", "closure": str(stale - 1)}
    )
    assert opened.status_code == 303
    again = ops.post("/ops/hours", data={"csrf_token": token, "action": "open"})
    assert again.status_code == 303
    html = ops.get("/ops/hours").get_data(as_text=True)
    assert "The line is open already; nothing was changed." in html
    events = audit_rows(line, "line.closed", "line.opened")
    assert [(e.action, e.actor) for e in events] == [
        ("line.closed", "ops:olga"),
        ("line.opened", "ops:olga"),
    ]


@pytest.mark.parametrize(
    ("message", "words"),
    [
        ("", "Choose a message the live version has in every language."),
        ("closed_for_the_storm", "No prompt &#39;closed_for_the_storm&#39; in the live version"),
        ("welcome", "is not a closure message"),
    ],
)
def test_a_bad_message_is_marked_on_its_field(line: Flask, message: str, words: str) -> None:
    ops = signed_in(line, "olga", "ops")
    token = csrf_of(ops, "/ops/hours")
    answer = ops.post(
        "/ops/hours", data={"csrf_token": token, "action": "close", "message": message}
    )
    assert answer.status_code == 422
    html = answer.get_data(as_text=True)
    assert 'aria-invalid="true" aria-describedby="message-error"' in html
    assert words in html
    assert closure_rows(line) == [] and audit_rows(line, "line.closed") == []


def test_a_switch_without_the_session_token_is_refused(line: Flask) -> None:
    ops = signed_in(line, "olga", "ops")
    answer = ops.post("/ops/hours", data={"action": "close", "message": "closed_emergency"})
    assert answer.status_code == 400
    assert closure_rows(line) == []


# ---------------------------------------------------------------- whole calls


@pytest.fixture
def phone_on(line: Flask) -> Phone:
    return Phone(line)


def test_open_hours_reach_the_menu(line: Flask, phone_on: Phone, call_at: Any) -> None:
    call_at(MONDAY_OPEN)
    result = phone_on.call(CALLER, ["1"])
    assert result.ended_by == "ivr"
    assert text(line, "language_option") in result.heard()
    assert text(line, "closed_hours") not in result.heard()


def test_closed_hours_say_so_and_hang_up(line: Flask, phone_on: Phone, call_at: Any) -> None:
    call_at(MONDAY_EVENING)
    result = phone_on.call(CALLER, [])
    assert result.heard() == [text(line, "closed_hours")]
    assert result.ended_by == "ivr"


def test_ivr_call_at_places_a_simulated_call_at_another_hour(line: Flask) -> None:
    """`ivr call --at` moves only the line's clock: the same flow, closed in the evening
    and open in the morning, whatever the machine's time."""
    runner = line.test_cli_runner()
    evening = runner.invoke(
        args=["call", "--from", CALLER, "--digits", "", "--at", "2026-12-07T18:00-05:00"]
    )
    morning = runner.invoke(
        args=["call", "--from", CALLER, "--digits", "1", "--at", "2026-12-07T10:00-05:00"]
    )

    assert evening.exit_code == 0, evening.output
    assert text(line, "closed_hours") in " ".join(evening.output.split())
    assert morning.exit_code == 0, morning.output
    assert text(line, "closed_hours") not in " ".join(morning.output.split())
    assert text(line, "language_option") in " ".join(morning.output.split())


@pytest.mark.parametrize(
    ("at", "words"),
    [("tomorrow", "not a moment"), ("2026-12-07T10:00", "offset"), ("", "not a moment")],
)
def test_ivr_call_at_refuses_a_moment_without_an_offset(line: Flask, at: str, words: str) -> None:
    result = line.test_cli_runner().invoke(
        args=["call", "--from", CALLER, "--digits", "", "--at", at]
    )
    assert result.exit_code != 0 and words in result.output
    assert "Traceback" not in result.output


def test_an_emergency_closure_from_the_cli_reaches_calls_without_a_publish(
    line: Flask, phone_on: Phone, call_at: Any
) -> None:
    call_at(MONDAY_OPEN)
    assert text(line, "language_option") in phone_on.call(CALLER, ["1"]).heard()
    with line.app_context():
        live_before = runtime.get().live().flow.version

    closed = hours_cli(line, "close", "--message", "closed_emergency", "--by", "olga")
    assert closed.exit_code == 0, closed.output
    result = phone_on.call(CALLER, ["1"])
    assert result.heard() == [text(line, "closed_emergency")]
    assert result.ended_by == "ivr"

    assert hours_cli(line, "open", "--by", "olga").exit_code == 0
    assert text(line, "language_option") in phone_on.call(CALLER, ["1"]).heard()
    with line.app_context():
        assert runtime.get().live().flow.version == live_before  # nothing was published


def test_a_schedule_costs_one_query_per_worker_per_cache_period(
    line: Flask, phone_on: Phone, call_at: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the default flow pays once a schedule node leads it: the first call a worker
    takes reads the closure (one statement, no transaction); the calls after it within
    CACHE_SECONDS read nothing."""
    call_at(MONDAY_EVENING)
    with line.app_context():
        runtime.get().live()  # the first start's publish is not a webhook's cost
        status.forget()
    monkeypatch.setattr(line.extensions["ivr.runtime"], "clock", lambda: 0.0)
    with line.app_context():
        monkeypatch.setattr(status.cache(), "clock", lambda: 0.0)
    counted: list[int] = []
    for _ in range(2):
        with roundtrips.counting(line) as counts:
            phone_on.call(CALLER, [])
        counted.append(counts.sql)
    assert counted[0] - counted[1] == 1, counted
