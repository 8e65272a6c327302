"""`ivr calls list|show` and the queries behind them (ivr.history.query).

Calls are stored the way the job worker stores them (`record.build` + `record.write`)
on the test database (SQLite, or PostgreSQL in CI), then read back through the real
CLI and through `list_calls`, which the console's calls page uses too.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from caller import Phone, sent_codes
from click.testing import Result
from factories import make_account
from flask import Flask
from flask.testing import FlaskCliRunner
from kit import add_account, secrets_of
from sqlalchemy.orm import Session

from ivr.flow import timeline
from ivr.flow.state import CallState
from ivr.history import record
from ivr.history.query import (
    CallFilter,
    call_as_dict,
    describe_step,
    get_call,
    list_calls,
    parse_since,
    step_text,
)

JANE = "+14155550100"
JANE_MASKED = "+1415•••0100"


def sid(n: int) -> str:
    return f"CA{n:032x}"


def steps_for(outcome: str, *, verified: bool) -> list[dict[str, Any]]:
    """A plausible timeline ending the way `outcome` says."""
    steps = [
        timeline.step(timeline.START, 0, flow="support", version="v1", language="en"),
        timeline.step(timeline.ENTER, 0, node="main_menu", type="menu"),
        timeline.step(
            timeline.INPUT, 3200, node="main_menu", input="keys", keys=1, result="accepted"
        ),
        timeline.step(timeline.EXIT, 3200, node="main_menu", exit="options.1", to="account"),
        timeline.step(timeline.ENTER, 3200, node="account", type="account_digits"),
    ]
    if verified:
        steps += [
            timeline.step(
                timeline.INPUT, 9000, node="account", input="keys", keys=8, result="accepted"
            ),
            timeline.step(timeline.VERIFIED, 9000, method="account_digits"),
            timeline.step(timeline.EXIT, 9000, node="account", exit="ok", to="agent"),
        ]
    else:
        steps.append(
            timeline.step(
                timeline.INPUT, 9000, node="account", input="none", keys=0, result="reprompt"
            )
        )
    if outcome == timeline.TRANSFERRED:
        steps += [
            timeline.step(timeline.ENTER, 9100, node="agent", type="transfer"),
            timeline.step(
                timeline.TRANSFER,
                9100,
                node="agent",
                target="queue",
                queue="support",
                reason="verified",
            ),
            timeline.step(timeline.TRANSFER_END, 60000, node="agent", status="completed"),
        ]
    elif outcome == timeline.ENDED:
        steps += [
            timeline.step(timeline.ENTER, 9100, node="goodbye", type="hangup"),
            timeline.step(timeline.HANGUP, 9100, node="goodbye"),
        ]
    return steps


def store_call(
    session: Session,
    n: int,
    *,
    started: datetime,
    outcome: str = timeline.ABANDONED,
    verified: bool = False,
    flow: str = "support",
    version: str = "v1",
    account_id: int | None = None,
) -> str:
    """Store call number `n`, started at `started`; its CallSid."""
    began = started.timestamp()
    state = CallState(
        call_sid=sid(n),
        flow=flow,
        version=version,
        language="en",
        node="main_menu",
        started_at=began,
        caller=JANE,
        identity="one_account",
        account_id=account_id,
    )
    if verified:
        state.verify("account_digits", began + 9)
    known = timeline.summary_of(state, "calls-cli-test-secret")
    built = record.build(
        sid(n), "completed", 95, known, steps_for(outcome, verified=verified), began + 95
    )
    assert record.write(session, built)
    return sid(n)


@pytest.fixture
def now() -> datetime:
    """The test's present, taken when the test runs (not when the module is collected:
    in a full run that can be many minutes earlier, and the CLI reads the clock)."""
    return datetime.now(UTC)


@pytest.fixture
def calls(db_session: Session, now: datetime) -> dict[str, str]:
    """Five calls of known shapes, by name."""
    account = make_account(db_session)
    return {
        "recent_transferred": store_call(
            db_session,
            1,
            started=now - timedelta(minutes=10),
            outcome="transferred",
            verified=True,
            account_id=account.id,
        ),
        "half_hour_abandoned": store_call(
            db_session, 2, started=now - timedelta(minutes=30), version="v2"
        ),
        "two_hours_ended": store_call(
            db_session, 3, started=now - timedelta(hours=2), outcome="ended"
        ),
        "three_days_abandoned": store_call(
            db_session, 4, started=now - timedelta(days=3), verified=True, flow="other"
        ),
        "week_transferred": store_call(
            db_session,
            5,
            started=now - timedelta(days=7, hours=1),
            outcome="transferred",
            verified=True,
        ),
    }


def listed(session: Session, now: datetime, **fields: Any) -> list[str]:
    return [row.call_sid for row in list_calls(session, CallFilter(**fields), now)]


def invoke(runner: FlaskCliRunner, *args: str) -> Result:
    return runner.invoke(args=["calls", *args])


def assert_one_line_error(result: Result, *, code: int, mentions: str) -> None:
    """A refusal: a non-zero exit, one `Error:` line naming the problem, no traceback."""
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit)
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    assert mentions in errors[0]
    assert "Traceback" not in result.output


# --- parse_since ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("1h", timedelta(hours=1)),
        ("2d", timedelta(days=2)),
        ("1w", timedelta(weeks=1)),
    ],
)
def test_parse_since_reads_each_unit(text: str, expected: timedelta) -> None:
    assert parse_since(text) == expected


@pytest.mark.parametrize("text", ["", "1", "h", "1x", "-1h", "1.5h", "0h", "1 hour", "\uff11h"])
def test_parse_since_names_a_bad_value(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"{text!r} is not a period")):
        parse_since(text)


# --- list_calls: filters and paging ------------------------------------------------------------


ALL_NEWEST_FIRST = [
    "recent_transferred",
    "half_hour_abandoned",
    "two_hours_ended",
    "three_days_abandoned",
    "week_transferred",
]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, ALL_NEWEST_FIRST),
        ({"since": timedelta(hours=1)}, ["recent_transferred", "half_hour_abandoned"]),
        (
            {"since": timedelta(days=7)},
            [
                "recent_transferred",
                "half_hour_abandoned",
                "two_hours_ended",
                "three_days_abandoned",
            ],
        ),
        ({"outcome": "transferred"}, ["recent_transferred", "week_transferred"]),
        ({"outcome": "ended"}, ["two_hours_ended"]),
        ({"outcome": "abandoned"}, ["half_hour_abandoned", "three_days_abandoned"]),
        ({"verified": True}, ["recent_transferred", "three_days_abandoned", "week_transferred"]),
        ({"verified": False}, ["half_hour_abandoned", "two_hours_ended"]),
        ({"flow": "other"}, ["three_days_abandoned"]),
        ({"version": "v2"}, ["half_hour_abandoned"]),
        (
            {"since": timedelta(days=7), "verified": True},
            ["recent_transferred", "three_days_abandoned"],
        ),
        ({"limit": 2}, ["recent_transferred", "half_hour_abandoned"]),
        ({"flow": "nonesuch"}, []),
        ({"since": parse_since("999999999d")}, ALL_NEWEST_FIRST),  # before year 1: all
    ],
)
def test_list_filters(
    db_session: Session,
    calls: dict[str, str],
    now: datetime,
    fields: dict[str, Any],
    expected: list[str],
) -> None:
    assert listed(db_session, now, **fields) == [calls[name] for name in expected]


def test_list_filters_by_account(db_session: Session, calls: dict[str, str], now: datetime) -> None:
    account_id = get_call(db_session, calls["recent_transferred"]).account_id  # type: ignore[union-attr]
    assert account_id is not None
    assert listed(db_session, now, account_id=account_id) == [calls["recent_transferred"]]
    assert listed(db_session, now, account_id=account_id + 1) == []


def test_paging_with_before_continues_where_the_page_ended(
    db_session: Session, calls: dict[str, str], now: datetime
) -> None:
    first = listed(db_session, now, limit=2)
    second = listed(db_session, now, limit=2, before=first[-1])
    third = listed(db_session, now, limit=2, before=second[-1])
    assert first + second + third == [calls[name] for name in ALL_NEWEST_FIRST]
    assert listed(db_session, now, before=third[-1]) == []


def test_paging_splits_calls_that_started_at_the_same_moment(
    db_session: Session, now: datetime
) -> None:
    moment = now - timedelta(minutes=5)
    sids = [store_call(db_session, n, started=moment) for n in (7, 9, 8)]
    order = sorted(sids, reverse=True)  # same start: by CallSid, descending
    assert listed(db_session, now, limit=1) == order[:1]
    assert listed(db_session, now, limit=1, before=order[0]) == [order[1]]
    assert listed(db_session, now, limit=5, before=order[1]) == [order[2]]


def test_list_refuses_an_unknown_outcome_cursor_or_limit(
    db_session: Session, calls: dict[str, str], now: datetime
) -> None:
    with pytest.raises(ValueError, match="outcome must be one of"):
        listed(db_session, now, outcome="hung_up")
    with pytest.raises(ValueError, match=re.escape(f"no call '{sid(99)}' to page from")):
        listed(db_session, now, before=sid(99))
    with pytest.raises(ValueError, match="limit must be from 1"):
        listed(db_session, now, limit=0)


# --- the JSON shape and the words of each step ------------------------------------------------


def test_call_as_dict_holds_the_summary_and_the_steps_in_order(
    db_session: Session, calls: dict[str, str], now: datetime
) -> None:
    row = get_call(db_session, calls["recent_transferred"])
    assert row is not None
    data = call_as_dict(row, steps=True)
    assert data["call_sid"] == calls["recent_transferred"]
    assert (data["flow"], data["version"], data["language"]) == ("support", "v1", "en")
    assert data["outcome"] == "transferred"
    assert data["verification"] == "digits"
    assert data["methods"] == ["account_digits"]
    assert data["caller"] == JANE_MASKED
    assert data["duration"] == 95
    assert data["last_node"] == "agent"
    started = datetime.fromisoformat(data["started_at"])
    assert started.tzinfo is not None
    assert abs(started - (now - timedelta(minutes=10))) < timedelta(seconds=1)
    assert datetime.fromisoformat(data["ended_at"]) - started == timedelta(seconds=95)
    written = steps_for("transferred", verified=True)
    assert data["steps"][:-1] == written
    assert data["steps"][-1] == {
        "at": 95000,
        "event": "end",
        "status": "completed",
        "duration": 95,
        "outcome": "transferred",
    }
    assert "steps" not in call_as_dict(row, steps=False)


@pytest.mark.parametrize(
    ("step", "text"),
    [
        (
            {"at": 0, "event": "enter", "node": "main_menu", "type": "menu"},
            "0.0s  entered main_menu (menu)",
        ),
        (
            {
                "at": 3200,
                "event": "input",
                "node": "m",
                "input": "keys",
                "keys": 1,
                "result": "accepted",
            },
            "3.2s  keys: 1 key, accepted",
        ),
        (
            {
                "at": 9000,
                "event": "input",
                "node": "m",
                "input": "keys",
                "keys": 8,
                "result": "invalid",
            },
            "9.0s  keys: 8 keys, invalid",
        ),
        (
            {"at": 0, "event": "input", "input": "none", "keys": 0, "result": "no_input"},
            "0.0s  no input, no_input",
        ),
        (
            {"at": 0, "event": "input", "input": "repeat", "keys": 1, "result": "reprompt"},
            "0.0s  * (repeat), reprompt",
        ),
        (
            {"at": 0, "event": "exit", "node": "m", "exit": "options.1", "to": "account"},
            "0.0s  exit options.1 → account",
        ),
        (
            {"at": 0, "event": "code_sent", "channel": "sms", "result": "sent"},
            "0.0s  code sent by sms: sent",
        ),
        ({"at": 0, "event": "verified", "method": "code_sms"}, "0.0s  verified by code_sms"),
        (
            {
                "at": 0,
                "event": "transfer",
                "node": "a",
                "target": "queue",
                "queue": "support",
                "reason": "verified",
            },
            "0.0s  transfer to queue support (reason: verified)",
        ),
        ({"at": 0, "event": "transfer", "target": "number"}, "0.0s  transfer to number"),
        ({"at": 0, "event": "hangup", "node": "goodbye"}, "0.0s  hung up at goodbye"),
        (
            {
                "at": 95000,
                "event": "end",
                "status": "completed",
                "duration": 95,
                "outcome": "transferred",
            },
            "95.0s  call ended: completed, 95 s, transferred",
        ),
        ({"at": 0, "event": "novel", "node": "x"}, "0.0s  novel: node=x"),
    ],
)
def test_describe_step(step: dict[str, Any], text: str) -> None:
    assert describe_step(step) == text
    assert step_text(step) == text.split("  ", 1)[1]


def test_every_event_has_its_own_words() -> None:
    """An event without words would fall back to listing its fields (here a made-up one)."""
    for event in timeline.EVENTS:
        assert "unlisted" not in step_text({"at": 0, "event": event, "unlisted": 1}), event
    assert step_text({"at": 0, "event": "novel", "unlisted": 1}) == "novel: unlisted=1"


# --- ivr calls list ----------------------------------------------------------------------------


def test_list_prints_a_table_newest_first_with_masked_callers(
    runner: FlaskCliRunner, calls: dict[str, str]
) -> None:
    result = invoke(runner, "list")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == [
        "STARTED",
        "(UTC)",
        "CALLSID",
        "CALLER",
        "FLOW@VERSION",
        "VERIFIED",
        "OUTCOME",
        "DURATION",
        "LAST",
        "NODE",
    ]
    rows = lines[1:]
    assert [line.split()[2] for line in rows] == [calls[name] for name in ALL_NEWEST_FIRST]
    first = rows[0].split()
    assert first[3:] == [
        JANE_MASKED,
        "support@v1",
        "digits",
        "(account_digits)",
        "transferred",
        "95s",
        "agent",
    ]
    assert rows[1].split()[3:] == [JANE_MASKED, "support@v2", "none", "abandoned", "95s", "account"]
    assert JANE not in result.output


def test_list_filters_from_the_command_line(runner: FlaskCliRunner, calls: dict[str, str]) -> None:
    result = invoke(runner, "list", "--since", "1h", "--verified", "no", "--json")
    assert result.exit_code == 0, result.output
    assert [item["call_sid"] for item in json.loads(result.output)] == [
        calls["half_hour_abandoned"]
    ]
    result = invoke(runner, "list", "--outcome", "transferred", "--flow", "support", "--json")
    assert [item["call_sid"] for item in json.loads(result.output)] == [
        calls["recent_transferred"],
        calls["week_transferred"],
    ]


def test_list_pages_with_before(runner: FlaskCliRunner, calls: dict[str, str]) -> None:
    result = invoke(runner, "list", "--limit", "2")
    assert result.exit_code == 0, result.output
    hint = result.output.splitlines()[-1]
    assert hint == f"(first 2; older ones: --before {calls['half_hour_abandoned']})"
    result = invoke(
        runner, "list", "--limit", "2", "--before", calls["half_hour_abandoned"], "--json"
    )
    assert [item["call_sid"] for item in json.loads(result.output)] == [
        calls["two_hours_ended"],
        calls["three_days_abandoned"],
    ]


def test_list_json_is_a_list_of_call_objects(runner: FlaskCliRunner, calls: dict[str, str]) -> None:
    result = invoke(runner, "list", "--json", "--outcome", "ended")
    assert result.exit_code == 0, result.output
    items = json.loads(result.output)
    assert len(items) == 1
    assert items[0]["call_sid"] == calls["two_hours_ended"]
    assert items[0]["outcome"] == "ended"
    assert items[0]["caller"] == JANE_MASKED
    assert items[0]["last_node"] == "goodbye"
    assert "steps" not in items[0]


def test_list_says_when_nothing_matches(runner: FlaskCliRunner, calls: dict[str, str]) -> None:
    result = invoke(runner, "list", "--flow", "nonesuch")
    assert (result.exit_code, result.output) == (0, "no calls match\n")
    result = invoke(runner, "list", "--flow", "nonesuch", "--json")
    assert (result.exit_code, json.loads(result.output)) == (0, [])


def test_list_with_no_calls_at_all(runner: FlaskCliRunner) -> None:
    result = invoke(runner, "list")
    assert (result.exit_code, result.output) == (0, "no calls recorded yet\n")


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        (["--since", "1x"], "'1x' is not a period"),
        (["--since", "0h"], "'0h' is not a period"),
        (["--outcome", "hung_up"], "'hung_up' is not one of"),
        (["--verified", "maybe"], "'maybe' is not one of"),
        (["--limit", "0"], "0 is not in the range"),
        (["--before", "CA123"], "'CA123' is not a CallSid"),
    ],
)
def test_list_refuses_bad_options_in_one_line(
    runner: FlaskCliRunner, args: list[str], mentions: str
) -> None:
    assert_one_line_error(invoke(runner, "list", *args), code=2, mentions=mentions)


def test_list_refuses_a_cursor_that_names_no_call(
    runner: FlaskCliRunner, calls: dict[str, str]
) -> None:
    result = invoke(runner, "list", "--before", sid(99))
    assert_one_line_error(result, code=1, mentions=f"no call '{sid(99)}' to page from")


# --- ivr calls show ----------------------------------------------------------------------------


def test_show_prints_the_summary_then_one_step_per_line(
    runner: FlaskCliRunner, calls: dict[str, str]
) -> None:
    result = invoke(runner, "show", calls["recent_transferred"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["call:", calls["recent_transferred"]]
    summary = dict(line.split(":", 1) for line in lines[: lines.index("timeline (12 steps):")])
    assert summary["caller"].strip() == f"{JANE_MASKED} (one_account)"
    assert summary["verification"].strip() == "digits (account_digits)"
    assert summary["status"].strip() == "completed, transferred"
    assert summary["duration"].strip() == "95 s (9.1 s in the IVR)"
    timeline_lines = [line.strip() for line in lines[lines.index("timeline (12 steps):") + 1 :]]
    assert timeline_lines == [
        "0.0s  call started: support@v1 (en)",
        "0.0s  entered main_menu (menu)",
        "3.2s  keys: 1 key, accepted",
        "3.2s  exit options.1 → account",
        "3.2s  entered account (account_digits)",
        "9.0s  keys: 8 keys, accepted",
        "9.0s  verified by account_digits",
        "9.0s  exit ok → agent",
        "9.1s  entered agent (transfer)",
        "9.1s  transfer to queue support (reason: verified)",
        "60.0s  transfer ended: completed",
        "95.0s  call ended: completed, 95 s, transferred",
    ]
    assert JANE not in result.output


def test_show_json_is_the_call_with_its_steps_in_order(
    runner: FlaskCliRunner, calls: dict[str, str]
) -> None:
    result = invoke(runner, "show", calls["two_hours_ended"], "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["call_sid"] == calls["two_hours_ended"]
    assert data["outcome"] == "ended"
    assert [item["event"] for item in data["steps"]] == [
        "start",
        "enter",
        "input",
        "exit",
        "enter",
        "input",
        "enter",
        "hangup",
        "end",
    ]
    assert data["steps"][2] == {
        "at": 3200,
        "event": "input",
        "node": "main_menu",
        "input": "keys",
        "keys": 1,
        "result": "accepted",
    }
    assert data["steps"][5] == {
        "at": 9000,
        "event": "input",
        "node": "account",
        "input": "none",
        "keys": 0,
        "result": "reprompt",
    }
    assert data["steps"][-1]["outcome"] == "ended"
    assert [item["at"] for item in data["steps"]] == sorted(item["at"] for item in data["steps"])


def test_show_refuses_a_malformed_callsid(runner: FlaskCliRunner) -> None:
    for bad in ("CA123", "XX" + "0" * 32, "CA" + "g" * 32, sid(1) + "0"):
        assert_one_line_error(invoke(runner, "show", bad), code=2, mentions="is not a CallSid")


def test_show_says_when_the_call_is_unknown(runner: FlaskCliRunner, calls: dict[str, str]) -> None:
    result = invoke(runner, "show", sid(99))
    assert_one_line_error(result, code=1, mentions=f"no call {sid(99)} in the call history")
    assert "kept 90 days" in result.output


# --- a call played through the simulator ---------------------------------------------------------


def is_subsequence(wanted: list[tuple[Any, ...]], steps: list[tuple[Any, ...]]) -> bool:
    remaining = iter(steps)
    return all(item in remaining for item in wanted)


def test_a_simulated_call_shows_the_steps_the_caller_took_and_no_secret(
    app: Flask, phone: Phone, runner: FlaskCliRunner, outbox_path: Path
) -> None:
    """A family line keys the last 4 (shared), the full account number, the texted code,
    then 2 for an agent: the timeline has each step, counts the keys, holds none."""
    add_account(app, "Jane Doe", JANE, "10004321")
    add_account(app, "John Doe", JANE, "20004321")
    result = phone.call(JANE, ["1", "4321", "20004321#", "@code", "2"])

    shown = invoke(runner, "show", result.call_sid, "--json")
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)
    assert data["call_sid"] == result.call_sid
    assert (data["outcome"], data["verification"]) == ("transferred", "code")
    assert data["methods"] == ["account_number", "code_sms"]
    assert data["caller"] == JANE_MASKED
    steps = data["steps"]
    assert steps[0]["event"] == "start" and steps[-1]["event"] == "end"
    assert [item["at"] for item in steps] == sorted(item["at"] for item in steps)
    inputs = [(item["node"], item["keys"]) for item in steps if item["event"] == "input"]
    assert inputs == [
        ("language", 1),
        ("last4_family", 4),
        ("account_number", 8),
        ("enter_code", 6),
        ("menu", 1),
    ]
    assert all(item["input"] == "keys" for item in steps if item["event"] == "input")
    projected = [
        (item["event"], item.get("node"), item.get("exit") or item.get("result")) for item in steps
    ]
    assert is_subsequence(
        [
            ("enter", "last4_family", None),
            ("input", "last4_family", "accepted"),
            ("exit", "last4_family", "ambiguous"),
            ("input", "account_number", "accepted"),
            ("verified", None, None),
            ("code_sent", None, "sent"),
            ("code_checked", None, "ok"),
            ("enter", "menu", None),
            ("input", "menu", "accepted"),
            ("exit", "menu", "options.2"),
            ("transfer", "agent_verified", None),
            ("transfer_end", "agent_verified", None),
            ("end", None, None),
        ],
        projected,
    ), projected
    exit_to_agent = next(item for item in steps if item.get("exit") == "options.2")
    assert exit_to_agent["to"] == "agent_verified"
    assert steps[-1]["outcome"] == "transferred"

    # Nothing keyed or sent shows: not the account numbers, the code, nor Jane's number.
    codes = sent_codes(app)
    assert len(codes) == 1
    secrets = secrets_of(outbox_path, [result]) | {"10004321", JANE[1:], *codes}
    assert {"4321", "20004321", JANE} <= secrets
    for key in ("call_sid", "started_at", "ended_at", "version"):  # opaque ids and times
        data.pop(key)
    for item in steps:
        item.pop("at")
    text = json.dumps(data, ensure_ascii=False)
    assert "last4_family" in text and "account_number" in text
    assert not [secret for secret in secrets if secret in text]
    human = invoke(runner, "show", result.call_sid).output
    assert not [secret for secret in secrets if secret in human.replace(result.call_sid, "")]


def test_a_caller_who_hangs_up_is_listed_as_abandoned_where_they_left(
    app: Flask, phone: Phone, runner: FlaskCliRunner
) -> None:
    add_account(app, "Jane Doe", JANE, "10004321")
    result = phone.call(JANE, ["1"])  # then hangs up at the last-4 prompt

    listed_now = invoke(runner, "list", "--outcome", "abandoned", "--since", "1h", "--json")
    assert listed_now.exit_code == 0, listed_now.output
    [call] = json.loads(listed_now.output)
    assert call["call_sid"] == result.call_sid
    assert call["verification"] == "none"
    assert call["last_node"] == "last4"
    assert invoke(runner, "list", "--outcome", "transferred", "--json").output.strip() == "[]"
