"""The staff second factor: enrolment by `ivr users add` and `totp-reset` (URI, QR code,
recovery codes shown once and stored hashed), the code step of the sign-in, a code
never accepted twice, recovery codes used once, and IVR_STAFF_2FA=required."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from agent_kit import (
    PASSWORD,
    SECRET,
    add_user,
    code_at,
    enrol,
    secret_of,
    send_code,
    sign_in,
    sign_in_with_code,
    staff_clock,
)
from flask import Flask
from sqlalchemy import select

from ivr.staff import pending, sealing
from ivr.storage import db
from ivr.storage.models import AgentUser, AuditEvent, StaffRecoveryCode

RECOVERY = re.compile(r"^  ([a-z2-9]{5}-[a-z2-9]{5})$", re.MULTILINE)
URI = re.compile(r"otpauth://\S+")


def audits(app: Flask, action: str) -> list[AuditEvent]:
    with app.app_context():
        query = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        return list(db.session().scalars(query))


def user(app: Flask, username: str = "alice") -> AgentUser:
    with app.app_context():
        found = db.session().scalars(select(AgentUser).where(AgentUser.username == username)).one()
        db.session().expunge(found)
        return found


def signed_in(client) -> bool:  # type: ignore[no-untyped-def]
    return bool(client.get("/agent/calls.json").status_code == 200)


# --- enrolment ------------------------------------------------------------------------------


def test_users_add_enrols_totp_and_shows_the_recovery_codes_once(
    app: Flask,
    runner,  # type: ignore[no-untyped-def]
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    result = runner.invoke(args=["users", "add", "alice", "--password-stdin"], input=PASSWORD)
    assert result.exit_code == 0, result.output
    [uri] = URI.findall(result.output)
    parts = urlsplit(uri)
    assert (parts.netloc, parts.path) == ("totp", "/ivr:alice")
    query = parse_qs(parts.query)
    assert query["issuer"] == ["ivr"]
    secret = query["secret"][0]
    stored = user(app).totp_secret
    assert stored is not None and secret not in stored  # sealed at rest…
    assert sealing.unseal(SECRET, stored) == secret  # …under the app's key
    with pytest.raises(sealing.Unreadable):
        sealing.unseal("another-secret-key", stored)
    codes = RECOVERY.findall(result.output)
    assert len(codes) == 10 and len(set(codes)) == 10
    assert "█" not in result.output and "▀" not in result.output  # no terminal: no QR code

    with app.app_context():
        stored = db.session().scalars(select(StaffRecoveryCode.code_hash)).all()
    assert len(stored) == 10
    for code in codes:  # only keyed hashes are kept
        assert not any(code.replace("-", "") in row or code in row for row in stored)
    [row] = audits(app, "agent_user.added")
    assert row.details["totp"] is True
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for secret_text in [secret, *codes]:
        assert secret_text not in logged
        assert secret_text not in json.dumps(row.details)


def test_users_add_draws_the_qr_code_when_asked(runner) -> None:  # type: ignore[no-untyped-def]
    result = runner.invoke(
        args=["users", "add", "alice", "--password-stdin", "--qr"], input=PASSWORD
    )
    assert result.exit_code == 0, result.output
    drawn = [line for line in result.output.splitlines() if "█" in line or "▀" in line]
    assert len(drawn) > 15  # a QR code of the URI, in half-height block characters


def test_users_add_without_totp_is_refused_when_it_is_required(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app(IVR_STAFF_2FA="required")
    result = app.test_cli_runner().invoke(
        args=["users", "add", "alice", "--password-stdin", "--no-totp"], input=PASSWORD
    )
    assert result.exit_code == 1
    assert "IVR_STAFF_2FA=required: every account needs TOTP" in result.output


def test_users_add_without_totp_in_optional_mode(app: Flask, runner) -> None:  # type: ignore[no-untyped-def]
    result = runner.invoke(
        args=["users", "add", "alice", "--password-stdin", "--no-totp"], input=PASSWORD
    )
    assert result.exit_code == 0 and "otpauth://" not in result.output
    assert user(app).totp_secret is None
    listed = runner.invoke(args=["users", "list"]).output
    # The columns end "status totp pin line phone": alice has no TOTP (nor PIN or line).
    assert re.search(r"^username .* status\s+totp\s+pin\s+line phone$", listed, re.M), listed
    assert re.search(r"^alice .* active\s+no\s+no\s+-$", listed, re.M), listed


def test_totp_reset_replaces_the_secret_and_codes_and_ends_sessions(app: Flask, runner) -> None:  # type: ignore[no-untyped-def]
    clock = staff_clock(app)
    user_id = add_user(app)
    old = enrol(app, user_id)
    client = app.test_client()
    assert sign_in_with_code(client, code_at(secret_of(old), clock())).status_code == 303
    assert signed_in(client)

    result = runner.invoke(args=["users", "totp-reset", "alice"])
    assert result.exit_code == 0, result.output
    assert "new TOTP for alice; 1 session(s) ended" in result.output
    [uri] = URI.findall(result.output)
    assert not signed_in(client)
    new_secret = parse_qs(urlsplit(uri).query)["secret"][0]
    assert new_secret != secret_of(old)

    clock.ahead += 30
    stranger = app.test_client()
    assert sign_in_with_code(stranger, code_at(secret_of(old), clock())).status_code == 401
    assert send_code(stranger, recovery_code=old.recovery_codes[0]).status_code == 401
    assert sign_in_with_code(app.test_client(), code_at(new_secret, clock())).status_code == 303
    [row] = audits(app, "agent_user.totp_reset")
    assert row.details == {
        "user_id": user_id,
        "username": "alice",
        "replaced": True,
        "sessions_ended": 1,
    }


def test_totp_reset_sets_up_an_account_that_had_none(app: Flask, runner) -> None:  # type: ignore[no-untyped-def]
    add_user(app)
    result = runner.invoke(args=["users", "totp-reset", "alice"])
    assert result.exit_code == 0 and "set up TOTP for alice" in result.output
    assert len(RECOVERY.findall(result.output)) == 10
    assert user(app).totp_secret is not None
    # From now on the password alone does not sign in, even in optional mode.
    client = app.test_client()
    assert sign_in(client).headers["Location"].endswith("/agent/login/code")
    assert not signed_in(client)


# --- the code step --------------------------------------------------------------------------


def test_the_password_then_the_code_signs_in(app: Flask) -> None:
    clock = staff_clock(app)
    user_id = add_user(app)
    secret = secret_of(enrol(app, user_id))
    client = app.test_client()
    first = sign_in(client)
    assert first.status_code == 303 and first.headers["Location"].endswith("/agent/login/code")
    assert not signed_in(client)  # the password alone opens nothing
    assert client.get("/agent/api/context/anything").status_code == 401
    page = client.get("/agent/login/code").get_data(as_text=True)
    assert 'autocomplete="one-time-code"' in page and 'inputmode="numeric"' in page
    assert 'name="recovery_code"' in page
    spaced = code_at(secret, clock())
    assert send_code(client, f"{spaced[:3]} {spaced[3:]}").status_code == 303
    assert signed_in(client)
    [row] = audits(app, "agent.login")
    assert row.details["second_factor"] == "totp"


def test_the_code_page_needs_a_pending_sign_in(app: Flask) -> None:
    response = app.test_client().get("/agent/login/code")
    assert response.headers["Location"].endswith("/agent/login")
    refused = send_code(app.test_client(), "123456")
    assert refused.status_code == 401
    assert "Sign in again." in refused.get_data(as_text=True)


def test_a_code_is_never_accepted_twice(app: Flask) -> None:
    clock = staff_clock(app)
    secret = secret_of(enrol(app, add_user(app)))
    code = code_at(secret, clock())
    assert sign_in_with_code(app.test_client(), code).status_code == 303
    again = app.test_client()  # someone who saw it typed, within the same 30 s
    refused = sign_in_with_code(again, code)
    assert refused.status_code == 401
    assert "already used" in refused.get_data(as_text=True)
    assert audits(app, "agent.login_failed")[-1].details["reason"] == "reused_code"
    assert not signed_in(again)
    clock.ahead += 30
    assert send_code(again, code_at(secret, clock())).status_code == 303  # the next code works


@pytest.mark.parametrize(("steps", "accepted"), [(-2, False), (-1, True), (1, True), (2, False)])
def test_codes_one_step_either_side_are_accepted(app: Flask, steps: int, accepted: bool) -> None:
    clock = staff_clock(app)
    secret = secret_of(enrol(app, add_user(app)))
    response = sign_in_with_code(app.test_client(), code_at(secret, clock(), steps))
    assert response.status_code == (303 if accepted else 401)


def test_an_older_code_after_a_newer_one_is_refused(app: Flask) -> None:
    clock = staff_clock(app)
    secret = secret_of(enrol(app, add_user(app)))
    assert sign_in_with_code(app.test_client(), code_at(secret, clock(), 1)).status_code == 303
    assert sign_in_with_code(app.test_client(), code_at(secret, clock())).status_code == 401


@pytest.mark.parametrize("typed", ["", "12345", "1234567", "abcdef", "١٢٣٤٥٦", "12 34 5"])
def test_malformed_codes_are_wrong(app: Flask, typed: str) -> None:
    enrol(app, add_user(app))
    client = app.test_client()
    sign_in(client)
    assert send_code(client, typed).status_code == 401
    assert audits(app, "agent.login_failed")[-1].details["reason"] == "wrong_code"
    assert not signed_in(client)


def test_too_many_wrong_codes_start_the_sign_in_again(app: Flask) -> None:
    clock = staff_clock(app)
    secret = secret_of(enrol(app, add_user(app)))
    client = app.test_client()
    sign_in(client)
    right = code_at(secret, clock())
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    for _ in range(pending.MAX_TRIES - 1):
        assert "Sign-in code" in send_code(client, wrong).get_data(as_text=True)
    last = send_code(client, wrong)
    assert last.status_code == 401
    assert "Sign in again." in last.get_data(as_text=True)
    assert send_code(client, right).status_code == 401  # the pending sign-in is gone
    assert not signed_in(client)


def test_a_recovery_code_signs_in_once(app: Flask) -> None:
    user_id = add_user(app)
    codes = enrol(app, user_id).recovery_codes
    client = app.test_client()
    sign_in(client)
    assert send_code(client, recovery_code=codes[3].upper().replace("-", " ")).status_code == 303
    assert signed_in(client)
    [row] = audits(app, "agent.recovery_code_used")
    assert row.details == {"username": "alice", "left": 9}
    assert audits(app, "agent.login")[-1].details["second_factor"] == "recovery_code"

    again = app.test_client()
    sign_in(again)
    refused = send_code(again, recovery_code=codes[3])
    assert refused.status_code == 401
    assert audits(app, "agent.login_failed")[-1].details["reason"] == "wrong_recovery_code"
    assert send_code(again, recovery_code=codes[4]).status_code == 303


def test_recovery_codes_are_bound_to_their_user(app: Flask) -> None:
    codes_of_alice = enrol(app, add_user(app)).recovery_codes
    enrol(app, add_user(app, "bob"))
    client = app.test_client()
    sign_in(client, "bob")
    assert send_code(client, recovery_code=codes_of_alice[0]).status_code == 401


def test_recovery_codes_are_kept_as_hmacs_keyed_with_the_app_secret(app: Flask) -> None:
    user_id = add_user(app)
    codes = [code.replace("-", "") for code in enrol(app, user_id).recovery_codes]
    with app.app_context():
        stored = set(db.session().scalars(select(StaffRecoveryCode.code_hash)))

    def keyed(key: str, code: str) -> str:
        message = f"staff-recovery:{user_id}:{code}".encode()
        return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()

    assert stored == {keyed(SECRET, code) for code in codes}
    assert not stored & {hashlib.sha256(code.encode()).hexdigest() for code in codes}
    assert not stored & {keyed("another-secret", code) for code in codes}


# --- IVR_STAFF_2FA=required -----------------------------------------------------------------


def test_required_mode_refuses_an_account_without_totp(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app(IVR_STAFF_2FA="required")
    add_user(app)
    client = app.test_client()
    response = sign_in(client)
    assert response.status_code == 403
    text = response.get_data(as_text=True)
    assert "no second factor" in text and "ivr users totp-reset alice" in text
    assert not signed_in(client)
    assert audits(app, "agent.login_failed")[-1].details["reason"] == "no_second_factor"


def test_required_mode_without_the_right_password_says_nothing_about_totp(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app(IVR_STAFF_2FA="required")
    add_user(app)
    response = sign_in(app.test_client(), "alice", "not the password!")
    assert response.status_code == 401
    text = response.get_data(as_text=True)
    assert "Wrong username or password." in text and "totp-reset" not in text


def test_required_mode_signs_in_with_password_and_code(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app(IVR_STAFF_2FA="required")
    clock = staff_clock(app)
    secret = secret_of(enrol(app, add_user(app)))
    client = app.test_client()
    assert sign_in_with_code(client, code_at(secret, clock())).status_code == 303
    assert signed_in(client)


def test_a_secret_sealed_under_another_key_says_so_after_the_right_password(
    make_app, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    """IVR_SECRET_KEY rotated: the code cannot be checked; the agent is told whom to ask
    (only once the password was right) and the log names the account, not the secret."""
    app: Flask = make_app()
    clock = staff_clock(app)
    secret = secret_of(enrol(app, add_user(app)))
    rotated: Flask = make_app(IVR_SECRET_KEY="a-rotated-secret-key-for-this-test")
    staff_clock(rotated)
    caplog.set_level(logging.ERROR)
    client = rotated.test_client()
    refused = sign_in_with_code(client, code_at(secret, clock()))
    assert refused.status_code == 401
    assert "Ask an admin to run `ivr users totp-reset alice`" in refused.get_data(as_text=True)
    assert not signed_in(client)
    assert audits(rotated, "agent.login_failed")[-1].details["reason"] == "unreadable_code"
    assert "staff user alice cannot be read" in caplog.text and secret not in caplog.text
    assert sign_in_with_code(app.test_client(), code_at(secret, clock())).status_code == 303
