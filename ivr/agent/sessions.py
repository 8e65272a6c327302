"""Who is signed in to the agent page, and how one gets to be.

The session is the trust boundary of the page and of the agent API: everything a view
may show depends on the agent found here. The Flask session cookie carries only the
random id of a server-side record (ivr.staff.sessions), checked on every request —
page and API alike — against its idle and absolute limits, the account still existing
and not disabled; logout, `ivr users disable`, `totp-reset` and `signout` delete the
record, so a copied cookie is then worth nothing. Redis down: StorageUnavailable, which
the page answers with a 503 — never a way in.

Signing in is two steps when a second factor is asked: the password (a pending sign-in
is remembered server-side, ivr.staff.pending), then a TOTP code or a recovery code.
Both steps are throttled per username (or, for a browser that signed in as that user
before, per device: ivr.staff.devices) and per client address (ivr.staff.throttle);
each attempt is counted before it is checked.
Every sign-in, refusal (with its reason, never what was typed), sign-out and expiry is
audited, as is every action an agent takes (through `audit`, actor the signed-in agent).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import Response, after_this_request, g, jsonify, redirect, request, session, url_for
from flask.blueprints import BlueprintSetupState

from ivr.agent.users import AGENT_PAGE_ROLES, authenticate
from ivr.agent.users import USERNAME as USERNAME_PATTERN
from ivr.staff import csrf, devices, pending, recovery, totp, wiring
from ivr.staff.throttle import DEVICE, USERNAME, Attempt, Scope, scopes_for
from ivr.storage import audit as audit_log
from ivr.storage import db, kv
from ivr.storage.models import Account, AgentUser

SESSION_ID = "staff_session"  # the cookie's only sign-in: the id of the server-side record
PENDING_ID = "staff_pending"  # password checked, second factor awaited

WRONG_CREDENTIALS = "Wrong username or password."
WRONG_CODE = "That code is not right, or was already used. Wait for the next one and try again."
WRONG_RECOVERY_CODE = "That recovery code is not right, or was already used."
START_AGAIN = "Your sign-in expired or had too many wrong codes. Sign in again."
UNREADABLE_SECRET = (  # only ever shown after the right password
    "Your second factor can no longer be checked (the service's key changed)."
    " Ask an admin to run `ivr users totp-reset {username}`."
)
NO_SECOND_FACTOR = (
    "Your account has no second factor set up, and it is required."
    " Ask an admin to run `ivr users totp-reset {username}`."
)


def session_cookie(state: BlueprintSetupState) -> None:
    """The session cookie carries a staff sign-in, so it gets the strict settings."""
    settings = state.app.config["IVR_SETTINGS"]
    state.app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.is_production,
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=settings.staff_session_max),
    )


def signed_in_user() -> AgentUser | None:
    """The agent whose live server-side session this request's cookie names, if the account
    still exists and is enabled; counts the request as use of the session. Raises
    StorageUnavailable when Redis or the database cannot say."""
    token = session.get(SESSION_ID)
    if not isinstance(token, str) or not token:
        return None
    store = wiring.session_store()
    checked = store.check(token)
    if checked.session is None:
        session.pop(SESSION_ID, None)
        if checked.ended is not None:
            audit(
                "agent.session_expired",
                actor=f"agent:{checked.user_id}",
                details={"reason": checked.ended},
            )
        return None
    with db.unavailable_as_storage_error():
        user = db.session().get(AgentUser, checked.session.user_id)
    ended_since = user is not None and (
        user.sessions_valid_after is not None
        and checked.session.created < user.sessions_valid_after
    )
    if user is None or user.disabled or ended_since:  # disabled or signed out since
        store.end(token)
        session.pop(SESSION_ID, None)
        return None
    return user


def current_agent() -> AgentUser:
    """The signed-in agent of a view behind `signed_in`."""
    user: AgentUser | None = g.get("agent_user")
    assert user is not None, "view not behind @signed_in"
    return user


def wants_data() -> bool:
    """Requests from the page's script (or any JSON client) get 401, not a redirect."""
    return bool(request.headers.get("X-Requested-With")) or request.path.endswith(".json")


def signed_in(view: Callable[..., Any]) -> Callable[..., Any]:
    """Views for signed-in agents and supervisors only: others go to the sign-in page (or
    get a 401); ops staff go to their console."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        user: AgentUser | None = g.get("agent_user")
        if user is None:
            if wants_data():
                return jsonify(error="sign in first"), 401
            return redirect(url_for(".login_form"))
        if user.role not in AGENT_PAGE_ROLES:  # ops staff take no calls: their console
            if wants_data():
                return jsonify(error="the agent page is for agents and supervisors"), 403
            return redirect(url_for("ops.index"))
        return view(*args, **kwargs)

    return wrapper


@dataclass(frozen=True)
class Refused:
    """Why a sign-in step was refused: the words for the page and the HTTP status."""

    message: str
    status: int


@dataclass(frozen=True)
class NeedCode:
    """The password was right; the second factor is asked next."""


def client_address() -> str:
    """The address throttling counts a client by: an IPv6 client by its /64 (one host
    usually holds the whole prefix), an IPv4-mapped one by its IPv4 address."""
    raw = request.remote_addr or "unknown"
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        return raw
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def _device(username: str) -> str | None:
    """This browser's device id for `username`, if it signed in as them before."""
    cookie = request.cookies.get(devices.COOKIE)
    return devices.device_of(wiring.settings().secret_key, cookie, username)


def _reserve(username: str, actor: str) -> Attempt | Refused:
    """Count this attempt before checking it, or refuse it while a wait runs."""
    scopes = scopes_for(username, client_address(), _device(username))
    outcome = wiring.login_throttle().attempt(scopes)
    if isinstance(outcome, Attempt):
        return outcome
    audit(
        "agent.login_failed",
        actor=actor,
        details={
            "reason": "too_many_attempts",
            "throttled": outcome.scope,
            "wait": outcome.seconds,
            "client": client_address(),
        },
    )
    minutes = -(-outcome.seconds // 60)
    when = f"{outcome.seconds} seconds" if outcome.seconds < 120 else f"{minutes} minutes"
    return Refused(f"Too many failed sign-ins. Try again in {when}.", 429)


def _failed(actor: str, reason: str) -> None:
    """Audit a failed step (its reserved attempt stays counted as a failure)."""
    audit(
        "agent.login_failed",
        actor=actor,
        details={"reason": reason, "client": client_address()},
    )


def typed_actor(username: str) -> str:
    """How a refused sign-in names who tried: the typed username when it could be one,
    else a fixed word. A name with a colon could pose as a signed-in actor in the audit
    trail ("ops:olga", "agent:1"), and text no username can be is often a password
    typed into the wrong field: neither is recorded."""
    if not username:
        return "(blank)"
    return username if USERNAME_PATTERN.fullmatch(username) else "(not a username)"


def sign_in(username: str, password: str) -> Refused | NeedCode | None:
    """Step one: check the password, throttled per username and client. None: signed in;
    NeedCode: a pending sign-in awaits the second factor."""
    actor = typed_actor(username)
    attempt = _reserve(username, actor)
    if isinstance(attempt, Refused):
        return attempt
    user, why = authenticate(db.session(), username, password)
    if user is None:
        _failed(actor, why)
        return Refused(WRONG_CREDENTIALS, 401)
    if user.totp_secret:
        wiring.login_throttle().succeeded(attempt)  # the code step counts on its own
        session.clear()
        session[PENDING_ID] = pending.start(kv.client(), user.id)
        csrf.renew()  # a form from before the password step is no good after it
        return NeedCode()
    if wiring.settings().staff_2fa == "required":
        wiring.login_throttle().succeeded(attempt)  # the password was no guess
        audit(
            "agent.login_failed",
            actor=actor,
            details={"reason": "no_second_factor", "client": client_address()},
        )
        return Refused(NO_SECOND_FACTOR.format(username=user.username), 403)
    _start(user, "none", attempt)
    return None


def pending_user() -> AgentUser | None:
    """The user of this browser's pending sign-in (password right, code awaited), if any."""
    token = session.get(PENDING_ID)
    if not isinstance(token, str) or not token:
        return None
    user_id = pending.user_of(kv.client(), token)
    user = db.session().get(AgentUser, user_id) if user_id is not None else None
    if user is None or user.disabled or not user.totp_secret:
        session.pop(PENDING_ID, None)
        return None
    return user


def sign_in_code(code: str, recovery_code: str) -> Refused | None:
    """Step two: a TOTP code (or a recovery code) for the pending sign-in. None: signed in."""
    token = session.get(PENDING_ID)
    user = pending_user()
    if user is None or not isinstance(token, str):
        return Refused(START_AGAIN, 401)
    attempt = _reserve(user.username, user.username)
    if isinstance(attempt, Refused):
        return attempt
    if recovery_code.strip():
        secret_key = wiring.settings().secret_key
        if recovery.use(db.session(), secret_key, user.id, recovery_code):
            pending.finish(kv.client(), token)
            _start(user, "recovery_code", attempt)
            left = recovery.remaining(db.session(), user.id)
            audit("agent.recovery_code_used", details={"username": user.username, "left": left})
            return None
        reason, message = "wrong_recovery_code", WRONG_RECOVERY_CODE
    else:
        secret_key = wiring.settings().secret_key
        outcome = totp.check(db.session(), user, code, wiring.clock()(), secret_key)
        if outcome == "ok":
            pending.finish(kv.client(), token)
            _start(user, "totp", attempt)
            return None
        reason = f"{outcome}_code"
        message = (
            UNREADABLE_SECRET.format(username=user.username)
            if outcome == "unreadable"
            else WRONG_CODE
        )
    _failed(user.username, reason)
    if pending.wrong_code(kv.client(), token):
        session.pop(PENDING_ID, None)
        return Refused(START_AGAIN, 401)
    return Refused(message, 401)


def _start(user: AgentUser, second_factor: str, attempt: Attempt) -> None:
    """Open a server-side session for the user: a fresh cookie (and CSRF token), the
    user's failures forgotten, and this browser remembered as their device."""
    settings = wiring.settings()
    device = _device(user.username)
    forget = [Scope(USERNAME, user.username)] + ([Scope(DEVICE, device)] if device else [])
    wiring.login_throttle().succeeded(attempt, forget)
    if device is None:
        cookie = devices.issue(settings.secret_key, user.username)

        @after_this_request
        def remember_device(response: Response) -> Response:
            response.set_cookie(
                devices.COOKIE,
                cookie,
                max_age=devices.MAX_AGE,
                httponly=True,
                secure=settings.is_production,
                samesite="Strict",
            )
            return response

    session.clear()
    session[SESSION_ID] = wiring.session_store().start(user.id)
    session.permanent = True
    csrf.renew()  # a form from before the sign-in is no good after it
    g.agent_user = user
    audit(
        "agent.login",
        details={
            "username": user.username,
            "role": user.role,
            "second_factor": second_factor,
            "client": client_address(),
        },
    )


def sign_out() -> None:
    """End the session — its server-side record first — audited when an agent was signed in."""
    token = session.get(SESSION_ID)
    if isinstance(token, str) and token:
        wiring.session_store().end(token)
    user: AgentUser | None = g.get("agent_user")
    if user is not None:
        audit("agent.logout", details={"username": user.username})
    session.clear()


def audit(
    action: str,
    *,
    actor: str | None = None,
    call_sid: str | None = None,
    account_id: int | None = None,
    details: dict[str, Any] | None = None,
    dedupe_key: str | None = None,
) -> None:
    """Audit an agent's action, as "agent:<id>" unless `actor` says otherwise."""
    session_db = db.session()
    if account_id is not None and session_db.get(Account, account_id) is None:
        account_id = None  # erased since the transfer: keep the record, drop the link
    audit_log.record(
        session_db,
        action,
        actor=actor or f"agent:{current_agent().id}",
        call_sid=call_sid,
        account_id=account_id,
        details=details,
        dedupe_key=dedupe_key,
    )
