"""Signed agent context: what it holds, the token's integrity and lifetime, and the API."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from typing import Any

import pytest
from agent_kit import add_user, sign_in
from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import select

from ivr.agent.context import (
    SALT,
    ContextExpired,
    ContextInvalid,
    ContextSigner,
    build_context,
    token_fingerprint,
)
from ivr.flow.engine import AccountView
from ivr.flow.state import CallState
from ivr.storage import db
from ivr.storage.models import AuditEvent

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z
SID = "CA" + "0f1e2d3c" * 4  # hex, as Twilio makes them: no run of digits
SECRET = "test-secret-key"  # IVR_SECRET_KEY of the test app (tests/conftest.py)
KEY = "k" * 40
OTHER_KEY = "o" * 40
JANE = AccountView(id=7, number="10004321", name="Jane Doe", phone="+14155550100")
FULL_NUMBER = re.compile(r"\+\d{7,15}|\d{7,}")


def call_state(**fields: Any) -> CallState:
    values: dict[str, Any] = {
        "call_sid": SID,
        "flow": "support",
        "version": "3f2a9c1d7e4b",
        "language": "en-US",
        "node": "transfer",
        "started_at": NOW - 300,
        "caller": "+14155550100",
        "account_id": 7,
        "transfer_reason": "caller_request",
    }
    values.update(fields)
    return CallState(**values)


def verified_state(**fields: Any) -> CallState:
    state = call_state(**fields)
    state.verify("account_digits", NOW - 120)
    state.verify("code_sms", NOW - 60)
    return state


def context_of(state: CallState, account: AccountView | None = JANE, **kw: Any) -> dict[str, Any]:
    return build_context(state, account, flow_version="3f2a9c1d7e4b", now=NOW, **kw)


def assert_nothing_secret(context: dict[str, Any], *secrets: str) -> None:
    text = json.dumps(context, ensure_ascii=False)
    for secret in secrets:
        assert secret not in text
    found = FULL_NUMBER.search(text)
    assert found is None, f"a full number in the context: {found.group()}"


# --- what the context holds ---------------------------------------------------------------------


def test_a_verified_caller_is_named_with_methods_and_times() -> None:
    context = context_of(verified_state())
    assert context == {
        "schema": 1,
        "call_sid": SID,
        "customer": "Jane Doe",
        "account": "•••4321",
        "verification": "code",
        "methods": [
            {"method": "account_digits", "at": "2025-12-31T23:58:00+00:00"},
            {"method": "code_sms", "at": "2025-12-31T23:59:00+00:00"},
        ],
        "flags": [],
        "failure": None,
        "transfer_reason": "caller_request",
        "flow": "support",
        "flow_version": "3f2a9c1d7e4b",
        "caller": "+1415•••0100",
        "issued_at": "2026-01-01T00:00:00+00:00",
    }
    assert_nothing_secret(context, "10004321", "+14155550100")


def test_digits_alone_do_not_name_the_customer() -> None:
    state = call_state()
    state.verify("account_digits", NOW - 30)
    context = context_of(state)
    assert context["customer"] is None
    assert context["verification"] == "digits"
    assert context["account"] == "•••4321"  # which account; "verification" says how sure


def test_an_unverified_caller_without_an_account() -> None:
    state = call_state(
        account_id=None,
        caller=None,
        identity="withheld",
        failure="no_input",
        transfer_reason="unknown_caller",
    )
    context = context_of(state, None)
    assert context["customer"] is None
    assert context["account"] is None
    assert context["verification"] == "none"
    assert context["methods"] == []
    assert context["caller"] == "withheld"
    assert (context["failure"], context["transfer_reason"]) == ("no_input", "unknown_caller")


def test_a_locked_out_caller_is_flagged_locked() -> None:
    state = call_state(
        failure="locked", transfer_reason="verification_failed", flags=["caller_id_mismatch"]
    )
    state.verify("account_digits", NOW - 200)
    context = context_of(state)
    assert context["customer"] is None
    assert context["flags"] == ["caller_id_mismatch", "locked"]
    assert context["failure"] == "locked"


def test_a_recently_changed_number_is_flagged() -> None:
    state = verified_state(flags=["number_changed_recently", "code_to_new_number"])
    context = context_of(state, cooling_off_flagged=True)
    assert context["flags"] == ["number_changed_recently", "code_to_new_number"]  # not twice
    assert context["customer"] == "Jane Doe"  # verified, but the agent sees the risk


def test_the_cooling_off_flag_is_added_when_the_call_did_not_raise_it() -> None:
    assert context_of(verified_state(), cooling_off_flagged=True)["flags"] == [
        "number_changed_recently"
    ]


def test_no_code_digits_or_numbers_from_the_call_state_reach_the_context() -> None:
    state = verified_state(
        code_channel="sms",
        slots={"new_number": "+14155550199", "account": "10004321", "code": "482913"},
        flags=["number_changed_recently"],
    )
    account = AccountView(
        id=7, number="99887766554433", name="Jane Doe", phone="+14155550100", email="j@x.test"
    )
    context = context_of(state, account)
    assert context["account"] == "•••4433"
    assert_nothing_secret(
        context, "99887766554433", "+14155550100", "+14155550199", "482913", "10004321", "j@x.test"
    )


# --- the token ----------------------------------------------------------------------------------


def realistic_context() -> dict[str, Any]:
    """A large but ordinary context: a long name, both methods, every flag the flow raises."""
    long_name = AccountView(
        id=7,
        number="100043214321",
        name="Maximiliana Alexandrina Featherstonehaugh-Wolfeschlegelsteinhausen",
        phone="+14155550100",
    )
    state = verified_state(
        flags=["caller_id_mismatch", "number_changed_recently", "code_to_new_number"],
        transfer_reason="number_change_failed",
        failure="callback_not_answered",
    )
    return context_of(state, long_name)


def test_round_trip() -> None:
    signer = ContextSigner(SECRET)
    context = realistic_context()
    token = signer.sign(context)
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", token)  # URL-safe: fits a path and a SIP header
    assert signer.load(token) == context


def test_a_realistic_token_fits_taskrouter_attributes_and_a_sip_header() -> None:
    token = ContextSigner(SECRET).sign(realistic_context())
    assert len(token) < 1024
    assert len(token) < 600  # measured 496: leaves room for the other Task attributes


def flip(text: str, index: int) -> str:
    return text[:index] + ("A" if text[index] != "A" else "B") + text[index + 1 :]


@pytest.mark.parametrize("part", ["payload", "timestamp", "signature"])
def test_a_tampered_token_is_invalid(part: str) -> None:
    signer = ContextSigner(SECRET)
    token = signer.sign(realistic_context())
    payload_end = token.rindex(".", 0, token.rindex("."))
    index = {"payload": 5, "timestamp": payload_end + 2, "signature": len(token) - 3}[part]
    with pytest.raises(ContextInvalid):
        signer.load(flip(token, index))


@pytest.mark.parametrize(
    "garbage", ["", "x", "not.a.token", "...", "." * 500, "eyJhIjoxfQ.ZZZZZZ.abc"]
)
def test_garbage_is_invalid(garbage: str) -> None:
    with pytest.raises(ContextInvalid):
        ContextSigner(SECRET).load(garbage)


def test_a_token_signed_with_another_secret_is_invalid() -> None:
    token = ContextSigner("another-secret").sign(realistic_context())
    with pytest.raises(ContextInvalid):
        ContextSigner(SECRET).load(token)


def test_another_signer_with_the_same_secret_cannot_make_a_context_token() -> None:
    context = realistic_context()
    for salt in ("itsdangerous", "cookie-session", SALT + ".other"):
        with pytest.raises(ContextInvalid):
            ContextSigner(SECRET).load(URLSafeTimedSerializer(SECRET, salt=salt).dumps(context))


def test_a_flask_session_cookie_is_not_a_context_token(app: Flask) -> None:
    serializer = SecureCookieSessionInterface().get_signing_serializer(app)
    assert serializer is not None
    cookie = serializer.dumps({"agent_user_id": 1, "call_sid": SID})
    with pytest.raises(ContextInvalid):
        ContextSigner(SECRET).load(cookie)


def test_a_token_expires_after_max_age() -> None:
    clock = [NOW]
    signer = ContextSigner(SECRET, max_age=300, clock=lambda: clock[0])
    token = signer.sign(realistic_context())
    clock[0] = NOW + 300
    assert signer.load(token)["call_sid"] == SID  # still fresh at exactly max_age
    clock[0] = NOW + 301
    with pytest.raises(ContextExpired, match="301 > 300") as info:
        signer.load(token)
    assert info.value.call_sid == SID  # genuine, only old: its call is named in the audit


def test_a_token_dated_in_the_future_is_refused() -> None:
    token = ContextSigner(SECRET, clock=lambda: NOW + 60).sign(realistic_context())
    with pytest.raises(ContextExpired):
        ContextSigner(SECRET, clock=lambda: NOW).load(token)


def test_a_tampered_expired_token_is_invalid_not_expired() -> None:
    token = ContextSigner(SECRET, clock=lambda: NOW).sign(realistic_context())
    with pytest.raises(ContextInvalid):
        ContextSigner(SECRET, clock=lambda: NOW + 3600).load(flip(token, 5))


@pytest.mark.parametrize(
    ("secret", "max_age", "message"),
    [("", 300, "needs a secret key"), (SECRET, 0, "max_age must be a positive")],
)
def test_a_signer_needs_a_secret_and_a_lifetime(secret: str, max_age: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ContextSigner(secret, max_age)


# --- GET /agent/api/context/<token> -------------------------------------------------------------


@pytest.fixture
def api_app(make_app) -> Flask:  # type: ignore[no-untyped-def]
    app: Flask = make_app(IVR_AGENT_API_KEYS=f"{KEY}, {OTHER_KEY}")
    return app


def fresh_token(**kw: Any) -> str:
    return ContextSigner(SECRET, **kw).sign(realistic_context())


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def audit_rows(app: Flask) -> list[AuditEvent]:
    with app.app_context():
        query = select(AuditEvent).where(AuditEvent.action.like("agent.context%"))
        return list(db.session().scalars(query.order_by(AuditEvent.id)))


def key_actor(key: str) -> str:
    return "api-key:" + hashlib.sha256(key.encode()).hexdigest()[:8]


def test_an_api_key_holder_gets_the_context(api_app: Flask) -> None:
    token = fresh_token()
    response = api_app.test_client().get(f"/agent/api/context/{token}", headers=bearer(OTHER_KEY))
    assert response.status_code == 200
    assert response.get_json() == realistic_context()
    assert response.headers["Cache-Control"] == "no-store"
    (row,) = audit_rows(api_app)
    assert (row.action, row.actor, row.call_sid) == (
        "agent.context_viewed",
        key_actor(OTHER_KEY),
        SID,
    )
    assert row.details == {"requester": "api-key", "token": token_fingerprint(token)}


def test_a_logged_in_agent_gets_the_context(api_app: Flask) -> None:
    agent_id = add_user(api_app)
    client = api_app.test_client()
    assert sign_in(client).status_code == 303
    response = client.get(f"/agent/api/context/{fresh_token()}")
    assert response.status_code == 200
    assert response.get_json()["customer"].startswith("Maximiliana")
    (row,) = audit_rows(api_app)
    assert (row.action, row.actor) == ("agent.context_viewed", f"agent:{agent_id}")
    assert row.details["requester"] == "agent"


def test_ops_staff_get_no_call_context(api_app: Flask) -> None:
    """Ops staff share the staff sign-in but take no calls: no caller's facts for them."""
    ops_id = add_user(api_app, "olga", role="ops")
    client = api_app.test_client()
    assert sign_in(client, "olga").status_code == 303
    response = client.get(f"/agent/api/context/{fresh_token()}")
    assert response.status_code == 403
    assert "customer" not in response.get_json()
    (row,) = audit_rows(api_app)
    assert (row.action, row.actor) == ("agent.context_refused", f"agent:{ops_id}")
    assert row.details["reason"] == "not_an_agent"


def test_a_forged_session_cookie_naming_a_user_is_not_a_login(api_app: Flask) -> None:
    # The cookie is signed with the app's key, but names no live server-side session.
    add_user(api_app)
    client = api_app.test_client()
    with client.session_transaction() as forged:
        forged["agent_user_id"] = 1
        forged["staff_session"] = "made-up-session-id"
    response = client.get(f"/agent/api/context/{fresh_token()}")
    assert response.status_code == 401
    assert audit_rows(api_app)[0].details["reason"] == "no_credentials"


@pytest.mark.parametrize(
    ("headers", "reason", "requester", "actor", "challenge"),
    [
        ({}, "no_credentials", "anonymous", "anonymous", "Bearer"),
        (bearer("w" * 40), "bad_api_key", "api-key", "api-key:unknown", "Bearer error"),
        (bearer(KEY[:-1]), "bad_api_key", "api-key", "api-key:unknown", "Bearer error"),
        (
            {"Authorization": f"Basic {KEY}"},
            "bad_authorization",
            "api-key",
            "api-key:unknown",
            "Bearer error",
        ),
        (
            {"Authorization": "Bearer"},
            "bad_authorization",
            "api-key",
            "api-key:unknown",
            "Bearer error",
        ),
    ],
)
def test_no_or_wrong_credentials_are_refused(
    api_app: Flask,
    headers: dict[str, str],
    reason: str,
    requester: str,
    actor: str,
    challenge: str,
) -> None:
    token = fresh_token()
    response = api_app.test_client().get(f"/agent/api/context/{token}", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith(challenge)
    assert response.headers["Cache-Control"] == "no-store"
    assert set(response.get_json()) == {"error"}
    assert "Jane" not in response.get_data(as_text=True)
    (row,) = audit_rows(api_app)
    assert (row.action, row.actor, row.call_sid) == ("agent.context_refused", actor, None)
    assert row.details == {
        "reason": reason,
        "requester": requester,
        "token": token_fingerprint(token),
    }


def test_keys_are_refused_when_none_are_configured(app: Flask) -> None:
    response = app.test_client().get(f"/agent/api/context/{fresh_token()}", headers=bearer(KEY))
    assert response.status_code == 401
    assert audit_rows(app)[0].details["reason"] == "bad_api_key"


def test_a_wrong_key_is_refused_even_with_an_agent_session(api_app: Flask) -> None:
    add_user(api_app)
    client = api_app.test_client()
    assert sign_in(client).status_code == 303
    response = client.get(f"/agent/api/context/{fresh_token()}", headers=bearer("w" * 40))
    assert response.status_code == 401


def test_a_session_without_an_agent_is_not_a_login(api_app: Flask) -> None:
    client = api_app.test_client()
    with client.session_transaction() as other_session:
        other_session["staff_session"] = None
        other_session["something_else"] = "x"
    assert client.get(f"/agent/api/context/{fresh_token()}").status_code == 401


def test_a_tampered_token_is_refused_with_401(api_app: Flask) -> None:
    token = flip(fresh_token(), 5)
    response = api_app.test_client().get(f"/agent/api/context/{token}", headers=bearer(KEY))
    assert response.status_code == 401
    assert response.get_json() == {"error": "invalid context token"}
    assert response.headers["WWW-Authenticate"] == "Bearer"
    (row,) = audit_rows(api_app)
    assert (row.action, row.actor, row.call_sid) == ("agent.context_refused", key_actor(KEY), None)
    assert row.details == {
        "reason": "invalid_token",
        "requester": "api-key",
        "token": token_fingerprint(token),
    }


def test_a_token_from_another_key_is_refused_with_401(api_app: Flask) -> None:
    token = ContextSigner("another-secret").sign(realistic_context())
    response = api_app.test_client().get(f"/agent/api/context/{token}", headers=bearer(KEY))
    assert response.status_code == 401
    assert audit_rows(api_app)[0].details["reason"] == "invalid_token"


def test_an_expired_token_is_gone(api_app: Flask) -> None:
    token = fresh_token(clock=lambda: time.time() - 301)  # the app's TTL is the default 300 s
    response = api_app.test_client().get(f"/agent/api/context/{token}", headers=bearer(KEY))
    assert response.status_code == 410
    assert response.get_json() == {"error": "context token expired"}
    assert response.headers["Cache-Control"] == "no-store"
    (row,) = audit_rows(api_app)
    assert (row.action, row.actor, row.call_sid) == ("agent.context_refused", key_actor(KEY), SID)
    assert row.details == {
        "reason": "expired",
        "requester": "api-key",
        "token": token_fingerprint(token),
    }


def test_the_lifetime_comes_from_the_settings(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app(IVR_AGENT_API_KEYS=KEY, IVR_AGENT_CONTEXT_TTL="900")
    token = fresh_token(clock=lambda: time.time() - 600)
    response = app.test_client().get(f"/agent/api/context/{token}", headers=bearer(KEY))
    assert response.status_code == 200


def test_the_token_and_the_key_are_never_logged(
    api_app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tokens = [fresh_token(), flip(fresh_token(), 5), fresh_token(clock=lambda: time.time() - 999)]
    client = api_app.test_client()
    for token in tokens:
        client.get(f"/agent/api/context/{token}", headers=bearer(KEY))
    client.get(f"/agent/api/context/{tokens[0]}", headers=bearer("w" * 40))
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "agent context" in logged  # the check below would prove nothing otherwise
    for secret in [*tokens, KEY, "w" * 40, "Maximiliana"]:
        assert secret not in logged
    for row in audit_rows(api_app):
        assert not any(token in json.dumps(row.details) for token in tokens)
