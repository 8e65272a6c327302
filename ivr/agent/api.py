"""The agent API: signed call context for agent desktops (`/agent/api`).

`GET /agent/api/context/<token>` returns the context a signed token carries
(see ivr.agent.context) to one of two kinds of requester:

- an agent desktop or integration presenting `Authorization: Bearer <key>`, where
  the key is one of IVR_AGENT_API_KEYS (none configured: keys are refused);
- a signed-in agent: the session cookie must name a live server-side staff session
  of an enabled account (ivr.agent.sessions.signed_in_user, the same check as the agent
  page's), so a cookie kept after logout, `ivr users disable` or an expiry is refused.
  Redis or the database unreachable: 503, never a way in.

A request carrying an Authorization header is judged by that header alone: a wrong
key is refused even when the browser also holds an agent session.

Answers are JSON, errors `{"error": "..."}`, and never cached (`Cache-Control:
no-store`). 401: no or wrong credentials, or a token that is not genuine; 410: a
genuine token past its lifetime. Every answer is audited — `agent.context_viewed`
or `agent.context_refused` with the reason — naming the token by a short hash only.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from ivr.agent.context import ContextExpired, ContextInvalid, ContextSigner, token_fingerprint
from ivr.agent.sessions import signed_in_user
from ivr.agent.users import AGENT_PAGE_ROLES
from ivr.config import Settings
from ivr.errors import StorageUnavailable
from ivr.storage import audit, db

log = logging.getLogger(__name__)

bp = Blueprint("agent_api", __name__, url_prefix="/agent/api")


@dataclass(frozen=True)
class Requester:
    """Who asked: `kind` is api-key, agent or anonymous; `actor` names them in audits."""

    kind: str
    actor: str
    refusal: str | None = None  # why they are not allowed, when they are not


def context_signer() -> ContextSigner:
    """The app's context signer (IVR_SECRET_KEY, IVR_AGENT_CONTEXT_TTL), made once per app."""
    signer = current_app.extensions.get("ivr.agent_context")
    if signer is None:
        settings: Settings = current_app.config["IVR_SETTINGS"]
        signer = ContextSigner(settings.secret_key, settings.agent_context_ttl)
        current_app.extensions["ivr.agent_context"] = signer
    assert isinstance(signer, ContextSigner)
    return signer


NOT_AN_AGENT = "not_an_agent"  # signed in, but in a role that takes no calls


def key_actor(key: str) -> str:
    """How an API key is named in audit records: a hash prefix, never the key."""
    return "api-key:" + hashlib.sha256(key.encode()).hexdigest()[:8]


@bp.after_request
def _no_store(response: Response) -> Response:
    # Context is about a live customer: no browser, proxy or desktop cache may keep it.
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/context/<token>")
def context(token: str) -> tuple[Response, int] | Response:
    """The context a signed token carries, for an API key holder or a logged-in agent."""
    try:
        requester = _requester()
    except StorageUnavailable as exc:
        log.error("agent context: the session could not be checked: %s", exc)
        return _error(503, "storage unavailable; try again")
    fingerprint = token_fingerprint(token)
    if requester.refusal == NOT_AN_AGENT:
        return _refuse(403, requester, requester.refusal, fingerprint)
    if requester.refusal is not None:
        return _refuse(401, requester, requester.refusal, fingerprint)
    try:
        facts = context_signer().load(token)
    except ContextExpired as exc:
        return _refuse(410, requester, "expired", fingerprint, call_sid=exc.call_sid)
    except ContextInvalid:
        return _refuse(401, requester, "invalid_token", fingerprint)
    call_sid = facts.get("call_sid") if isinstance(facts.get("call_sid"), str) else None
    if not _audit(
        "agent.context_viewed",
        requester,
        call_sid,
        {"requester": requester.kind, "token": fingerprint},
    ):
        return _error(503, "storage unavailable; try again")
    log.info("agent context of call %s viewed by %s", call_sid, requester.actor)
    return jsonify(facts)


def _requester() -> Requester:
    """Authenticate the request: a bearer key when a header is sent, else the agent's
    server-side session (StorageUnavailable when it cannot be checked)."""
    header = request.headers.get("Authorization")
    if header is not None:
        auth = request.authorization
        if auth is None or auth.type != "bearer" or not auth.token:
            return Requester("api-key", "api-key:unknown", "bad_authorization")
        key = _matching_key(auth.token)
        if key is None:
            return Requester("api-key", "api-key:unknown", "bad_api_key")
        return Requester("api-key", key_actor(key))
    agent = signed_in_user()
    if agent is not None:
        if agent.role not in AGENT_PAGE_ROLES:  # ops staff take no calls: no caller's facts
            return Requester("agent", f"agent:{agent.id}", NOT_AN_AGENT)
        return Requester("agent", f"agent:{agent.id}")
    return Requester("anonymous", "anonymous", "no_credentials")


def _matching_key(presented: str) -> str | None:
    """The configured key equal to `presented`, compared in constant time against each."""
    settings: Settings = current_app.config["IVR_SETTINGS"]
    found = None
    given = presented.encode()
    for key in settings.agent_api_keys:
        if hmac.compare_digest(given, key.encode()):  # no early exit: timing tells nothing
            found = key
    return found


def _refuse(
    status: int,
    requester: Requester,
    reason: str,
    fingerprint: str,
    *,
    call_sid: str | None = None,
) -> tuple[Response, int]:
    details = {"reason": reason, "requester": requester.kind, "token": fingerprint}
    audited = _audit("agent.context_refused", requester, call_sid, details)
    log.warning(
        "agent context refused (%s, %s) to %s; token %s",
        status,
        reason,
        requester.actor,
        fingerprint,
    )
    if not audited:
        log.error("agent context refusal could not be audited (%s)", reason)
    messages = {
        "no_credentials": "authentication required",
        "bad_authorization": "use Authorization: Bearer <key>",
        "bad_api_key": "unknown API key",
        "invalid_token": "invalid context token",
        "expired": "context token expired",
        NOT_AN_AGENT: "call context is for agents and supervisors",
    }
    response, code = _error(status, messages[reason])
    if status == 401:
        # RFC 6750: a bad key is an invalid bearer token; no key, or a bad context token
        # (the credentials were fine), gets the bare challenge.
        bad_key = reason in ("bad_api_key", "bad_authorization")
        response.headers["WWW-Authenticate"] = (
            'Bearer error="invalid_token"' if bad_key else "Bearer"
        )
    return response, code


def _audit(
    action: str, requester: Requester, call_sid: str | None, details: dict[str, Any]
) -> bool:
    """Write the audit row; False when the database cannot be reached."""
    try:
        with db.unavailable_as_storage_error():
            audit.record(
                db.session(), action, actor=requester.actor, call_sid=call_sid, details=details
            )
    except StorageUnavailable as exc:
        log.error("audit %s not written: %s", action, exc)
        return False
    return True


def _error(status: int, message: str) -> tuple[Response, int]:
    return jsonify(error=message), status
