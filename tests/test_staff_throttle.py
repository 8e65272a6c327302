"""Login throttling per username and per client address: a sliding window in Redis and a
doubling, capped delay. Spraying from one client is slowed; a named agent is never locked
out: the right password and code from a clean client work once the delay has passed."""

from __future__ import annotations

import json

import fakeredis
import pytest
from agent_kit import (
    PASSWORD,
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
from flask.testing import FlaskClient
from kit import Clock
from sqlalchemy import select

from ivr.staff.throttle import CLIENT, USERNAME, WINDOW, LoginThrottle, Wait
from ivr.storage import db
from ivr.storage.models import AuditEvent

WRONG = "not the password!"


def audits(app: Flask, action: str) -> list[AuditEvent]:
    with app.app_context():
        query = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        return list(db.session().scalars(query))


def browser(app: Flask, address: str) -> FlaskClient:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


# --- the policy and the window, on their own ------------------------------------------------


def test_the_delay_doubles_after_the_free_failures_and_is_capped() -> None:
    assert [USERNAME.delay(n) for n in range(4, 11)] == [0, 30, 60, 120, 240, 300, 300]
    assert [CLIENT.delay(n) for n in (9, 10, 11, 14, 15, 60)] == [0, 30, 60, 480, 900, 900]


@pytest.fixture
def throttle() -> LoginThrottle:
    return LoginThrottle(fakeredis.FakeRedis(), Clock())


def test_the_wait_runs_from_the_last_failure(throttle: LoginThrottle) -> None:
    clock = throttle.clock
    assert isinstance(clock, Clock)
    for _ in range(USERNAME.free):
        assert throttle.wait("alice", "10.0.0.1") is None
        throttle.failed("alice", "10.0.0.1")
    assert throttle.wait("alice", "10.0.0.9") == Wait(30, "username")
    clock.ahead += 29
    assert throttle.wait("alice", "10.0.0.9") == Wait(1, "username")
    clock.ahead += 1
    assert throttle.wait("alice", "10.0.0.9") is None
    throttle.failed("alice", "10.0.0.1")  # the sixth: twice as long, from now
    assert throttle.wait("alice", "10.0.0.9") == Wait(60, "username")


def test_asking_while_throttled_does_not_extend_the_wait(throttle: LoginThrottle) -> None:
    clock = throttle.clock
    assert isinstance(clock, Clock)
    for _ in range(USERNAME.free):
        throttle.failed("alice", "10.0.0.1")
    for _ in range(100):  # hammering: refused, never counted
        assert throttle.wait("alice", "10.0.0.1") is not None
    clock.ahead += 30
    assert throttle.wait("alice", "10.0.0.1") is None


def test_failures_leave_the_sliding_window(throttle: LoginThrottle) -> None:
    clock = throttle.clock
    assert isinstance(clock, Clock)
    for _ in range(USERNAME.free - 1):
        throttle.failed("alice", "10.0.0.1")
    clock.ahead += WINDOW - 10
    throttle.failed("alice", "10.0.0.1")  # five in the window: a wait
    assert throttle.wait("alice", "10.0.0.1") == Wait(30, "username")
    clock.ahead += 11  # the first four are out of the window now
    assert throttle.wait("alice", "10.0.0.1") is None
    throttle.failed("alice", "10.0.0.1")
    assert throttle.wait("alice", "10.0.0.1") is None  # two in the window


def test_a_success_clears_the_username_but_not_the_client(throttle: LoginThrottle) -> None:
    for number in range(CLIENT.free):
        throttle.failed(f"user{number % USERNAME.free}", "10.0.0.66")
    throttle.succeeded("user0")
    assert throttle.wait("user0", "10.0.0.1") is None
    assert throttle.wait("mallory", "10.0.0.66") == Wait(30, "client")


# --- through the sign-in --------------------------------------------------------------------


def test_spraying_many_usernames_from_one_client_is_slowed(app: Flask) -> None:
    staff_clock(app)
    for number in range(21):
        add_user(app, f"agent{number:02d}")
    sprayer = browser(app, "203.0.113.9")
    statuses = []
    for attempt in range(25):
        username = f"agent{attempt % 21:02d}"
        statuses.append(sign_in(sprayer, username, f"guess number {attempt}").status_code)
    assert statuses[: CLIENT.free] == [401] * CLIENT.free
    assert 429 in statuses[:24]
    assert statuses[CLIENT.free :] == [429] * (25 - CLIENT.free)
    refused = [row.details for row in audits(app, "agent.login_failed")]
    assert refused[-1] == {
        "reason": "too_many_attempts",
        "throttled": "client",
        "wait": 30,
        "client": "203.0.113.9",
    }
    assert len(refused) == 25  # every refusal audited
    assert not any("guess number" in json.dumps(details) for details in refused)
    # Someone else, elsewhere, still signs in at once.
    assert sign_in(browser(app, "198.51.100.7"), "agent20").status_code == 303


def test_a_named_agent_is_never_locked_out(app: Flask) -> None:
    clock = staff_clock(app)
    secret = secret_of(enrol(app, add_user(app)))
    attacker = browser(app, "203.0.113.9")
    statuses = []
    for _ in range(40):  # keeps guessing alice's password, without waiting
        statuses.append(sign_in(attacker, "alice", WRONG).status_code)
    assert statuses.count(401) == USERNAME.free and statuses[-1] == 429

    alice = browser(app, "198.51.100.7")
    too_soon = sign_in(alice)
    assert too_soon.status_code == 429
    assert "Try again in 30 seconds." in too_soon.get_data(as_text=True)
    clock.ahead += USERNAME.delay(USERNAME.free)
    assert sign_in_with_code(alice, code_at(secret, clock())).status_code == 303
    assert alice.get("/agent/calls.json").status_code == 200
    # The attacker's address stays slowed, for any username.
    assert sign_in(attacker, "bob", WRONG).status_code == 401  # username bob is fresh
    assert audits(app, "agent.login")[-1].details["client"] == "198.51.100.7"


def test_even_at_the_cap_the_wait_ends(app: Flask) -> None:
    clock = staff_clock(app)
    add_user(app)
    for failures in range(10):  # from many addresses, each waiting just its turn
        clock.ahead += USERNAME.delay(failures)
        assert sign_in(browser(app, f"203.0.113.{failures}"), "alice", WRONG).status_code == 401
    assert USERNAME.delay(10) == USERNAME.cap  # all ten within the window
    alice = browser(app, "198.51.100.7")
    too_soon = sign_in(alice)
    assert too_soon.status_code == 429
    assert "Try again in 5 minutes." in too_soon.get_data(as_text=True)
    clock.ahead += USERNAME.cap
    assert sign_in(alice).status_code == 303


def test_wrong_codes_count_as_failures(app: Flask) -> None:
    clock = staff_clock(app)
    secret = secret_of(enrol(app, add_user(app)))
    client = browser(app, "203.0.113.9")
    right = code_at(secret, clock())
    wrong = f"{(int(right) + 500_000) % 1_000_000:06d}"
    for _ in range(USERNAME.free - 1):
        sign_in(client)  # a fresh pending sign-in each time
        assert send_code(client, wrong).status_code == 401
    sign_in(client)
    assert send_code(client, wrong).status_code == 401  # the fifth failure
    throttled = send_code(client, right)
    assert throttled.status_code == 429
    assert audits(app, "agent.login_failed")[-1].details["throttled"] == "username"
    clock.ahead += 30
    assert send_code(client, code_at(secret, clock())).status_code == 303


def test_a_throttled_password_step_does_not_check_the_password(app: Flask) -> None:
    staff_clock(app)
    add_user(app)
    client = browser(app, "203.0.113.9")
    for _ in range(USERNAME.free):
        sign_in(client, "alice", WRONG)
    before = len(audits(app, "agent.login_failed"))
    assert sign_in(client, "alice", PASSWORD).status_code == 429
    [row] = audits(app, "agent.login_failed")[before:]
    assert row.details["reason"] == "too_many_attempts"  # not "ok", not "wrong_password"


@pytest.mark.parametrize(("hops", "separate"), [("0", False), ("1", True)])
def test_behind_a_proxy_the_forwarded_client_is_throttled(
    make_app, hops: str, separate: bool
) -> None:  # type: ignore[no-untyped-def]
    """With IVR_PROXY_HOPS=1 the client named by the router's X-Forwarded-For is counted;
    without it every sign-in comes from the router, so one sprayer slows everyone."""
    app: Flask = make_app(IVR_PROXY_HOPS=hops)
    staff_clock(app)
    add_user(app, "alice")
    sprayer = browser(app, "10.0.0.1")  # the router's address
    sprayer.environ_base["HTTP_X_FORWARDED_FOR"] = "203.0.113.9"
    for attempt in range(CLIENT.free):
        sign_in(sprayer, f"nobody{attempt:02d}", WRONG)
    colleague = browser(app, "10.0.0.1")
    colleague.environ_base["HTTP_X_FORWARDED_FOR"] = "198.51.100.7"
    assert sign_in(colleague, "alice").status_code == (303 if separate else 429)
