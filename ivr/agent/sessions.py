"""Who is signed in to the agent page, and how one gets to be.

The session is the trust boundary of the page: everything a view may show depends on
the agent found here, so signing in, signing out, throttling failed sign-ins and
recognising the agent on each request live in one place. A sign-in sets exactly
`session["agent_user_id"]`, which the agent API accepts too; the session cookie is
HttpOnly, SameSite=Lax, Secure in production and lasts one shift. Every sign-in,
failed sign-in and sign-out is audited, as is every action an agent takes (through
`audit` here, since the actor is the signed-in agent), with masked values only.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import g, jsonify, redirect, request, session, url_for
from flask.blueprints import BlueprintSetupState

from ivr.agent.forms import csrf_token
from ivr.agent.users import authenticate, clear_login_failures, count_login_failure, login_blocked
from ivr.storage import audit as audit_log
from ivr.storage import db, kv
from ivr.storage.models import Account, AgentUser

SESSION_USER = "agent_user_id"  # the agent API reads the same key
SESSION_HOURS = 12  # one shift

TOO_MANY_ATTEMPTS = "Too many failed sign-ins for this username. Try again in 15 minutes."
WRONG_CREDENTIALS = "Wrong username or password."


def session_cookie(state: BlueprintSetupState) -> None:
    """The session cookie carries an agent sign-in, so it gets the strict settings."""
    settings = state.app.config["IVR_SETTINGS"]
    state.app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.is_production,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=SESSION_HOURS),
    )


def signed_in_user() -> AgentUser | None:
    """The agent this session belongs to, if the account still exists and is enabled."""
    user_id = session.get(SESSION_USER)
    if not isinstance(user_id, int):
        return None
    user = db.session().get(AgentUser, user_id)
    if user is None or user.disabled:  # disabling an account ends its sessions too
        session.pop(SESSION_USER, None)
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
    """Views for signed-in agents only: others go to the sign-in page (or get a 401)."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if g.get("agent_user") is None:
            if wants_data():
                return jsonify(error="sign in first"), 401
            return redirect(url_for(".login_form"))
        return view(*args, **kwargs)

    return wrapper


@dataclass(frozen=True)
class Refused:
    """Why a sign-in was refused: the words for the page and the HTTP status."""

    message: str
    status: int


def sign_in(username: str, password: str) -> Refused | None:
    """Check the credentials, throttled per username, and start the agent's session."""
    client = kv.client()
    actor = username or "(blank)"
    if login_blocked(client, username):
        audit("agent.login_failed", actor=actor, details={"reason": "too_many_attempts"})
        return Refused(TOO_MANY_ATTEMPTS, 429)
    user, why = authenticate(db.session(), username, password)
    if user is None:
        count_login_failure(client, username)
        audit("agent.login_failed", actor=actor, details={"reason": why})
        return Refused(WRONG_CREDENTIALS, 401)
    clear_login_failures(client, username)
    session.clear()  # a fresh session (and CSRF token) for the signed-in agent
    session[SESSION_USER] = user.id
    session.permanent = True
    csrf_token()
    g.agent_user = user
    audit("agent.login", details={"username": user.username, "role": user.role})
    return None


def sign_out() -> None:
    """End the session, audited when an agent was signed in."""
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
