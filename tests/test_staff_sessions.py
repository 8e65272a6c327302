"""Server-side staff sessions: a copied cookie is useless after logout, `ivr users disable`
and `signout` end every session of a user at once, the idle and absolute limits hold on
the server's clock, and with Redis down nobody gets in."""

from __future__ import annotations

import pytest
import redis
from agent_kit import add_user, csrf_of, sign_in, staff_clock, transfer
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from ivr.agent.api import context_signer
from ivr.storage import db, keys, kv
from ivr.storage.models import AuditEvent

CLOSED_REDIS = "redis://127.0.0.1:1/0"


def audits(app: Flask, action: str) -> list[AuditEvent]:
    with app.app_context():
        query = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        return list(db.session().scalars(query))


def context_token(app: Flask) -> str:
    with app.app_context():
        return context_signer().sign({"schema": 1, "call_sid": "CA" + "ab" * 16})


def signed_in_client(app: Flask, username: str = "alice") -> FlaskClient:
    client = app.test_client()
    assert sign_in(client, username).status_code == 303
    return client


def replay(app: Flask, cookie: str) -> FlaskClient:
    """A new browser holding a copy of someone's session cookie."""
    thief = app.test_client()
    thief.set_cookie("session", cookie)
    return thief


def is_let_in(client: FlaskClient, token: str) -> dict[str, int]:
    """What the page, the page's data and the agent API answer this client."""
    return {
        "page": client.get("/agent/").status_code,
        "data": client.get("/agent/calls.json").status_code,
        "api": client.get(f"/agent/api/context/{token}").status_code,
    }


SIGNED_IN = {"page": 200, "data": 200, "api": 200}
SIGNED_OUT = {"page": 302, "data": 401, "api": 401}


def test_a_copied_cookie_is_useless_after_logout(app: Flask) -> None:
    add_user(app)
    token = context_token(app)
    client = signed_in_client(app)
    cookie = client.get_cookie("session")
    assert cookie is not None
    assert is_let_in(replay(app, cookie.value), token) == SIGNED_IN  # the copy works while live
    response = client.post("/agent/logout", data={"csrf_token": csrf_of(client, "/agent/")})
    assert response.status_code == 303
    assert is_let_in(replay(app, cookie.value), token) == SIGNED_OUT
    assert is_let_in(client, token) == SIGNED_OUT
    [row] = audits(app, "agent.logout")
    assert row.details == {"username": "alice"}


def test_the_session_id_is_not_stored_in_redis_as_is(app: Flask) -> None:
    add_user(app)
    client = signed_in_client(app)
    with client.session_transaction() as session:
        session_id = session["staff_session"]
    with app.app_context():
        store = kv.client()
        stored = [key.decode() for key in store.scan_iter(f"{keys.PREFIX}:*staff*")]
        read = {"hash": store.hgetall, "zset": lambda key: store.zrange(key, 0, -1)}
        values = [str(read[store.type(key).decode()](key)) for key in stored]
    assert {key.split("{")[1].split(":")[0] for key in stored} == {"staff-session", "staff-user"}
    assert not any(session_id in text for text in stored + values)


def test_disable_ends_every_session_of_the_user_at_once(app: Flask, runner) -> None:  # type: ignore[no-untyped-def]
    add_user(app)
    add_user(app, "bob")
    token = context_token(app)
    desk, laptop = signed_in_client(app), signed_in_client(app)
    bob = signed_in_client(app, "bob")
    listed = runner.invoke(args=["users", "sessions", "alice"])
    assert listed.exit_code == 0 and len(listed.output.strip().splitlines()) == 3  # header + 2

    result = runner.invoke(args=["users", "disable", "alice"])
    assert result.exit_code == 0, result.output
    assert "disabled alice; 2 session(s) ended" in result.output
    assert is_let_in(desk, token) == SIGNED_OUT
    assert is_let_in(laptop, token) == SIGNED_OUT
    assert is_let_in(bob, token) == SIGNED_IN  # another user's session is untouched
    [row] = audits(app, "agent_user.disabled")
    assert row.details["sessions_ended"] == 2

    # Enabled again, the old sessions stay ended: sign in anew.
    assert runner.invoke(args=["users", "enable", "alice"]).exit_code == 0
    assert is_let_in(desk, token) == SIGNED_OUT
    assert is_let_in(signed_in_client(app), token) == SIGNED_IN
    assert [row.action for row in audits(app, "agent_user.enabled")] == ["agent_user.enabled"]


def test_signout_ends_the_sessions_and_keeps_the_account(app: Flask, runner) -> None:  # type: ignore[no-untyped-def]
    user_id = add_user(app)
    token = context_token(app)
    client = signed_in_client(app)
    result = runner.invoke(args=["users", "signout", "alice"])
    assert result.exit_code == 0, result.output
    assert "signed out alice: 1 session(s) ended" in result.output
    assert is_let_in(client, token) == SIGNED_OUT
    assert "alice has no live sessions" in runner.invoke(args=["users", "sessions", "alice"]).output
    assert is_let_in(signed_in_client(app), token) == SIGNED_IN
    [row] = audits(app, "agent_user.signed_out")
    assert (row.actor, row.details["user_id"], row.details["sessions_ended"]) == ("cli", user_id, 1)


def test_an_idle_session_ends_on_the_server(app: Flask) -> None:
    clock = staff_clock(app)
    user_id = add_user(app)
    client = signed_in_client(app)
    idle = app.config["IVR_SETTINGS"].staff_session_idle
    for _ in range(3):  # use keeps it alive, well past one idle period in all
        clock.ahead += idle - 60
        assert client.get("/agent/calls.json").status_code == 200
    clock.ahead += idle
    assert client.get("/agent/calls.json").status_code == 401
    [row] = audits(app, "agent.session_expired")
    assert (row.actor, row.details) == (f"agent:{user_id}", {"reason": "idle"})


def test_a_used_session_still_ends_at_the_absolute_limit(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app(IVR_STAFF_SESSION_HOURS="1", IVR_STAFF_SESSION_IDLE_MINUTES="30")
    clock = staff_clock(app)
    add_user(app)
    client = signed_in_client(app)
    for _ in range(3):
        clock.ahead += 20 * 60 - 1
        assert client.get("/agent/calls.json").status_code == 200
    clock.ahead += 4
    assert client.get("/agent/").headers["Location"].endswith("/agent/login")
    assert audits(app, "agent.session_expired")[0].details == {"reason": "max_age"}


def test_the_cookie_lives_no_longer_than_the_absolute_limit(make_app) -> None:  # type: ignore[no-untyped-def]
    app = make_app(IVR_STAFF_SESSION_HOURS="2")
    assert app.test_client().get("/agent/login").status_code == 200
    assert app.permanent_session_lifetime.total_seconds() == 7200


@pytest.mark.parametrize("path", ["/agent/", "/agent/calls.json"])
def test_redis_down_answers_503_and_lets_nobody_in(app: Flask, path: str) -> None:
    add_user(app)
    client = signed_in_client(app)
    transfer(app)
    app.extensions["ivr.redis"] = redis.Redis.from_url(CLOSED_REDIS, socket_connect_timeout=0.5)
    response = client.get(path)
    assert response.status_code == 503
    assert "storage not reachable" in response.get_data(as_text=True)


def test_redis_down_the_api_answers_503_to_a_session(app: Flask) -> None:
    add_user(app)
    token = context_token(app)
    client = signed_in_client(app)
    app.extensions["ivr.redis"] = redis.Redis.from_url(CLOSED_REDIS, socket_connect_timeout=0.5)
    response = client.get(f"/agent/api/context/{token}")
    assert response.status_code == 503
    assert "schema" not in response.get_data(as_text=True)


def test_redis_down_no_one_signs_in(app: Flask) -> None:
    add_user(app)
    client = app.test_client()
    token = csrf_of(client)
    app.extensions["ivr.redis"] = redis.Redis.from_url(CLOSED_REDIS, socket_connect_timeout=0.5)
    response = client.post(
        "/agent/login",
        data={"username": "alice", "password": "correct horse battery", "csrf_token": token},
    )
    assert response.status_code == 503
    with client.session_transaction() as session:
        assert "staff_session" not in session


@pytest.mark.parametrize("command", ["disable", "signout", "totp-reset"])
def test_sessions_end_even_when_redis_missed_it(
    app: Flask, runner, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:  # type: ignore[no-untyped-def]
    """Redis unreachable while the command ran: its records could not be deleted, but
    the database says when the user's sessions ended, and every request checks it — so
    a copied cookie stays useless, also after `ivr users enable`."""
    from ivr.errors import StorageUnavailable
    from ivr.staff.sessions import SessionStore

    add_user(app)
    token = context_token(app)
    stolen = signed_in_client(app)

    def redis_down(*_args: object, **_kwargs: object) -> int:
        raise StorageUnavailable("redis unavailable")

    with monkeypatch.context() as patched:
        patched.setattr(SessionStore, "end_all", redis_down)
        result = runner.invoke(args=["users", command, "alice"])
    assert result.exit_code == 0, result.output
    assert "sessions end at their next request" in result.output
    if command == "disable":
        assert runner.invoke(args=["users", "enable", "alice"]).exit_code == 0
    assert is_let_in(stolen, token) == SIGNED_OUT
    if command != "totp-reset":  # (a reset account signs in with its new code)
        assert is_let_in(signed_in_client(app), token) == SIGNED_IN
