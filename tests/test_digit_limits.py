"""Account digits limited per account across calls (issue 11, item 5), end to end.

Calls are played by the simulator over signed webhooks into a real app, on real
Redis and SQL where the run has them. Wrong entries count across calls; at the
limit the next caller goes to an agent without hearing the digits prompt, the
whisper and the agent page say "account digits locked", every wrong entry is
audited once and no audit row holds the digits keyed in.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from agent_kit import add_user, sign_in
from caller import Phone
from flask import Flask
from kit import (
    AGENT,
    JANE_PHONE,
    Clock,
    add_account,
    call_ended_rows,
    checked_logs,
    greeting,
    text,
    unverified_whisper,
)
from sqlalchemy import select

from ivr.errors import StorageUnavailable
from ivr.flow.loader import check_definitions
from ivr.storage import db, kv
from ivr.storage.models import AuditEvent
from ivr.verification import digits
from ivr.verification.digits import WINDOW, DigitFailures
from ivr.voice import services

ROOT = Path(__file__).resolve().parent.parent
FAMILY_PHONE = "+14155550122"
STRANGER = "+14155550199"  # no account on file: asked for the full account number
CLOSED_REDIS = "redis://127.0.0.1:1/0"
# Wrong last-4 guesses sharing no four-digit run with the masked caller, the ids, or counts.
GUESSES = ["5837", "6948", "7259", "8364", "9475", "3586", "4697", "5738", "6849", "7953"]
WRONG_NUMBERS = ["58376948", "72598364", "94753586", "46975738"]
ACTIONS = (digits.FAILED, digits.LOCKED)


@pytest.fixture(autouse=True)
def nothing_secret_is_logged(caplog: pytest.LogCaptureFixture, outbox_path: Path) -> Iterator[None]:
    """Every call here runs with all logging captured; no digits or numbers may appear."""
    yield from checked_logs(caplog, outbox_path)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The clock of the digit counters the webhooks build (one per request)."""
    moved = Clock()
    real = services.DigitFailures

    def clocked(*args: Any, **kwargs: Any) -> DigitFailures:
        return real(*args, **kwargs, clock=moved)

    monkeypatch.setattr(services, "DigitFailures", clocked)
    return moved


def digit_audits(app: Flask) -> list[AuditEvent]:
    with app.app_context():
        query = select(AuditEvent).where(AuditEvent.action.in_(ACTIONS)).order_by(AuditEvent.id)
        return list(db.session().scalars(query))


def all_audit_json(app: Flask) -> list[str]:
    """Every audit row (of any action) as the JSON of its columns."""
    with app.app_context():
        rows = db.session().scalars(select(AuditEvent)).all()
        return [
            json.dumps(
                {"action": r.action, "actor": r.actor, "details": r.details},
                ensure_ascii=False,
            )
            for r in rows
        ]


def counts(app: Flask, account_ids: list[int], caller: str | None = None) -> list[int]:
    with app.app_context():
        counter = DigitFailures(kv.client(), db.session(), "test-secret-key", 10)
        return counter.counts(account_ids, caller)


def asked_for_digits(app: Flask, heard: list[str]) -> bool:
    prompts = ("enter_last4", "enter_last4_family", "enter_account_number")
    return any(text(app, key) in heard for key in prompts)


LOCKED_HEARD = "connecting_unverified"


def test_the_next_caller_after_ten_wrong_entries_goes_to_an_agent_unasked(
    app: Flask, phone: Phone
) -> None:
    """Ten wrong last-4 entries over four calls (the default limit): the tenth sends that
    caller on at once, the next call is never asked, each entry is audited once."""
    jane = add_account(app, "Jane Doe", JANE_PHONE, "10004321")
    sids = []
    for keys in [GUESSES[0:3], GUESSES[3:6], GUESSES[6:9]]:
        result = phone.call(JANE_PHONE, ["1", *keys])
        assert result.heard("caller")[-1] == text(app, LOCKED_HEARD)
        sids += [result.call_sid] * 3
    tenth = phone.call(JANE_PHONE, ["1", GUESSES[9]])
    assert tenth.heard("caller") == [
        *greeting(app),
        text(app, "enter_last4"),
        text(app, LOCKED_HEARD),  # not the retry prompt: the limit is reached
    ]

    eleventh = phone.call(JANE_PHONE, ["1", "4321"])  # the right digits, never asked for

    assert eleventh.heard("caller") == [*greeting(app), text(app, LOCKED_HEARD)]
    assert eleventh.transfers == [f"dial number {AGENT}"]
    assert eleventh.heard("agent") == [
        unverified_whisper(app, "verification_failed", ["digits_locked"]),
        text(app, "whisper_accept"),
    ]
    assert "account digits locked" in eleventh.heard("agent")[0].lower()
    assert "Jane" not in eleventh.heard("agent")[0]

    rows = digit_audits(app)
    assert [row.action for row in rows] == [digits.FAILED] * 9 + [digits.LOCKED]
    assert [row.details["count"] for row in rows] == list(range(1, 11))
    assert all(row.account_id == jane and row.actor == "caller" for row in rows)
    assert all(row.details["caller"] == "+1415•••0100" for row in rows)
    assert all(row.details["limit"] == 10 and row.details["mode"] == "last4" for row in rows)
    assert [row.call_sid for row in rows] == [*sids, tenth.call_sid]
    for row_json in all_audit_json(app):
        for entered in [*GUESSES, "4321", "10004321"]:
            assert entered not in row_json, row_json
    assert counts(app, [jane]) == [10]


def test_the_agent_page_shows_account_digits_locked(make_app: Any) -> None:
    app = make_app(IVR_DIGITS_MAX_FAILURES="2")
    phone = Phone(app)
    add_account(app, "Jane Doe", JANE_PHONE, "10004321")
    add_user(app, target=AGENT)
    client = app.test_client()
    assert sign_in(client).status_code == 303
    failed = phone.call(JANE_PHONE, ["1", GUESSES[0], "", ""])  # one wrong, then silence
    phone.call(JANE_PHONE, ["1", GUESSES[1]])  # the second: locked

    locked = phone.call(JANE_PHONE, ["1"])

    pop = client.get(f"/agent/calls/{locked.call_sid}").get_data(as_text=True)
    assert 'data-testid="digits-locked"' in pop
    assert "Account digits locked" in pop
    assert " ".join(text(app, "whisper_flag_digits_locked").split()) in " ".join(pop.split())
    assert "digits locked" in pop.split("Not verified because", 1)[1][:80]
    assert "Jane Doe" not in pop
    # A call that merely failed its digits shows no such notice.
    other = client.get(f"/agent/calls/{failed.call_sid}").get_data(as_text=True)
    assert "Not verified because" in other
    assert 'data-testid="digits-locked"' not in other and "digits locked" not in other


def test_the_lock_lifts_as_the_wrong_entries_leave_the_24_hour_window(
    make_app: Any, clock: Clock
) -> None:
    app = make_app(IVR_DIGITS_MAX_FAILURES="3")
    phone = Phone(app)
    add_account(app, "Jane Doe", JANE_PHONE, "10004321")
    phone.call(JANE_PHONE, ["1", *GUESSES[:3]])

    clock.ahead = WINDOW - 60  # a minute short of a day: still locked
    assert not asked_for_digits(app, phone.call(JANE_PHONE, ["1"]).heard("caller"))

    clock.ahead = WINDOW + 1
    result = phone.call(JANE_PHONE, ["1", "4321"])
    assert result.heard("caller")[-2:] == [text(app, "code_sent_sms"), text(app, "enter_code")]


def test_a_correct_entry_does_not_reset_the_count(make_app: Any) -> None:
    """Two wrong, then the right digits and a code: the third wrong entry still locks."""
    app = make_app(IVR_DIGITS_MAX_FAILURES="3")
    phone = Phone(app)
    jane = add_account(app, "Jane Doe", JANE_PHONE, "10004321")
    phone.call(JANE_PHONE, ["1", GUESSES[0], GUESSES[1], "4321", "@code", "3"])
    assert counts(app, [jane]) == [2]

    result = phone.call(JANE_PHONE, ["1", GUESSES[2]])

    assert result.heard("caller")[-1] == text(app, LOCKED_HEARD)
    assert [row.action for row in digit_audits(app)][-1] == digits.LOCKED


def test_a_family_line_counts_every_candidate(make_app: Any) -> None:
    app = make_app(IVR_DIGITS_MAX_FAILURES="3")
    phone = Phone(app)
    ana = add_account(app, "Ana Lopez", FAMILY_PHONE, "30001111")
    luis = add_account(app, "Luis Lopez", FAMILY_PHONE, "30002222")

    phone.call(FAMILY_PHONE, ["1", *GUESSES[:3]])

    assert counts(app, [ana, luis]) == [3, 3]
    rows = digit_audits(app)
    assert len(rows) == 3  # one record per wrong entry, whatever the number of candidates
    assert all(row.account_id is None for row in rows)
    assert [row.details["counts"] for row in rows] == [
        {str(ana): n, str(luis): n} for n in (1, 2, 3)
    ]
    assert rows[-1].action == digits.LOCKED and rows[-1].details["accounts"] == [ana, luis]
    result = phone.call(FAMILY_PHONE, ["1", "2222"])
    assert not asked_for_digits(app, result.heard("caller"))


def test_one_locked_account_on_a_family_line_stops_the_asking(make_app: Any) -> None:
    """Luis's digits were guessed at from another number of his: the family line is not
    asked either, since its four digits would be compared with his account too."""
    app = make_app(IVR_DIGITS_MAX_FAILURES="3")
    phone = Phone(app)
    add_account(app, "Ana Lopez", FAMILY_PHONE, "30001111")
    luis = add_account(app, "Luis Lopez", FAMILY_PHONE, "30002222")
    with app.app_context():
        counter = DigitFailures(kv.client(), db.session(), "test-secret-key", 3)
        for _ in range(3):
            counter.failed("CA" + "9" * 32, [luis], "+14155550177", "last4")

    result = phone.call(FAMILY_PHONE, ["1", "1111"])

    assert result.heard("caller") == [*greeting(app), text(app, LOCKED_HEARD)]


def test_full_account_numbers_count_per_calling_number(make_app: Any) -> None:
    app = make_app(IVR_DIGITS_MAX_FAILURES="3")
    phone = Phone(app)
    add_account(app, "Jane Doe", JANE_PHONE, "10004321")
    first = phone.call(STRANGER, ["1", *WRONG_NUMBERS[:3]])
    assert first.heard("caller")[-2:] == [
        text(app, "enter_account_number_retry"),
        text(app, LOCKED_HEARD),
    ]
    rows = digit_audits(app)
    assert [row.details["counted"] for row in rows] == ["caller"] * 3
    assert all(row.account_id is None and row.details["mode"] == "account_number" for row in rows)
    assert counts(app, [], STRANGER) == [3]

    again = phone.call(STRANGER, ["1", "10004321"])  # the right number, never asked for
    assert again.heard("caller") == [*greeting(app), text(app, LOCKED_HEARD)]
    other = phone.call("+14155550188", ["1", "10004321"])  # another number is still asked
    assert other.heard("caller")[-2:] == [text(app, "code_sent_sms"), text(app, "enter_code")]
    for row_json in all_audit_json(app):
        assert not any(number in row_json for number in [*WRONG_NUMBERS, "10004321"])


def test_withheld_callers_are_audited_but_have_nothing_to_lock(make_app: Any) -> None:
    app = make_app(IVR_DIGITS_MAX_FAILURES="2")
    phone = Phone(app)
    add_account(app, "Jane Doe", JANE_PHONE, "10004321")

    phone.call("anonymous", ["1", *WRONG_NUMBERS[:3]])
    result = phone.call("anonymous", ["1", WRONG_NUMBERS[3]])

    assert result.heard("caller")[-2:] == [
        text(app, "enter_account_number"),
        text(app, "enter_account_number_retry"),
    ]
    rows = digit_audits(app)
    assert [row.details["counted"] for row in rows] == ["nothing"] * 4
    assert all(row.details["caller"] == "withheld" for row in rows)
    assert all(row.details["count"] is None and row.account_id is None for row in rows)


def test_the_right_number_of_a_locked_account_is_refused(make_app: Any) -> None:
    """Jane's last four were guessed at on her caller ID; her full number from a withheld
    line no longer verifies by phone either."""
    app = make_app(IVR_DIGITS_MAX_FAILURES="3")
    phone = Phone(app)
    add_account(app, "Jane Doe", JANE_PHONE, "10004321")
    phone.call(JANE_PHONE, ["1", *GUESSES[:3]])

    result = phone.call("anonymous", ["1", "10004321"])

    assert result.heard("caller")[-2:] == [
        text(app, "enter_account_number"),
        text(app, LOCKED_HEARD),
    ]
    assert "account digits locked" in result.heard("agent")[0].lower()
    assert "Jane" not in result.heard("agent")[0]


def test_redis_down_at_the_digit_limits_fails_closed_to_an_agent(
    app: Flask, phone: Phone, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The counters unreachable (the call state still there): the right digits verify
    nothing; the caller hears the apology and reaches an agent, unverified."""
    add_account(app, "Jane Doe", JANE_PHONE, "10004321")
    closed = redis.Redis.from_url(CLOSED_REDIS, socket_timeout=0.5, socket_connect_timeout=0.5)
    real = services.DigitFailures

    def unreachable(_client: Any, *args: Any, **kwargs: Any) -> DigitFailures:
        return real(closed, *args, **kwargs)

    monkeypatch.setattr(services, "DigitFailures", unreachable)

    result = phone.call(JANE_PHONE, ["1", "4321"])

    assert result.heard("caller") == [*greeting(app), text(app, "error_apology")]
    assert result.transfers == [f"dial number {AGENT}"]
    (row,) = call_ended_rows(app, result.call_sid)
    assert row.details["verification"] == "none"
    with app.app_context():
        counter = DigitFailures(closed, db.session(), "test-secret-key", 3)
        with pytest.raises(StorageUnavailable, match="redis unavailable"):
            counter.locked([1], None)
    assert digit_audits(app) == []


def test_the_locked_exit_is_validated(tmp_path: Path) -> None:
    """The locked exit may not lead back to its node, nor into a loop that never asks."""
    flow = (ROOT / "flows" / "support.yaml").read_text()
    own = (
        "    invalid: last4\n    no_input: agent_unverified\n    too_many_tries: agent_unverified\n"
    )
    assert own + "    locked: agent_unverified" in flow
    cases = {
        "itself": flow.replace(own + "    locked: agent_unverified", own + "    locked: last4", 1),
        "loop": flow.replace(own + "    locked: agent_unverified", own + "    locked: note", 1)
        + "\n  note:\n    type: say\n    prompt: welcome\n    next: last4\n",
    }
    found = {}
    for name, content in cases.items():
        folder = tmp_path / name
        folder.mkdir()
        (folder / "support.yaml").write_text(content)
        _, problems = check_definitions(folder, ROOT / "prompts", "US")
        found[name] = [(p.where, p.field, p.message) for p in problems]
    assert ("last4", "locked", "must lead away from the node (it would retry forever)") in found[
        "itself"
    ]
    assert any(
        where == "last4" and "never asks the caller anything" in message
        for where, _, message in found["loop"]
    ), found["loop"]
