"""Changing the phone number on file, confirmed by a code call-back (journey 5), end to end.

The simulator plays the caller's call and answers the call-back the service places
(through the local outbox) by following its URL, as Twilio would. Both modes are
covered — the caller on another phone keys in the code the call-back reads, or the
caller on the new phone hears the code, hangs up and keys it into the call-back —
and every failure path is checked to leave the old number in place.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import phonenumbers
import pytest
from caller import Phone, sent
from flask import Flask
from flask.testing import FlaskCliRunner
from kit import (
    JANE_PHONE,
    Clock,
    add_account,
    checked_logs,
    post,
    read_out,
    says,
    text,
    twiml,
    unverified_whisper,
    verified_whisper,
)
from sqlalchemy import select

from ivr.numberchange import onfile
from ivr.storage import db, keys
from ivr.storage.models import Account, AuditEvent

JANE_NUMBER = "10004321"
JANE_EMAIL = "jane@example.com"
NEW_PHONE = "+14155550199"
NEW_KEYED = "4155550199#"
VERIFIED = ["1", "4321", "@code"]  # English, the last four digits, the texted code
CHANGE = ["1", NEW_KEYED, "1"]  # menu: change number; the new number; confirm


@pytest.fixture(autouse=True)
def nothing_secret_is_logged(caplog: pytest.LogCaptureFixture, outbox_path: Path) -> Iterator[None]:
    yield from checked_logs(caplog, outbox_path)


@pytest.fixture
def jane(app: Flask) -> int:
    return add_account(app, "Jane Doe", JANE_PHONE, JANE_NUMBER, JANE_EMAIL)


# --- helpers -----------------------------------------------------------------------------


def phone_on_file(app: Flask, account_id: int) -> str:
    with app.app_context():
        account = db.session().get(Account, account_id)
        assert account is not None
        return account.phone.e164


def audit_rows(app: Flask, action: str) -> list[AuditEvent]:
    with app.app_context():
        query = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        return list(db.session().scalars(query))


def placed_calls(app: Flask) -> list[Any]:
    return [message for message in sent(app) if message.channel == "call"]


def spoken_new_number(app: Flask) -> str:
    return text(app, "confirm_new_number", new_number="4 1 5, 5 5 5, 0 1 9 9")


def after(heard: list[str], prompt: str) -> list[str]:
    """What was heard after the first time `prompt` was."""
    return heard[heard.index(prompt) + 1 :]


def assert_unchanged(app: Flask, account_id: int) -> None:
    assert phone_on_file(app, account_id) == JANE_PHONE
    assert not audit_rows(app, "number.changed")
    assert not [m for m in sent(app) if m.purpose == "number_changed"]


# --- mode A: the caller stays on the line ---------------------------------------------------


def test_caller_on_another_phone_confirms_with_the_code_the_call_back_reads(
    app: Flask, phone: Phone, jane: int, runner: FlaskCliRunner
) -> None:
    result = phone.call(JANE_PHONE, [*VERIFIED, *CHANGE, "@code", "3"], callee_keys=["1"])

    heard = result.heard("caller")
    assert after(heard, text(app, "main_menu", first_name="Jane"))[:4] == [
        text(app, "enter_new_number"),
        spoken_new_number(app),
        text(app, "callback_calling"),
        text(app, "enter_callback_code"),
    ]
    assert after(heard, text(app, "enter_callback_code")) == [
        text(app, "number_changed"),
        text(app, "main_menu", first_name="Jane"),
        text(app, "goodbye"),
    ]
    (call,) = placed_calls(app)
    assert (call.to, call.purpose, call.call_sid) == (NEW_PHONE, "confirm_number", result.call_sid)
    code = [e.text for e in result.events if e.kind == "keys" and e.who == "caller"][-2]
    assert result.heard("callee") == read_out(app, code)
    assert phone_on_file(app, jane) == NEW_PHONE
    # The old number and the mailbox on file are told, with how to report fraud.
    notices = [m for m in sent(app) if m.purpose == "number_changed"]
    values = {"last4": "0199", "support_number": app.config["IVR_SETTINGS"].support_number}
    assert [(m.channel, m.to, m.body) for m in notices] == [
        ("sms", JANE_PHONE, text(app, "message_number_changed_sms", **values)),
        ("email", JANE_EMAIL, text(app, "message_number_changed_email", **values)),
    ]
    # Audited with masked numbers only.
    (started,) = audit_rows(app, "number_change.started")
    (changed,) = audit_rows(app, "number.changed")
    for row in (started, changed):
        assert row.call_sid == result.call_sid and row.account_id == jane
        assert JANE_PHONE not in repr(row.details) and NEW_PHONE not in repr(row.details)
    assert started.details["mode"] == "callback_on_line"
    # The operator's view: the new number, its history and the cooling-off flag.
    shown = runner.invoke(args=["customers", "show", JANE_NUMBER])
    assert shown.exit_code == 0, shown.output
    assert "phone:" in shown.stdout and NEW_PHONE in shown.stdout
    assert "number changed recently" in shown.stdout
    assert JANE_PHONE in shown.stdout  # the history names the old number


# --- mode B: the caller is on the new phone ---------------------------------------------------


def test_caller_on_the_new_phone_hears_the_code_and_keys_it_into_the_call_back(
    app: Flask, phone: Phone, jane: int
) -> None:
    keys_ = ["1", f"{JANE_NUMBER}#", "@code", "1", NEW_KEYED, "1"]

    result = phone.call(NEW_PHONE, keys_, callee_keys=["@code"])

    heard = result.heard("caller")
    assert heard[-1] == text(app, "callback_hang_up")
    read = heard[-2]
    code = "".join(ch for ch in read.split("{")[0] if ch.isdigit())[:6]
    assert read == text(app, "read_code_new_number", code_digits=", ".join(code))
    assert result.heard("callee") == [
        text(app, "callback_enter_code"),
        text(app, "callback_number_changed"),
    ]
    (call,) = placed_calls(app)
    assert call.to == NEW_PHONE and call.purpose == "confirm_number"
    assert phone_on_file(app, jane) == NEW_PHONE
    (changed,) = audit_rows(app, "number.changed")
    assert changed.details["mode"] == "callback_after_call"
    assert [m.to for m in sent(app) if m.purpose == "number_changed"] == [JANE_PHONE, JANE_EMAIL]


def test_mode_b_wrong_codes_on_the_call_back_change_nothing(
    app: Flask, phone: Phone, jane: int
) -> None:
    keys_ = ["1", f"{JANE_NUMBER}#", "@code", "1", NEW_KEYED, "1"]

    result = phone.call(NEW_PHONE, keys_, callee_keys=["@wrong", "@wrong", "@wrong"])

    assert result.heard("callee") == [
        text(app, "callback_enter_code"),
        text(app, "callback_enter_code_retry"),
        text(app, "callback_enter_code_retry"),
        text(app, "callback_not_changed"),
    ]
    assert_unchanged(app, jane)
    (failed,) = audit_rows(app, "number_change.failed")
    assert failed.details["reason"] == "code_wrong"


@pytest.mark.parametrize("callee", ["no-answer", "busy", "failed", "voicemail"])
def test_mode_b_call_back_not_answered_changes_nothing(
    app: Flask, phone: Phone, jane: int, callee: str
) -> None:
    keys_ = ["1", f"{JANE_NUMBER}#", "@code", "1", NEW_KEYED, "1"]

    result = phone.call(NEW_PHONE, keys_, callee=callee)

    assert_unchanged(app, jane)
    assert not [s for s in result.heard("callee") if "code is" in s]
    (failed,) = audit_rows(app, "number_change.failed")
    reasons = {"no-answer": "not_answered", "voicemail": "no_code_entered"}
    assert failed.details["reason"] == reasons.get(callee, callee)
    assert failed.details["new"] == "+1415•••0199"


# --- failures of the call-back while the caller waits (mode A) ---------------------------------


@pytest.mark.parametrize(
    ("callee", "prompt"),
    [
        ("no-answer", "callback_not_answered"),
        ("voicemail", "callback_not_answered"),
        ("busy", "callback_busy"),
        ("failed", "callback_failed"),
    ],
)
def test_an_unanswered_call_back_is_explained_and_nothing_changes(
    app: Flask, phone: Phone, jane: int, callee: str, prompt: str
) -> None:
    result = phone.call(JANE_PHONE, [*VERIFIED, *CHANGE, "", "9", "3"], callee=callee)

    assert after(result.heard("caller"), text(app, "enter_callback_code")) == [
        text(app, prompt),
        text(app, "change_trouble"),
        text(app, "main_menu", first_name="Jane"),
        text(app, "goodbye"),
    ]
    assert_unchanged(app, jane)
    (failed,) = audit_rows(app, "number_change.failed")
    assert failed.details["reason"] == {"voicemail": "not_answered"}.get(
        callee, prompt.removeprefix("callback_")
    )


def test_three_wrong_codes_change_nothing(app: Flask, phone: Phone, jane: int) -> None:
    result = phone.call(
        JANE_PHONE, [*VERIFIED, *CHANGE, "@wrong", "@wrong", "@wrong", "3"], callee_keys=["1"]
    )

    assert after(result.heard("caller"), text(app, "enter_callback_code")) == [
        text(app, "callback_code_wrong"),
        text(app, "callback_code_wrong"),
        text(app, "callback_code_failed"),
        text(app, "change_trouble"),
        text(app, "connecting"),
    ]
    assert_unchanged(app, jane)
    with app.app_context():
        assert not app.extensions["ivr.redis"].exists(keys.code(jane, "confirm_number"))
    (failed,) = audit_rows(app, "number_change.failed")
    assert failed.details["reason"] == "code_wrong"


def test_calling_again_closes_the_first_attempt_in_the_audit(
    app: Flask, phone: Phone, jane: int
) -> None:
    """1 at the code prompt rings the new number again; the first attempt is recorded as
    superseded, and only the newest code works."""
    result = phone.call(JANE_PHONE, [*VERIFIED, *CHANGE, "1", "@code", "3"], callee_keys=["1", "1"])

    assert len(placed_calls(app)) == 2
    assert phone_on_file(app, jane) == NEW_PHONE
    (failed,) = audit_rows(app, "number_change.failed")
    assert failed.details["reason"] == "superseded"
    assert len(audit_rows(app, "number_change.started")) == 2
    assert len(result.callbacks) == 2


def test_an_expired_code_changes_nothing(
    app: Flask, phone: Phone, jane: int, code_clock: Clock
) -> None:
    late = code_clock.after(301, "@code")  # the lifetime is 300 s

    result = phone.call(JANE_PHONE, [*VERIFIED, *CHANGE, late, "3"], callee_keys=["1"])

    assert after(result.heard("caller"), text(app, "enter_callback_code"))[:2] == [
        text(app, "callback_code_expired"),
        text(app, "change_trouble"),
    ]
    assert_unchanged(app, jane)


def test_another_confirmation_winning_first_is_told(app: Flask, phone: Phone, jane: int) -> None:
    """The number changes elsewhere while the caller holds the code: nothing more changes."""
    winner = "+14155550188"

    def changed_elsewhere_then_the_code() -> str:
        with app.app_context():
            result = onfile.apply_change(
                db.session(),
                account_id=jane,
                expected_old=JANE_PHONE,
                new=winner,
                call_sid=None,
                mode="callback_on_line",
                now=datetime.now(UTC),
            )
            assert isinstance(result, onfile.Changed)
        return "@code"

    result = phone.call(
        JANE_PHONE, [*VERIFIED, *CHANGE, changed_elsewhere_then_the_code, "3"], callee_keys=["1"]
    )

    assert after(result.heard("caller"), text(app, "enter_callback_code"))[0] == text(
        app, "number_change_conflict"
    )
    assert phone_on_file(app, jane) == winner
    (failed,) = audit_rows(app, "number_change.failed")
    assert failed.details["reason"] == "conflict_already_changed"


def test_a_number_on_another_account_goes_to_an_agent(app: Flask, phone: Phone, jane: int) -> None:
    """A probable recycled number: nothing changes, an agent reviews it."""
    add_account(app, "Sam Poe", NEW_PHONE, "40004444")

    result = phone.call(JANE_PHONE, [*VERIFIED, "1", NEW_KEYED])

    assert after(result.heard("caller"), text(app, "enter_new_number")) == [
        text(app, "connecting_recycled")
    ]
    assert result.heard("agent")[0].startswith(
        verified_whisper(app, "Jane Doe", "4321", ("account_digits", "code_sms"), "recycled_number")
    )
    assert_unchanged(app, jane)
    assert not placed_calls(app)
    (refused,) = audit_rows(app, "number_change.refused")
    assert refused.details == {"old": "+1415•••0100", "new": "+1415•••0199", "reason": "recycled"}


def _keyed(region: str, kind: int) -> str:
    """An example number of a type, keyed as a US caller would (national, or 011 + …)."""
    number = phonenumbers.example_number_for_type(region, kind)
    assert number is not None
    if region == "US":
        return phonenumbers.national_significant_number(number) + "#"
    return f"011{number.country_code}{phonenumbers.national_significant_number(number)}#"


@pytest.mark.parametrize(
    ("keyed", "problem"),
    [
        ("5550100#", "new_number_invalid"),
        (_keyed("US", phonenumbers.PhoneNumberType.TOLL_FREE), "new_number_line_type"),
        (_keyed("US", phonenumbers.PhoneNumberType.PREMIUM_RATE), "new_number_line_type"),
        (_keyed("GB", phonenumbers.PhoneNumberType.MOBILE), "new_number_country"),
        ("4155550100#", "new_number_same"),
    ],
    ids=["invalid", "toll-free", "premium-rate", "foreign", "same"],
)
def test_each_problem_with_the_new_number_gets_its_own_prompt(
    app: Flask, phone: Phone, jane: int, keyed: str, problem: str
) -> None:
    result = phone.call(JANE_PHONE, [*VERIFIED, "1", keyed, NEW_KEYED, "2", "", "", ""])

    assert after(result.heard("caller"), text(app, "enter_new_number"))[:3] == [
        text(app, problem),
        spoken_new_number(app),
        text(app, "enter_new_number"),  # 2: enter it again
    ]
    assert_unchanged(app, jane)
    assert not placed_calls(app)
    (refused,) = audit_rows(app, "number_change.refused")
    reason = problem.removeprefix("new_number_")
    assert refused.details == {
        "old": "+1415•••0100",
        "reason": reason.replace("same", "same_number"),
    }


def test_status_callbacks_of_the_call_back_are_idempotent(
    app: Flask, phone: Phone, jane: int
) -> None:
    phone.call(JANE_PHONE, [*VERIFIED, *CHANGE, "@code", "3"], callee_keys=["1"])
    (call,) = placed_calls(app)
    path = call.status_callback.removeprefix(app.config["IVR_SETTINGS"].public_url)
    (row,) = audit_rows(app, "callback.ended")
    form = {"CallSid": row.call_sid or "", "CallStatus": "completed", "CallDuration": "20"}
    form["AccountSid"] = "AC" + "0" * 32  # the test app's TWILIO_ACCOUNT_SID

    for _ in range(2):
        assert says(twiml(post(app, path, form))) == []

    assert len(audit_rows(app, "callback.ended")) == 1
    assert phone_on_file(app, jane) == NEW_PHONE


# --- after the change: the cooling-off period ---------------------------------------------------


def test_after_a_change_agents_hear_the_flag_and_a_second_change_needs_an_agent(
    app: Flask, phone: Phone, jane: int
) -> None:
    phone.call(JANE_PHONE, [*VERIFIED, *CHANGE, "@code", "3"], callee_keys=["1"])

    again = phone.call(NEW_PHONE, [*VERIFIED, "1"])

    assert after(again.heard("caller"), text(app, "main_menu", first_name="Jane")) == [
        text(app, "connecting_recently_changed")
    ]
    whisper = again.heard("agent")[0]
    assert whisper.startswith(
        verified_whisper(
            app, "Jane Doe", "4321", ("account_digits", "code_sms"), "number_changed_recently"
        )
    )
    assert text(app, "whisper_flag_number_changed_recently") in whisper
    assert text(app, "whisper_flag_code_to_new_number") in whisper
    assert phone_on_file(app, jane) == NEW_PHONE


def test_an_unverified_caller_never_reaches_the_change(app: Flask, phone: Phone, jane: int) -> None:
    """Three wrong codes: the caller goes to an agent unverified, never to the menu."""
    result = phone.call(JANE_PHONE, ["1", "4321", "@wrong", "@wrong", "@wrong", "1"])

    assert text(app, "enter_new_number") not in result.heard("caller")
    assert result.heard("agent")[0].startswith(unverified_whisper(app, "verification_failed"))
    assert_unchanged(app, jane)


# --- the notices are background jobs ----------------------------------------------------------


def test_change_notices_are_queued_jobs_sent_once(make_app: Any) -> None:
    """With a worker (production): the change is made on the call and its notices wait in
    the queue; the worker sends each once, however often it runs."""
    from ivr.jobs import queue as jobqueue
    from ivr.jobs.runner import run_pending

    app: Flask = make_app(IVR_JOBS="worker")
    add_account(app, "Jane Doe", JANE_PHONE, JANE_NUMBER, JANE_EMAIL)

    Phone(app).call(JANE_PHONE, [*VERIFIED, *CHANGE, "@code", "3"], callee_keys=["1"])

    assert not [m for m in sent(app) if m.purpose == "number_changed"]
    queued = [job.args[0] for job in jobqueue.get(app).queue.get_jobs()]
    # The two notices, and the jobs the call's final status queued: the call's record
    # (its history) and the after-call job.
    assert sorted(queued) == ["call.record", "notice", "notice", "number_change.after_call"]
    run_pending(app)
    run_pending(app, retries=True)
    notices = [m for m in sent(app) if m.purpose == "number_changed"]
    assert [(m.channel, m.to) for m in notices] == [("sms", JANE_PHONE), ("email", JANE_EMAIL)]


def test_change_notices_are_sent_at_once_when_no_job_can_be_queued(
    app: Flask, phone: Phone, jane: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis refusing the queue must not cost the customer their warning."""
    from ivr.errors import StorageUnavailable
    from ivr.jobs import queue as jobqueue

    def redis_down(*_args: Any, **_kwargs: Any) -> bool:
        raise StorageUnavailable("redis unavailable")

    monkeypatch.setattr(jobqueue.JobQueue, "enqueue", redis_down)

    phone.call(JANE_PHONE, [*VERIFIED, *CHANGE, "@code", "3"], callee_keys=["1"])

    assert phone_on_file(app, jane) == NEW_PHONE
    notices = [m for m in sent(app) if m.purpose == "number_changed"]
    assert [(m.channel, m.to) for m in notices] == [("sms", JANE_PHONE), ("email", JANE_EMAIL)]
