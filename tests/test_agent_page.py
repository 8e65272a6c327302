"""The agent page through Flask's test client: accounts (`ivr users`), sign-in with CSRF,
the call list, the screen pop and verification by hand, and what each action audits."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from agent_kit import (
    PASSWORD,
    QUEUE,
    SECRET,
    VERIFIED_JANE,
    add_user,
    context,
    csrf_of,
    enrol,
    send_code,
    sign_in,
    transfer,
)
from alembic import command
from caller import code_of, sent, wrong
from flask import Flask
from flask.testing import FlaskClient
from itsdangerous import URLSafeTimedSerializer
from kit import JANE_PHONE, add_account, new_sid
from schema import assert_schema_matches_models
from sqlalchemy import select
from werkzeug.test import TestResponse

from ivr.agent import transfers
from ivr.agent.context import ContextSigner
from ivr.agent.manual import AGENT_VERIFY
from ivr.delivery import DeliveryUncertain
from ivr.delivery.outbox import Outbox
from ivr.staff.csrf import CSRF_REFUSED
from ivr.staff.throttle import USERNAME
from ivr.storage import db, kv
from ivr.storage.migrate import alembic_config, upgrade
from ivr.storage.models import AgentUser, AuditEvent

JANE_ACCOUNT = "10004321"


# --- helpers ------------------------------------------------------------------------------


def audits(app: Flask, action: str) -> list[AuditEvent]:
    with app.app_context():
        query = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        return list(db.session().scalars(query))


def entry_of(app: Flask, call_sid: str) -> dict[str, Any]:
    with app.app_context():
        entry = transfers.lookup(kv.client(), call_sid)
    assert entry is not None
    return entry


def act(client: FlaskClient, call_sid: str, action: str, **form: Any) -> TestResponse:
    """POST one of the screen pop's forms, with the session's CSRF token, following the redirect."""
    token = csrf_of(client, "/agent/")
    data = {"csrf_token": token, **form}
    return client.post(f"/agent/calls/{call_sid}/{action}", data=data, follow_redirects=True)


@pytest.fixture
def agent(app: Flask, client: FlaskClient) -> int:
    """Alice, an agent on queue:support, signed in on `client`; returns her id."""
    user_id = add_user(app)
    assert sign_in(client).status_code == 303
    return user_id


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def jane(app: Flask) -> int:
    """Jane Doe's account (+14155550100, account 10004321, an email on file)."""
    return add_account(app, "Jane Doe", JANE_PHONE, JANE_ACCOUNT, "jane@example.com")


# --- `ivr users` ----------------------------------------------------------------------------


def test_users_add_asks_twice_then_list_and_disable(app: Flask, runner) -> None:  # type: ignore[no-untyped-def]
    added = runner.invoke(
        args=["users", "add", "Alice", "--role", "supervisor", "--target", "Queue:support"],
        input=f"{PASSWORD}\n{PASSWORD}\n",
    )
    assert added.exit_code == 0, added.output
    assert "added supervisor alice (calls to queue:support)" in added.output
    assert PASSWORD not in added.output  # the prompt hides what is typed

    listed = runner.invoke(args=["users", "list"])
    assert re.search(r"alice\s+supervisor\s+queue:support\s+\S+ \S+\s+active", listed.output)

    disabled = runner.invoke(args=["users", "disable", "alice"])
    assert disabled.exit_code == 0 and "disabled alice" in disabled.output
    assert "disabled" in runner.invoke(args=["users", "list"]).output.splitlines()[1]

    with app.app_context():
        user = db.session().scalars(select(AgentUser)).one()
        assert user.password_hash.startswith(("scrypt:", "pbkdf2:"))
        assert PASSWORD not in user.password_hash
    rows = audits(app, "agent_user.added") + audits(app, "agent_user.disabled")
    assert [(row.action, row.actor) for row in rows] == [
        ("agent_user.added", "cli"),
        ("agent_user.disabled", "cli"),
    ]
    assert PASSWORD not in json.dumps([row.details for row in rows])


def test_users_add_reads_the_password_from_stdin(app: Flask, runner) -> None:  # type: ignore[no-untyped-def]
    result = runner.invoke(args=["users", "add", "bob", "--password-stdin"], input=f"{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    # Without --target an agent takes the calls of IVR_AGENT_TARGET.
    assert "added agent bob (calls to +15005550006)" in result.output


@pytest.mark.parametrize(
    ("args", "password", "message"),
    [
        (["alice"], "short pass", "too short: use at least 12 characters"),
        (["alice"], "   " * 5, "cannot be only spaces"),
        (["alice"], "alice", "too short"),
        (["alice", "--target", "nowhere"], PASSWORD, "target: transfer target 'nowhere'"),
        (["a"], PASSWORD, "a username is 2 to 64 characters"),
        (["al ice"], PASSWORD, "a username is 2 to 64 characters"),
        (["taken"], PASSWORD, "a user named 'taken' already exists"),
        (["TAKEN"], PASSWORD, "a user named 'taken' already exists"),
    ],
)
def test_users_add_refuses(
    app: Flask,
    runner,  # type: ignore[no-untyped-def]
    args: list[str],
    password: str,
    message: str,
) -> None:
    add_user(app, "taken")
    result = runner.invoke(args=["users", "add", *args, "--password-stdin"], input=password + "\n")
    assert result.exit_code == 1
    assert message in result.output
    with app.app_context():
        assert db.session().scalars(select(AgentUser.username)).all() == ["taken"]


def test_users_add_mismatched_confirmation_asks_again(runner) -> None:  # type: ignore[no-untyped-def]
    result = runner.invoke(
        args=["users", "add", "carol"],
        input=f"{PASSWORD}\nsomething else\n{PASSWORD}\n{PASSWORD}\n",
    )
    assert result.exit_code == 0, result.output
    assert "do not match" in result.output


def test_users_disable_unknown_user(runner) -> None:  # type: ignore[no-untyped-def]
    result = runner.invoke(args=["users", "disable", "nobody"])
    assert result.exit_code == 1
    assert "no user named 'nobody'" in result.output


# --- migration 0003 -------------------------------------------------------------------------


def test_migration_0003_adds_and_drops_agent_users(scratch_database_url: str) -> None:
    url = scratch_database_url
    upgrade(url, "0002")
    upgrade(url, "0003")
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO agent_users (username, password_hash, role, target, created_at)"
                    " VALUES ('alice', 'scrypt:x', 'agent', 'queue:support', CURRENT_TIMESTAMP)"
                )
            )
            assert connection.execute(sa.text("SELECT disabled FROM agent_users")).scalar() in (
                False,
                0,
            )
            with pytest.raises(sa.exc.IntegrityError), connection.begin_nested():
                connection.execute(
                    sa.text(
                        "INSERT INTO agent_users (username, password_hash, role, target,"
                        " created_at) VALUES ('alice', 'x', 'agent', 'q', CURRENT_TIMESTAMP)"
                    )
                )
        command.downgrade(alembic_config(url), "0002")
        with engine.connect() as connection:
            assert "agent_users" not in sa.inspect(connection).get_table_names()
        upgrade(url)  # and up again, to the head
        with engine.connect() as connection:
            assert "agent_users" in sa.inspect(connection).get_table_names()
            assert_schema_matches_models(connection)
    finally:
        engine.dispose()


# --- signing in and out ---------------------------------------------------------------------


def test_sign_in_sets_the_session_key_and_audits(app: Flask, client: FlaskClient) -> None:
    user_id = add_user(app)
    response = sign_in(client, "  Alice ")
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/agent/")
    with client.session_transaction() as session:
        # Only the random id of a server-side record: no user id for the cookie to assert.
        assert "agent_user_id" not in session
        assert len(session["staff_session"]) >= 43
    page = client.get("/agent/")
    assert page.status_code == 200
    assert "alice" in page.get_data(as_text=True)
    [row] = audits(app, "agent.login")
    assert row.actor == f"agent:{user_id}"
    assert row.details == {
        "username": "alice",
        "role": "agent",
        "second_factor": "none",  # development: IVR_STAFF_2FA=optional, no TOTP set up
        "client": "127.0.0.1",
    }


@pytest.mark.parametrize(
    ("username", "password", "reason"),
    [
        ("alice", "wrong password!", "wrong_password"),
        ("mallory", PASSWORD, "unknown_user"),
        ("", PASSWORD, "unknown_user"),
    ],
)
def test_failed_sign_in_is_refused_and_audited_without_the_password(
    app: Flask, client: FlaskClient, username: str, password: str, reason: str
) -> None:
    add_user(app)
    response = sign_in(client, username, password)
    assert response.status_code == 401
    assert "Wrong username or password." in response.get_data(as_text=True)
    with client.session_transaction() as session:
        assert "staff_session" not in session
    [row] = audits(app, "agent.login_failed")
    assert row.actor == (username or "(blank)")
    assert row.details == {"reason": reason, "client": "127.0.0.1"}
    assert password not in json.dumps(row.details) + row.actor


@pytest.mark.parametrize(
    ("field", "username", "password", "message"),
    [
        ("username", "a" * 65, PASSWORD, "A username is at most 64 characters."),
        ("password", "alice", "x" * 1025, "A password is at most 1024 characters."),
    ],
)
def test_sign_in_fields_out_of_bounds_are_marked_not_checked(
    app: Flask, client: FlaskClient, field: str, username: str, password: str, message: str
) -> None:
    add_user(app)
    response = sign_in(client, username, password)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert re.search(rf'<input name="{field}"[^>]*aria-invalid="true"', html)
    assert re.search(rf'id="{field}-error"[^>]*>{re.escape(message)}<', html)
    assert password not in html  # a password is never sent back
    assert audits(app, "agent.login_failed") == []  # nothing was checked, so nothing counted
    assert sign_in(client).status_code == 303


def test_a_failed_sign_in_keeps_the_normalised_username(app: Flask, client: FlaskClient) -> None:
    add_user(app)
    html = sign_in(client, "  Alice ", "wrong password!").get_data(as_text=True)
    assert 'value="alice"' in html
    assert "wrong password!" not in html


def test_a_code_step_field_out_of_bounds_is_marked_not_counted(app: Flask) -> None:
    enrol(app, add_user(app))
    client = app.test_client()
    sign_in(client)
    response = send_code(client, recovery_code="x" * 33)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert re.search(r'<input name="recovery_code"[^>]*aria-invalid="true"', html)
    assert "A recovery code is at most 32 characters." in html
    assert "<details open>" in html  # the recovery form is shown, not folded away
    assert audits(app, "agent.login_failed") == []


def test_disabled_user_cannot_sign_in_and_loses_the_session(
    app: Flask, client: FlaskClient, agent: int
) -> None:
    assert client.get("/agent/").status_code == 200
    with app.app_context():
        db.session().get(AgentUser, agent).disabled = True  # type: ignore[union-attr]
        db.session().commit()
    assert client.get("/agent/").status_code == 302
    assert sign_in(client).status_code == 401
    assert audits(app, "agent.login_failed")[-1].details["reason"] == "disabled"


def test_sign_in_is_throttled_per_username(app: Flask, client: FlaskClient) -> None:
    add_user(app)
    for _ in range(USERNAME.free):
        assert sign_in(client, "alice", "not the password").status_code == 401
    blocked = sign_in(client)  # even the right password, until the delay passes
    assert blocked.status_code == 429
    assert "Too many failed sign-ins. Try again in 30 seconds." in blocked.get_data(as_text=True)
    assert audits(app, "agent.login_failed")[-1].details == {
        "reason": "too_many_attempts",
        "throttled": "username",
        "wait": 30,
        "client": "127.0.0.1",
    }
    add_user(app, "bob")
    assert sign_in(client, "bob").status_code == 303  # other usernames are not affected


def test_sign_out_ends_the_session_and_audits(app: Flask, client: FlaskClient, agent: int) -> None:
    token = csrf_of(client, "/agent/")
    response = client.post("/agent/logout", data={"csrf_token": token})
    assert response.status_code == 303
    with client.session_transaction() as session:
        assert "staff_session" not in session
    assert client.get("/agent/").headers["Location"].endswith("/agent/login")
    assert client.get("/agent/calls.json").status_code == 401
    [row] = audits(app, "agent.logout")
    assert row.actor == f"agent:{agent}"


def test_session_cookie_is_httponly_and_samesite_lax(client: FlaskClient) -> None:
    cookie = client.get("/agent/login").headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # development serves plain http on 127.0.0.1


def test_session_cookie_is_secure_in_production(app: Flask, make_app) -> None:  # type: ignore[no-untyped-def]
    production = make_app(
        IVR_ENV="production",
        TWILIO_ACCOUNT_SID="AC" + "1" * 32,
        REDIS_URL="redis://127.0.0.1:6379/15",
        IVR_DELIVERY="twilio",
    )
    cookie = production.test_client().get("/agent/login").headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_pages_send_protective_headers(client: FlaskClient, agent: int) -> None:
    headers = client.get("/agent/").headers
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Frame-Options"] == "DENY"


# --- CSRF -----------------------------------------------------------------------------------

POSTS = ["/agent/login", "/agent/login/code", "/agent/logout"] + [
    f"/agent/calls/CALL/{action}" for action in ("checklist", "send-code", "check-code", "escalate")
]


@pytest.mark.parametrize("path", POSTS)
@pytest.mark.parametrize("token", [None, "wrong-token", ""])
def test_every_post_needs_the_session_csrf_token(
    app: Flask, client: FlaskClient, agent: int, jane: int, path: str, token: str | None
) -> None:
    call_sid = transfer(app, account_id=jane)
    data = {
        "username": "alice",
        "password": PASSWORD,
        "matched": "full_name",
        "channel": "sms",
        "code": "123456",
    }
    if token is not None:
        data["csrf_token"] = token
    before = len(audits(app, "agent.login"))
    response = client.post(path.replace("CALL", call_sid), data=data)
    assert response.status_code == 400
    assert "did not come from this page" in response.get_data(as_text=True)
    # Nothing happened: still signed in, no code sent, no note, nothing audited.
    assert client.get("/agent/calls.json").status_code == 200
    assert sent(app) == []
    entry = entry_of(app, call_sid)
    assert entry["checklist"] is None and not entry["escalated"] and entry["code_result"] is None
    assert len(audits(app, "agent.login")) == before
    assert audits(app, "agent.logout") == []


def test_a_token_from_another_session_is_refused(
    app: Flask, client: FlaskClient, agent: int
) -> None:
    other = app.test_client()
    foreign = csrf_of(other)
    call_sid = transfer(app)
    response = client.post(f"/agent/calls/{call_sid}/escalate", data={"csrf_token": foreign})
    assert response.status_code == 400


def test_a_refused_token_gets_json_when_the_script_asks(
    app: Flask, client: FlaskClient, agent: int
) -> None:
    call_sid = transfer(app)
    response = client.post(
        f"/agent/calls/{call_sid}/escalate", headers={"X-Requested-With": "agent-page"}
    )
    assert response.status_code == 400
    assert response.get_json() == {"error": CSRF_REFUSED}
    assert not entry_of(app, call_sid)["escalated"]


@pytest.mark.parametrize("header", ["X-CSRF-Token", "X-CSRFToken"])
def test_the_script_may_send_the_token_in_a_header(
    app: Flask, client: FlaskClient, agent: int, header: str
) -> None:
    call_sid = transfer(app)
    token = csrf_of(client, "/agent/")
    response = client.post(f"/agent/calls/{call_sid}/escalate", headers={header: token})
    assert response.status_code == 303
    assert entry_of(app, call_sid)["escalated"]


def test_the_token_is_flask_wtfs_and_kept_signed_in_the_session(
    client: FlaskClient, agent: int
) -> None:
    token = csrf_of(client, "/agent/")
    with client.session_transaction() as session:
        raw = session["csrf_token"]
        assert "agent_csrf" not in session  # the hand-written token of before is gone
    assert raw not in token  # the page gets a signed copy, never the session's value
    assert URLSafeTimedSerializer(SECRET, salt="wtf-csrf-token").loads(token) == raw


def test_a_form_from_before_sign_in_is_refused_after_it(app: Flask) -> None:
    add_user(app)
    client = app.test_client()
    before = csrf_of(client)  # the sign-in page's token, as an attacker could have fixed it
    assert sign_in(client).status_code == 303
    with client.session_transaction() as session:
        assert session["csrf_token"] not in before
    refused = client.post("/agent/logout", data={"csrf_token": before})
    assert refused.status_code == 400
    assert client.get("/agent/calls.json").status_code == 200  # still signed in
    after = csrf_of(client, "/agent/")
    assert after != before
    assert client.post("/agent/logout", data={"csrf_token": after}).status_code == 303


def test_a_form_from_before_the_password_is_refused_at_the_code_step(app: Flask) -> None:
    enrol(app, add_user(app))
    client = app.test_client()
    before = csrf_of(client)
    assert sign_in(client).headers["Location"].endswith("/agent/login/code")
    refused = client.post("/agent/login/code", data={"code": "123456", "csrf_token": before})
    assert refused.status_code == 400
    assert audits(app, "agent.login_failed") == []  # refused before any code was checked


# --- the call list --------------------------------------------------------------------------


def test_calls_json_lists_only_the_agents_target_newest_first(
    app: Flask, client: FlaskClient, agent: int
) -> None:
    now = time.time()
    older = transfer(app, at=now - 120)
    newer = transfer(app, at=now - 5, customer="Jane Doe", verification="code")
    transfer(app, target="queue:billing", at=now)
    transfer(app, target="+15005550006", at=now)
    transfer(app, at=now - transfers.ENTRY_TTL - 10)  # over an hour ago: gone

    response = client.get("/agent/calls.json")
    assert response.status_code == 200
    data = response.get_json()
    assert data["target"] == QUEUE
    assert [call["call_sid"] for call in data["calls"]] == [newer, older]
    first = data["calls"][0]
    assert first["customer"] == "Jane Doe"
    assert first["verification"] == "code"
    assert first["account"] == "•••4321"
    assert first["caller"] == "+1415•••0100"
    assert first["pop_url"] == f"/agent/calls/{newer}"
    assert "token" not in json.dumps(data)
    assert response.headers["Cache-Control"] == "no-store"


def test_calls_json_needs_a_signed_in_agent(client: FlaskClient) -> None:
    response = client.get("/agent/calls.json")
    assert response.status_code == 401
    assert response.get_json() == {"error": "sign in first"}


def test_a_transfer_again_moves_the_call_to_the_new_target(
    app: Flask, client: FlaskClient, agent: int
) -> None:
    call_sid = transfer(app, target="queue:billing")
    assert client.get("/agent/calls.json").get_json()["calls"] == []
    transfer(app, call_sid=call_sid)
    assert [c["call_sid"] for c in client.get("/agent/calls.json").get_json()["calls"]] == [
        call_sid
    ]


def test_supervisors_also_see_escalated_calls(app: Flask, client: FlaskClient, agent: int) -> None:
    billing = transfer(app, target="queue:billing")
    mine = transfer(app)
    add_user(app, "sue", role="supervisor", target="queue:supervisors")
    with app.app_context():
        transfers.escalate(kv.client(), billing, by="bob", at=time.time())
    supervisor = app.test_client()
    sign_in(supervisor, "sue")
    calls = supervisor.get("/agent/calls.json").get_json()["calls"]
    assert [(call["call_sid"], call["escalated"]) for call in calls] == [(billing, True)]
    assert supervisor.get(f"/agent/calls/{billing}").status_code == 200
    assert supervisor.get(f"/agent/calls/{mine}").status_code == 404
    # An agent on another target sees neither.
    assert client.get(f"/agent/calls/{billing}").status_code == 404


# --- the screen pop -------------------------------------------------------------------------


def test_screen_pop_shows_the_facts_of_a_verified_call(
    app: Flask, client: FlaskClient, agent: int, jane: int
) -> None:
    call_sid = transfer(
        app,
        account_id=jane,
        **VERIFIED_JANE,
        flow_version="7",
    )
    response = client.get(f"/agent/calls/{call_sid}", headers={"X-Requested-With": "agent-page"})
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    for fact in [
        "Jane Doe",
        "•••4321",
        "+1415•••0100",
        "Verified: account digits and a one-time code",
        "the last four account digits",
        "at 10:01:02 UTC",
        "a code sent by text message",
        "at 10:02:03 UTC",
        "The phone number on file changed recently.",
        "The caller asked for an agent.",
        "support · version 7",
        call_sid,
    ]:
        assert fact in html, fact
    assert JANE_PHONE not in html and JANE_ACCOUNT not in html
    assert 'data-testid="manual"' not in html  # verified: no checklist
    [row] = audits(app, "agent.screen_pop")
    assert (row.actor, row.call_sid, row.account_id) == (f"agent:{agent}", call_sid, jane)
    client.get(f"/agent/?call={call_sid}")
    assert len(audits(app, "agent.screen_pop")) == 1  # one record per agent and call


def test_screen_pop_of_an_unverified_call_offers_verification_by_hand(
    app: Flask, client: FlaskClient, agent: int, jane: int
) -> None:
    call_sid = transfer(app, account_id=jane)
    html = client.get(f"/agent/?call={call_sid}").get_data(as_text=True)
    assert "Unverified caller" in html
    assert "Not verified" in html
    assert "The caller could not be verified." in html
    assert "digits failed" in html
    for label in ("Full name", "Account number or email address", "Phone number"):
        assert label in html
    assert "Text a code to +1415•••0100" in html
    assert "Email a code to j•••@example.com" in html
    assert "Escalate to supervisor" in html
    assert JANE_PHONE not in html and JANE_ACCOUNT not in html and "jane@example.com" not in html


def test_screen_pop_of_an_unknown_caller_has_no_send_button(
    app: Flask, client: FlaskClient, agent: int
) -> None:
    call_sid = transfer(app, account=None, transfer_reason="unknown_caller")
    html = client.get(f"/agent/?call={call_sid}").get_data(as_text=True)
    assert "not identified" in html
    assert "no code can be sent" in html
    assert "Text a code" not in html


@pytest.mark.parametrize(
    ("make_token", "warning"),
    [
        (
            lambda sid: ContextSigner("another-key").sign(context(sid, verification="code")),
            "failed its signature check",
        ),
        (
            lambda sid: ContextSigner("test-secret-key").sign(
                context(new_sid(), verification="code")
            ),
            "failed its signature check",
        ),
        (lambda sid: "not-a-token", "failed its signature check"),
    ],
    ids=["wrong key", "another call's token", "garbage"],
)
def test_screen_pop_distrusts_a_bad_token(
    app: Flask,
    client: FlaskClient,
    agent: int,
    make_token: Callable[[str], str],
    warning: str,
) -> None:
    call_sid = new_sid()
    with app.app_context():
        transfers.record(
            kv.client(),
            target=QUEUE,
            call_sid=call_sid,
            token=make_token(call_sid),
            account_id=None,
            at=time.time(),
        )
    html = client.get(f"/agent/?call={call_sid}").get_data(as_text=True)
    assert warning in html
    assert "Not verified" in html and 'data-testid="manual"' in html
    assert audits(app, "agent.screen_pop")[0].details == {"context": "invalid"}


def test_an_unknown_call_is_not_found(client: FlaskClient, agent: int) -> None:
    assert client.get(f"/agent/calls/{new_sid()}").status_code == 404
    page = client.get(f"/agent/?call={new_sid()}").get_data(as_text=True)
    assert "That call is no longer on your list." in page


# --- verification by hand -------------------------------------------------------------------


def test_checklist_is_saved_and_audited(
    app: Flask, client: FlaskClient, agent: int, jane: int
) -> None:
    call_sid = transfer(app, account_id=jane)
    response = act(client, call_sid, "checklist", matched=["phone", "full_name"])
    html = response.get_data(as_text=True)
    assert "Checklist saved: 2 of 3 matched." in html
    assert re.search(r'value="full_name" checked', html)
    assert re.search(r'value="phone" checked', html)
    assert not re.search(r'value="account_or_email" checked', html)
    assert entry_of(app, call_sid)["checklist"] == ["full_name", "phone"]
    [row] = audits(app, "agent.checklist")
    assert (row.actor, row.call_sid, row.account_id) == (f"agent:{agent}", call_sid, jane)
    assert row.details == {"matched": ["full_name", "phone"], "not_matched": ["account_or_email"]}


def test_nothing_ticked_is_a_checklist_too(app: Flask, client: FlaskClient, agent: int) -> None:
    call_sid = transfer(app)
    html = act(client, call_sid, "checklist").get_data(as_text=True)
    assert "Checklist saved: 0 of 3 matched." in html
    assert entry_of(app, call_sid)["checklist"] == []


def test_a_checklist_item_the_page_never_showed_is_refused_and_nothing_saved(
    app: Flask, client: FlaskClient, agent: int
) -> None:
    call_sid = transfer(app)
    response = act(client, call_sid, "checklist", matched=["phone", "bogus"])
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert re.search(r'<fieldset aria-describedby="matched-error">', html)
    assert re.search(r'id="matched-error"[^>]*>The checklist had an item this page does not', html)
    assert 'data-testid="screen-pop"' in html  # the page again, the call's pop on it
    assert entry_of(app, call_sid)["checklist"] is None
    assert audits(app, "agent.checklist") == []


@pytest.mark.parametrize("channel", [None, "", "fax", "SMS"])
def test_a_channel_the_page_never_offers_is_refused(
    app: Flask, client: FlaskClient, agent: int, jane: int, channel: str | None
) -> None:
    call_sid = transfer(app, account_id=jane)
    form = {} if channel is None else {"channel": channel}
    response = act(client, call_sid, "send-code", **form)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert re.search(r'id="channel-error"[^>]*>Choose how to send the code: by text', html)
    assert 'aria-describedby="channel-error">Text a code to' in html
    assert sent(app) == []
    assert audits(app, "agent.code_sent") == audits(app, "agent.code_not_sent") == []
    assert entry_of(app, call_sid)["code_sent"] is None


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("", "Type the code the caller reads out."),
        ("   ", "Type the code the caller reads out."),
        ("12345", "The code has 6 digits; this one has 5. Ask the caller again."),
        ("1234 567", "The code has 6 digits; this one has 7."),
        ("12a456", "A code is digits only (spaces are fine)."),
        ("١٢٣٤٥٦", "A code is digits only"),  # Arabic-Indic digits: not what was sent
        # Spaces at the ends are stripped, not counted against the 32 characters.
        ("12345" + " " * 40, "The code has 6 digits; this one has 5."),
        ("1 " * 20, "That is too long for a code (at most 32 characters)."),
    ],
)
def test_a_code_of_the_wrong_shape_is_marked_and_costs_no_attempt(
    app: Flask, client: FlaskClient, agent: int, jane: int, typed: str, message: str
) -> None:
    call_sid = transfer(app, account_id=jane)
    act(client, call_sid, "send-code", channel="sms")
    response = act(client, call_sid, "check-code", code=typed)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert re.search(
        r'<input name="code"[^>]*aria-invalid="true" aria-describedby="code-error"', html
    )
    assert re.search(rf'id="code-error"[^>]*>{re.escape(message)}', html)
    assert audits(app, "agent.code_check") == []
    assert entry_of(app, call_sid)["code_result"] == ""  # as the send left it: no result
    # No attempt of the code was used: the code the caller then reads out right passes.
    code = code_of(sent(app)[-1])
    assert code not in html
    passed_page = act(client, call_sid, "check-code", code=code).get_data(as_text=True)
    assert re.search(r'data-testid="code-result">pass<', passed_page)


def test_the_code_length_follows_the_configured_one(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app(IVR_CODE_LENGTH="8")
    jane = add_account(app, "Jane Doe", JANE_PHONE, JANE_ACCOUNT, "jane@example.com")
    add_user(app)
    client = app.test_client()
    assert sign_in(client).status_code == 303
    call_sid = transfer(app, account_id=jane)
    act(client, call_sid, "send-code", channel="sms")
    code = code_of(sent(app)[-1])
    assert len(code) == 8
    short = act(client, call_sid, "check-code", code=code[:6])
    assert short.status_code == 400
    assert "The code has 8 digits; this one has 6." in short.get_data(as_text=True)
    passed_page = act(client, call_sid, "check-code", code=code).get_data(as_text=True)
    assert re.search(r'data-testid="code-result">pass<', passed_page)


def test_code_sent_by_text_then_checked_shows_only_pass_or_fail(
    app: Flask, client: FlaskClient, agent: int, jane: int
) -> None:
    call_sid = transfer(app, account_id=jane)
    response = act(client, call_sid, "send-code", channel="sms")
    assert "Code sent to +1415•••0100." in response.get_data(as_text=True)
    [message] = sent(app)
    assert (message.channel, message.to, message.call_sid) == ("sms", JANE_PHONE, call_sid)
    assert message.purpose == AGENT_VERIFY
    code = code_of(message)
    assert "It expires in 5 minutes." in message.body  # the message_code_sms prompt

    failed = act(client, call_sid, "check-code", code=wrong(code)).get_data(as_text=True)
    assert re.search(r'data-testid="code-result">fail<', failed)
    passed_page = act(client, call_sid, "check-code", code=" ".join(code)).get_data(as_text=True)
    assert re.search(r'data-testid="code-result">pass<', passed_page)
    assert "The caller read out the right code." in passed_page
    for page in (response.get_data(as_text=True), failed, passed_page):
        assert code not in page and wrong(code) not in page
    # The code is single use: reading it out again fails.
    again = act(client, call_sid, "check-code", code=code).get_data(as_text=True)
    assert re.search(r'data-testid="code-result">fail<', again)

    [sent_row] = audits(app, "agent.code_sent")
    assert sent_row.details == {"channel": "sms", "outcome": "sent", "to": "+1415•••0100"}
    checks = audits(app, "agent.code_check")
    assert [row.details for row in checks] == [
        {"result": "fail", "outcome": "wrong"},
        {"result": "pass", "outcome": "ok"},
        {"result": "fail", "outcome": "expired"},
    ]
    assert {(row.actor, row.call_sid, row.account_id) for row in checks} == {
        (f"agent:{agent}", call_sid, jane)
    }
    everything = json.dumps([row.details for row in audits(app, "agent.code_check")])
    assert code not in everything
    assert entry_of(app, call_sid)["code_result"] == "fail"


def test_a_code_twilio_did_not_answer_for_stays_valid(
    app: Flask, client: FlaskClient, agent: int, jane: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twilio took the send but gave no answer in time: the agent is told it may take a
    moment, not that it failed, and the code the caller then reads out passes."""
    original = Outbox.send

    def taken_without_answer(self: Outbox, message: Any) -> str:
        original(self, message)
        raise DeliveryUncertain("sms", "no answer from Twilio in time")

    monkeypatch.setattr(Outbox, "send", taken_without_answer)
    call_sid = transfer(app, account_id=jane)
    html = act(client, call_sid, "send-code", channel="sms").get_data(as_text=True)
    assert "Code sent to +1415•••0100. It may take a moment to arrive." in html
    [row] = audits(app, "agent.code_sent")
    assert row.details["outcome"] == "sent_uncertain"
    code = code_of(sent(app)[-1])
    passed_page = act(client, call_sid, "check-code", code=code).get_data(as_text=True)
    assert re.search(r'data-testid="code-result">pass<', passed_page)


def test_code_by_email_goes_to_the_address_on_file(
    app: Flask, client: FlaskClient, agent: int, jane: int
) -> None:
    call_sid = transfer(app, account_id=jane)
    html = act(client, call_sid, "send-code", channel="email").get_data(as_text=True)
    assert "Code sent to j•••@example.com." in html
    [message] = sent(app)
    assert (message.channel, message.to) == ("email", "jane@example.com")
    assert message.subject == "Your Example support code"


def test_a_code_for_another_call_does_not_pass(
    app: Flask, client: FlaskClient, agent: int, jane: int
) -> None:
    first = transfer(app, account_id=jane)
    second = transfer(app, account_id=jane)
    act(client, first, "send-code", channel="sms")
    code = code_of(sent(app)[-1])
    html = act(client, second, "check-code", code=code).get_data(as_text=True)
    assert re.search(r'data-testid="code-result">fail<', html)


def test_no_code_without_an_account_on_file(app: Flask, client: FlaskClient, agent: int) -> None:
    call_sid = transfer(app, account=None)
    html = act(client, call_sid, "send-code", channel="sms").get_data(as_text=True)
    assert "There is no contact on file" in html
    assert sent(app) == []
    [row] = audits(app, "agent.code_not_sent")
    assert row.details == {"channel": "sms", "outcome": "no_channel", "to": ""}


def test_escalate_marks_the_call_and_audits_once(
    app: Flask, client: FlaskClient, agent: int, jane: int
) -> None:
    call_sid = transfer(app, account_id=jane)
    html = act(client, call_sid, "escalate").get_data(as_text=True)
    assert "Escalated to a supervisor." in html
    entry = entry_of(app, call_sid)
    assert entry["escalated"] and entry["escalated_by"] == "alice"
    assert client.get("/agent/calls.json").get_json()["calls"][0]["escalated"] is True
    again = act(client, call_sid, "escalate").get_data(as_text=True)
    assert "already escalated" in again
    [row] = audits(app, "agent.escalated")
    assert (row.actor, row.call_sid, row.account_id) == (f"agent:{agent}", call_sid, jane)
    assert row.details == {"target": QUEUE}


def test_actions_on_another_targets_call_are_refused(
    app: Flask, client: FlaskClient, agent: int, jane: int
) -> None:
    call_sid = transfer(app, target="queue:billing", account_id=jane)
    for action in ("checklist", "send-code", "check-code", "escalate"):
        response = act(client, call_sid, action, channel="sms", code="123456")
        assert response.status_code == 404, action
    assert sent(app) == []
    assert not entry_of(app, call_sid)["escalated"]
