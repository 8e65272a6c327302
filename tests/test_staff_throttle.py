"""Login throttling per username and per client address: a sliding window in Redis and a
doubling, capped delay. Spraying from one client is slowed; a named agent is never locked
out: the right password and code from a clean client work once the delay has passed."""

from __future__ import annotations

import json
import threading

import fakeredis
import pytest
from agent_kit import (
    PASSWORD,
    add_user,
    code_at,
    csrf_of,
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

from ivr.staff.throttle import (
    CLIENT,
    USERNAME,
    WINDOW,
    Attempt,
    LoginThrottle,
    Scope,
    Wait,
    scopes_for,
)
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


def alice_from(client: str) -> list[Scope]:
    return scopes_for("alice", client)


def fail(throttle: LoginThrottle, scopes: list[Scope]) -> None:
    """One failed attempt: counted when reserved, never undone."""
    assert isinstance(throttle.attempt(scopes), Attempt)


def test_the_wait_runs_from_the_last_failure(throttle: LoginThrottle) -> None:
    clock = throttle.clock
    assert isinstance(clock, Clock)
    for _ in range(USERNAME.free):
        fail(throttle, alice_from("10.0.0.1"))
    assert throttle.attempt(alice_from("10.0.0.9")) == Wait(30, "username")
    clock.ahead += 29
    assert throttle.attempt(alice_from("10.0.0.9")) == Wait(1, "username")
    clock.ahead += 1
    fail(throttle, alice_from("10.0.0.1"))  # the sixth: twice as long, from now
    assert throttle.attempt(alice_from("10.0.0.9")) == Wait(60, "username")


def test_asking_while_throttled_does_not_extend_the_wait(throttle: LoginThrottle) -> None:
    clock = throttle.clock
    assert isinstance(clock, Clock)
    for _ in range(USERNAME.free):
        fail(throttle, alice_from("10.0.0.1"))
    for _ in range(100):  # hammering: refused, never counted
        assert isinstance(throttle.attempt(alice_from("10.0.0.1")), Wait)
    clock.ahead += 30
    assert isinstance(throttle.attempt(alice_from("10.0.0.1")), Attempt)


def test_failures_leave_the_sliding_window(throttle: LoginThrottle) -> None:
    clock = throttle.clock
    assert isinstance(clock, Clock)
    for _ in range(USERNAME.free - 1):
        fail(throttle, alice_from("10.0.0.1"))
    clock.ahead += WINDOW - 10
    fail(throttle, alice_from("10.0.0.1"))  # five in the window: a wait
    assert throttle.attempt(alice_from("10.0.0.1")) == Wait(30, "username")
    clock.ahead += 31  # the first four are out of the window, the wait is over
    fail(throttle, alice_from("10.0.0.1"))
    assert isinstance(throttle.attempt(alice_from("10.0.0.1")), Attempt)  # three in it


def test_a_success_clears_the_username_but_not_the_client(throttle: LoginThrottle) -> None:
    for number in range(CLIENT.free - 1):
        fail(throttle, scopes_for(f"user{number % USERNAME.free}", "10.0.0.66"))
    right = throttle.attempt(scopes_for("user0", "10.0.0.66"))
    assert isinstance(right, Attempt)
    throttle.succeeded(right, forget=[Scope(USERNAME, "user0")])
    assert isinstance(throttle.attempt(scopes_for("user0", "10.0.0.1")), Attempt)
    fail(throttle, scopes_for("mallory", "10.0.0.66"))  # the tenth failure of the client
    assert throttle.attempt(scopes_for("mallory", "10.0.0.66")) == Wait(30, "client")


def test_attempts_fired_at_once_share_the_free_allowance(throttle: LoginThrottle) -> None:
    """Each attempt is counted before it is checked: fifty at the same moment get the
    five free ones between them, not fifty checks."""
    barrier = threading.Barrier(50)
    outcomes: list[object] = []

    def guess() -> None:
        barrier.wait()
        outcomes.append(throttle.attempt(alice_from("203.0.113.9")))

    threads = [threading.Thread(target=guess) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(isinstance(outcome, Attempt) for outcome in outcomes) == USERNAME.free


def test_a_known_device_is_counted_apart_from_the_username(throttle: LoginThrottle) -> None:
    for _ in range(40):  # an attacker keeps alice's username throttled
        throttle.attempt(alice_from("203.0.113.9"))
    assert isinstance(throttle.attempt(alice_from("198.51.100.7")), Wait)
    own = scopes_for("alice", "198.51.100.7", device="alices-laptop")
    assert isinstance(throttle.attempt(own), Attempt)


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


def test_an_agent_is_never_kept_out_of_their_own_browser(app: Flask) -> None:
    """An attacker who keeps alice's username throttled for hours — guessing again each
    time the wait ends — slows other browsers, never the one she signed in from before."""
    clock = staff_clock(app)
    secret = secret_of(enrol(app, add_user(app)))
    own = browser(app, "198.51.100.7")
    assert sign_in_with_code(own, code_at(secret, clock())).status_code == 303
    assert own.get_cookie("ivr_staff_device") is not None
    own.post("/agent/logout", data={"csrf_token": csrf_of(own, "/agent/")})
    attacker = browser(app, "203.0.113.9")
    elsewhere = browser(app, "192.0.2.44")  # a browser alice never used
    for _ in range(6 * 30):  # six hours, one guess each time the wait is over
        if sign_in(attacker, "alice", WRONG).status_code == 401:
            continue
        clock.ahead += 120
    assert sign_in(elsewhere).status_code == 429  # the username is throttled…
    clock.ahead += 30  # (a code step later than the last one used)
    answer = sign_in_with_code(own, code_at(secret, clock()))
    assert answer.status_code == 303  # …but not for alice's own browser
    assert own.get("/agent/calls.json").status_code == 200


def test_a_device_cookie_counts_only_for_its_user_and_only_when_genuine(app: Flask) -> None:
    clock = staff_clock(app)
    add_user(app, "alice")
    add_user(app, "bob")
    bobs = browser(app, "198.51.100.8")
    assert sign_in(bobs, "bob").status_code == 303  # bob's browser now has bob's cookie
    attacker = browser(app, "203.0.113.9")
    for _ in range(USERNAME.free):
        sign_in(attacker, "alice", WRONG)
    bobs_cookie = bobs.get_cookie("ivr_staff_device")
    assert bobs_cookie is not None
    with_bobs = browser(app, "198.51.100.8")  # bob's browser, signed out
    with_bobs.set_cookie("ivr_staff_device", bobs_cookie.value)
    assert sign_in(with_bobs, "alice").status_code == 429  # bob's cookie is no key to alice
    forged = browser(app, "198.51.100.9")
    forged.set_cookie("ivr_staff_device", "eyJ1IjoiYWxpY2UiLCJkIjoieCJ9.forged.sig")
    assert sign_in(forged, "alice").status_code == 429
    clock.ahead += USERNAME.delay(USERNAME.free)
    assert sign_in(forged, "alice").status_code == 303


def test_ipv6_clients_are_counted_by_their_64_prefix(app: Flask) -> None:
    staff_clock(app)
    add_user(app)
    for host in range(CLIENT.free):  # a sprayer hopping addresses inside one /64
        sprayer = browser(app, f"2001:db8:1:2::{host + 1:x}")
        assert sign_in(sprayer, f"nobody{host:02d}", WRONG).status_code == 401
    assert sign_in(browser(app, "2001:db8:1:2::ffff"), "somebody", WRONG).status_code == 429
    assert sign_in(browser(app, "2001:db8:1:3::1"), "alice").status_code == 303
