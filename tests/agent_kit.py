"""Helpers shared by the agent and staff tests: agent accounts (with TOTP when asked),
signing in (password, then code), the staff clock, and transfers as the voice webhooks
record them (a signed context per call on a target's list)."""

from __future__ import annotations

import re
import time
from typing import Any

import pyotp
from flask import Flask
from flask.testing import FlaskClient
from kit import Clock, new_sid
from werkzeug.test import TestResponse

from ivr.agent import transfers
from ivr.agent.context import ContextSigner
from ivr.agent.users import Enrolment, create_user, enrol_totp
from ivr.staff.wiring import CLOCK
from ivr.storage import db, kv
from ivr.storage.models import AgentUser

PASSWORD = "correct horse battery"
QUEUE = "queue:support"
SECRET = "test-secret-key"  # the test app's IVR_SECRET_KEY
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def add_user(
    app: Flask, username: str = "alice", *, role: str = "agent", target: str = QUEUE
) -> int:
    """An agent account with PASSWORD; returns its id."""
    with app.app_context():
        user = create_user(db.session(), username, PASSWORD, role=role, target=target, region="US")
        return user.id


def enrol(app: Flask, user_id: int) -> Enrolment:
    """Set up TOTP for an account as `ivr users totp-reset` does; the URI holds the secret."""
    with app.app_context():
        user = db.session().get(AgentUser, user_id)
        assert user is not None
        enrolment = enrol_totp(db.session(), user, SECRET)
        db.session().commit()
        return enrolment


def secret_of(enrolment: Enrolment) -> str:
    """The TOTP secret inside a provisioning URI."""
    secret: str = pyotp.parse_uri(enrolment.uri).secret
    return secret


def code_at(secret: str, when: float, steps: int = 0) -> str:
    """The authenticator's code at `when`, or `steps` 30-second steps from it."""
    return pyotp.TOTP(secret).at(when + 30 * steps)


def staff_clock(app: Flask) -> Clock:
    """Give the app's staff sign-in (sessions, throttling, TOTP) a clock the test moves."""
    clock = StaffClock()
    app.extensions[CLOCK] = clock
    return clock


class StaffClock(Clock):
    """A clock that moves only when the test moves it (`ahead`): waits and TOTP steps do
    not depend on how fast the machine runs the test. It starts in the middle of a
    30-second TOTP step."""

    def __init__(self) -> None:
        super().__init__()
        now = time.time()
        self.start = now - now % 30 + 15

    def __call__(self) -> float:
        return self.start + self.ahead


def csrf_of(client: FlaskClient, path: str = "/agent/login") -> str:
    """The CSRF token of the client's session, read from a page's hidden field."""
    found = CSRF_FIELD.search(client.get(path).get_data(as_text=True))
    assert found, f"no CSRF field on {path}"
    return found.group(1)


def sign_in(client: FlaskClient, username: str = "alice", password: str = PASSWORD) -> TestResponse:
    """The password step (the whole sign-in for an account without TOTP)."""
    token = csrf_of(client)
    return client.post(
        "/agent/login", data={"username": username, "password": password, "csrf_token": token}
    )


def send_code(client: FlaskClient, code: str = "", *, recovery_code: str = "") -> TestResponse:
    """The second step of a sign-in: a TOTP code, or a recovery code."""
    token = csrf_of(client)  # the same per-session token as on the code page
    return client.post(
        "/agent/login/code",
        data={"code": code, "recovery_code": recovery_code, "csrf_token": token},
    )


def sign_in_with_code(
    client: FlaskClient, code: str, username: str = "alice", password: str = PASSWORD
) -> TestResponse:
    """Both steps; the answer of the last one that ran."""
    first = sign_in(client, username, password)
    if first.status_code != 303 or not first.headers["Location"].endswith("/login/code"):
        return first
    return send_code(client, code)


# Jane Doe, verified by her digits and a texted code, after her number changed recently.
VERIFIED_JANE: dict[str, Any] = {
    "customer": "Jane Doe",
    "verification": "code",
    "methods": [
        {"method": "account_digits", "at": "2026-11-22T10:01:02+00:00"},
        {"method": "code_sms", "at": "2026-11-22T10:02:03+00:00"},
    ],
    "flags": ["number_changed_recently"],
    "failure": None,
    "transfer_reason": "caller_request",
}


def context(call_sid: str, **overrides: Any) -> dict[str, Any]:
    """A context as the voice webhooks sign it (see ivr.agent.context); unverified by default."""
    facts: dict[str, Any] = {
        "schema": 1,
        "call_sid": call_sid,
        "customer": None,
        "account": "•••4321",
        "verification": "none",
        "methods": [],
        "flags": [],
        "failure": "digits_failed",
        "transfer_reason": "verification_failed",
        "flow": "support",
        "flow_version": "7",
        "caller": "+1415•••0100",
        "issued_at": "2026-11-22T10:00:00+00:00",
    }
    facts.update(overrides)
    return facts


def transfer(
    app: Flask,
    *,
    target: str = QUEUE,
    account_id: int | None = None,
    at: float | None = None,
    secret: str = SECRET,
    **overrides: Any,
) -> str:
    """Record a transfer as the voice webhooks do; returns its CallSid."""
    call_sid = overrides.pop("call_sid", None) or new_sid()
    token = ContextSigner(secret).sign(context(call_sid, **overrides))
    with app.app_context():
        transfers.record(
            kv.client(),
            target=target,
            call_sid=call_sid,
            token=token,
            account_id=account_id,
            at=time.time() if at is None else at,
        )
    return call_sid
