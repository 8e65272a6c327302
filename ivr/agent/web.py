"""The agent page (`/agent`): sign-in, the live list of transferred calls, the screen pop,
and verification by hand.

Server-rendered with Jinja; a little vanilla JavaScript polls `/agent/calls.json`
every `POLL_SECONDS` (short polling rather than server-sent events: no long-lived
connection for a worker to hold, nothing for a proxy to buffer) and pops the newest
arriving call. Every form works without the script: each POST redirects back to
the page (post/redirect/get).

CSRF: every POST carries a per-session random token (kept in Flask's signed
session cookie) in a hidden field, compared with `hmac.compare_digest`; a missing
or wrong token is a 400. The session cookie is HttpOnly, SameSite=Lax, and Secure
in production. A sign-in sets exactly `session["agent_user_id"]`, which the agent
API accepts too. Every sign-in, failed sign-in, sign-out and action on a call is
audited, with masked values only.
"""

from __future__ import annotations

import functools
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.blueprints import BlueprintSetupState
from werkzeug.exceptions import HTTPException

from ivr.agent import transfers
from ivr.agent.manual import AGENT_VERIFY, CHECKLIST, ManualVerifier, checked_items, passed
from ivr.agent.users import (
    SUPERVISOR,
    authenticate,
    clear_login_failures,
    count_login_failure,
    login_blocked,
    normalise_username,
)
from ivr.calls import runtime
from ivr.customers.directory import SqlDirectory
from ivr.delivery import registry as delivery
from ivr.errors import StorageUnavailable
from ivr.storage import audit, db, kv
from ivr.storage.models import Account, AgentUser
from ivr.verification.codes import CodeService

log = logging.getLogger(__name__)

bp = Blueprint(
    "agent_web",
    __name__,
    url_prefix="/agent",
    template_folder="templates",
    static_folder="static",
)

SESSION_USER = "agent_user_id"  # the agent API reads the same key
SESSION_CSRF = "agent_csrf"
CSRF_FIELD = "csrf_token"
CSRF_REFUSED = "This form has expired or did not come from this page. Reload and try again."
POLL_SECONDS = 2
LIST_LIMIT = 20
SESSION_HOURS = 12  # one shift

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

VERIFICATION_TEXT = {
    "code": "Verified: account digits and a one-time code",
    "digits": "Partly verified: account digits only",
    "none": "Not verified",
}


@bp.record_once
def _session_cookie(state: BlueprintSetupState) -> None:
    """The session cookie carries an agent sign-in, so it gets the strict settings."""
    settings = state.app.config["IVR_SETTINGS"]
    state.app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.is_production,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=SESSION_HOURS),
    )


# ---------------------------------------------------------------- CSRF and sign-in


def csrf_token() -> str:
    """This session's CSRF token, made on first use."""
    token = session.get(SESSION_CSRF)
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        session[SESSION_CSRF] = token
    return token


def _csrf_ok() -> bool:
    expected = session.get(SESSION_CSRF)
    given = request.form.get(CSRF_FIELD) or request.headers.get("X-CSRF-Token") or ""
    if not isinstance(expected, str) or not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


@bp.context_processor
def _template_globals() -> dict[str, Any]:
    return {"csrf_token": csrf_token, "csrf_field": CSRF_FIELD, "agent": g.get("agent_user")}


@bp.before_request
def _guard() -> None:
    if request.endpoint == "agent_web.static":
        return
    if request.method not in ("GET", "HEAD", "OPTIONS") and not _csrf_ok():
        log.warning(
            "agent page: %s %s refused: CSRF token missing or wrong", request.method, request.path
        )
        abort(400, description=CSRF_REFUSED)
    g.agent_user = _signed_in_user()


def _signed_in_user() -> AgentUser | None:
    user_id = session.get(SESSION_USER)
    if not isinstance(user_id, int):
        return None
    user = db.session().get(AgentUser, user_id)
    if user is None or user.disabled:  # disabling an account ends its sessions too
        session.pop(SESSION_USER, None)
        return None
    return user


def _user() -> AgentUser:
    user: AgentUser | None = g.get("agent_user")
    assert user is not None, "view not behind @signed_in"
    return user


def _wants_data() -> bool:
    """Requests from the page's script (or any JSON client) get 401, not a redirect."""
    return bool(request.headers.get("X-Requested-With")) or request.path.endswith(".json")


def signed_in(view: Callable[..., Any]) -> Callable[..., Any]:
    """Views for signed-in agents only: others go to the sign-in page (or get a 401)."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if g.get("agent_user") is None:
            if _wants_data():
                return jsonify(error="sign in first"), 401
            return redirect(url_for(".login_form"))
        return view(*args, **kwargs)

    return wrapper


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    if request.endpoint != "agent_web.static":
        response.headers["Cache-Control"] = "no-store"  # customer facts stay off disk caches
    return response


@bp.errorhandler(StorageUnavailable)
def _storage_down(exc: StorageUnavailable) -> Any:
    log.error("agent page: %s", exc)
    message = "The call list is unavailable right now (storage not reachable). Retrying."
    if _wants_data():
        return jsonify(error=message), 503
    return render_template("agent/error.html", message=message), 503


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Any:
    if _wants_data():
        return jsonify(error=exc.description), exc.code
    return render_template("agent/error.html", message=exc.description), exc.code


@bp.get("/login")
def login_form() -> Any:
    """The sign-in form."""
    if g.agent_user is not None:
        return redirect(url_for(".index"))
    return render_template("agent/login.html")


@bp.post("/login")
def login() -> Any:
    """Check the credentials, throttled per username; every attempt is audited."""
    username = normalise_username(request.form.get("username", ""))[:64]
    password = request.form.get("password", "")
    client = kv.client()
    actor = username or "(blank)"
    if login_blocked(client, username):
        _audit("agent.login_failed", actor=actor, details={"reason": "too_many_attempts"})
        message = "Too many failed sign-ins for this username. Try again in 15 minutes."
        return render_template("agent/login.html", error=message, username=username), 429
    user, why = authenticate(db.session(), username, password)
    if user is None:
        count_login_failure(client, username)
        _audit("agent.login_failed", actor=actor, details={"reason": why})
        message = "Wrong username or password."
        return render_template("agent/login.html", error=message, username=username), 401
    clear_login_failures(client, username)
    session.clear()  # a fresh session (and CSRF token) for the signed-in agent
    session[SESSION_USER] = user.id
    session.permanent = True
    csrf_token()
    g.agent_user = user
    _audit("agent.login", details={"username": user.username, "role": user.role})
    return redirect(url_for(".index"), code=303)


@bp.post("/logout")
def logout() -> Any:
    """Sign out (POST only, so a link on another site cannot sign anyone out)."""
    if g.agent_user is not None:
        _audit("agent.logout", details={"username": g.agent_user.username})
    session.clear()
    flash("You are signed out.", "ok")
    return redirect(url_for(".login_form"), code=303)


# ---------------------------------------------------------------- the page


@bp.get("/")
@signed_in
def index() -> Any:
    """The call list, with the screen pop of `?call=<CallSid>` when one is chosen."""
    user = _user()
    chosen = request.args.get("call", "")
    pop = _pop(user, chosen) if chosen else None
    if chosen and pop is None:
        flash("That call is no longer on your list.", "error")
    return render_template(
        "agent/index.html",
        calls=_calls_for(user),
        pop=pop,
        poll_ms=POLL_SECONDS * 1000,
    )


@bp.get("/calls.json")
@signed_in
def calls_json() -> Any:
    """The calls transferred to the agent's target (supervisors: and escalated ones)."""
    user = _user()
    return jsonify(
        target=user.target,
        role=user.role,
        poll_seconds=POLL_SECONDS,
        calls=_calls_for(user),
    )


@bp.get("/calls/<call_sid>")
@signed_in
def screen_pop(call_sid: str) -> Any:
    """The screen pop of one call, as an HTML fragment for the page's script."""
    pop = _pop(_user(), call_sid)
    if pop is None:
        abort(404, description="That call is no longer on your list.")
    return render_template("agent/_pop.html", pop=pop)


@bp.post("/calls/<call_sid>/checklist")
@signed_in
def checklist(call_sid: str) -> Any:
    """Record which checklist items the caller got right."""
    user, entry = _user(), _entry(call_sid)
    matched = checked_items(request.form.getlist("matched"))
    transfers.save_checklist(kv.client(), call_sid, matched, by=user.username, at=time.time())
    unmatched = [item for item in CHECKLIST if item not in matched]
    _audit(
        "agent.checklist",
        call_sid=call_sid,
        account_id=entry["account_id"],
        details={"matched": matched, "not_matched": unmatched},
    )
    flash(f"Checklist saved: {len(matched)} of {len(CHECKLIST)} matched.", "ok")
    return _back(call_sid)


@bp.post("/calls/<call_sid>/send-code")
@signed_in
def send_code(call_sid: str) -> Any:
    """Send a one-time code to the phone or email on file."""
    entry = _entry(call_sid)
    channel = request.form.get("channel", "")
    verifier = _verifier()
    account = verifier.account(entry["account_id"])
    context, _status = _context(entry)
    sent = verifier.send_code(
        account, channel, call_sid=call_sid, language=_language((context or {}).get("language"))
    )
    details = {"channel": channel, "outcome": sent.outcome, "to": sent.shown}
    if sent.outcome == "sent":
        transfers.note(kv.client(), call_sid, code_sent=channel, code_result="")
        _audit(
            "agent.code_sent", call_sid=call_sid, account_id=entry["account_id"], details=details
        )
        flash(f"Code sent to {sent.shown}. Ask the caller to read it out.", "ok")
    else:
        _audit(
            "agent.code_not_sent",
            call_sid=call_sid,
            account_id=entry["account_id"],
            details=details,
        )
        flash(_NOT_SENT.get(sent.outcome, "The code could not be sent."), "error")
    return _back(call_sid)


_NOT_SENT = {
    "no_channel": "There is no contact on file to send a code to for this call.",
    "rate_limited": "Too many codes were sent to this account recently. Try again later.",
    "locked": "This account is locked out of code verification for now. Escalate if needed.",
    "failed": "The code could not be delivered. Try the other channel or escalate.",
}


@bp.post("/calls/<call_sid>/check-code")
@signed_in
def check_code(call_sid: str) -> Any:
    """Check the code the caller read out; the page learns only pass or fail."""
    user, entry = _user(), _entry(call_sid)
    verifier = _verifier()
    outcome = verifier.check_code(
        verifier.account(entry["account_id"]),
        call_sid=call_sid,
        entered=request.form.get("code", ""),
    )
    result = "pass" if passed(outcome) else "fail"
    transfers.note(kv.client(), call_sid, code_result=result, code_by=user.username)
    _audit(
        "agent.code_check",
        call_sid=call_sid,
        account_id=entry["account_id"],
        details={"result": result, "outcome": outcome},
    )
    hint = {"expired": " No live code: send a new one.", "locked": " The account is locked out."}
    flash(f"Code check: {result}.{hint.get(outcome, '')}", "ok" if result == "pass" else "error")
    return _back(call_sid)


@bp.post("/calls/<call_sid>/escalate")
@signed_in
def escalate(call_sid: str) -> Any:
    """Hand the call to a supervisor: marked on the entry and listed for supervisors."""
    user, entry = _user(), _entry(call_sid)
    if entry["escalated"]:
        flash("This call is already escalated.", "ok")
        return _back(call_sid)
    transfers.escalate(kv.client(), call_sid, by=user.username, at=time.time())
    _audit(
        "agent.escalated",
        call_sid=call_sid,
        account_id=entry["account_id"],
        details={"target": entry["target"]},
    )
    flash("Escalated to a supervisor.", "ok")
    return _back(call_sid)


# ---------------------------------------------------------------- helpers


def _back(call_sid: str) -> Any:
    return redirect(url_for(".index", call=call_sid, _anchor="pop"), code=303)


def _may_see(user: AgentUser, entry: dict[str, Any]) -> bool:
    if entry["target"] == user.target:
        return True
    return user.role == SUPERVISOR and bool(entry["escalated"])


def _entry(call_sid: str) -> dict[str, Any]:
    """The transfers entry of a call this agent may work on, else 404."""
    entry = transfers.lookup(kv.client(), call_sid)
    if entry is None or not _may_see(_user(), entry):
        abort(404, description="That call is no longer on your list.")
    return entry


def _calls_for(user: AgentUser) -> list[dict[str, Any]]:
    client = kv.client()
    entries = transfers.recent(client, user.target, LIST_LIMIT)
    if user.role == SUPERVISOR:
        listed = {entry["call_sid"] for entry in entries}
        entries += [
            e for e in transfers.escalated(client, LIST_LIMIT) if e["call_sid"] not in listed
        ]
        entries.sort(key=lambda entry: entry["at"], reverse=True)
    return [_summary(entry) for entry in entries]


def _summary(entry: dict[str, Any]) -> dict[str, Any]:
    """One line of the call list (what calls.json returns for each call)."""
    context, status = _context(entry)
    facts = _facts(entry, context, status)
    return {
        "call_sid": entry["call_sid"],
        "at": datetime.fromtimestamp(entry["at"], UTC).isoformat(timespec="seconds"),
        "at_text": facts["transferred_at"],
        "caller": facts["caller"],
        "customer": facts["customer"],
        "account": facts["account"],
        "verification": facts["verification"],
        "verification_text": facts["verification_text"],
        "reason": facts["reason"],
        "flags": len(facts["flags"]),
        "escalated": entry["escalated"],
        "manual": entry["code_result"] or None,
        "context": status,
        "pop_url": url_for(".screen_pop", call_sid=entry["call_sid"]),
        "page_url": url_for(".index", call=entry["call_sid"]),
    }


def _context(entry: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The entry's signed context, and "ok", "expired" or "invalid".

    The token was stored by our own webhook, so it is loaded with the entry's lifetime
    rather than the token's few minutes: a call can wait in a queue longer than that.
    The signature is still checked, and must name this very call.
    """
    from ivr.agent.context import ContextExpired, ContextInvalid, ContextSigner

    signer = ContextSigner(runtime.get().settings.secret_key, max_age=transfers.ENTRY_TTL)
    try:
        context = signer.load(entry["token"])
    except ContextExpired:
        return None, "expired"
    except ContextInvalid:
        return None, "invalid"
    if context.get("call_sid") != entry["call_sid"]:
        return None, "invalid"
    return context, "ok"


def _texts() -> Any:
    rt = runtime.get()
    return rt.definitions.catalog.languages[rt.flow.default_language].texts


def _language(wanted: Any) -> str:
    rt = runtime.get()
    if isinstance(wanted, str) and wanted in rt.definitions.catalog.languages:
        return wanted
    return rt.flow.default_language


def _facts(entry: dict[str, Any], context: dict[str, Any] | None, status: str) -> dict[str, Any]:
    """What the screen pop shows, worded for people; masked values only."""
    texts = _texts()
    ctx = context or {}
    verification = str(ctx.get("verification"))
    if verification not in VERIFICATION_TEXT:
        verification = "none"
    reason = ctx.get("transfer_reason")
    methods = [
        {
            "text": texts.get(f"method_{item.get('method')}", str(item.get("method"))),
            "at": _clock_iso(item.get("at")),
        }
        for item in ctx.get("methods") or []
        if isinstance(item, dict)
    ]
    return {
        "call_sid": entry["call_sid"],
        "transferred_at": _clock(entry["at"]),
        "caller": ctx.get("caller") or "withheld",
        "customer": ctx.get("customer") or ctx.get("name"),
        "account": ctx.get("account"),
        "verification": verification,
        "verification_text": VERIFICATION_TEXT[verification],
        "methods": methods,
        "flags": [
            texts.get(f"whisper_flag_{flag}", str(flag).replace("_", " "))
            for flag in ctx.get("flags") or []
        ],
        "failure": str(ctx["failure"]).replace("_", " ") if ctx.get("failure") else None,
        "reason": texts.get(f"reason_{reason}", str(reason).replace("_", " ")) if reason else None,
        "flow": ctx.get("flow"),
        "flow_version": ctx.get("flow_version") or ctx.get("version"),
        "context_status": status,
    }


def _pop(user: AgentUser, call_sid: str) -> dict[str, Any] | None:
    """Everything the screen pop template needs, or None when the agent may not see it."""
    entry = transfers.lookup(kv.client(), call_sid)
    if entry is None or not _may_see(user, entry):
        return None
    context, status = _context(entry)
    if status != "ok":
        log.warning("call %s: agent page got a context token that is %s", call_sid, status)
    facts = _facts(entry, context, status)
    verified = facts["verification"] == "code"
    verifier = _verifier()
    account = None if verified else verifier.account(entry["account_id"])
    ticked = entry["checklist"] or []
    _audit(
        "agent.screen_pop",
        call_sid=call_sid,
        account_id=entry["account_id"],
        details={"context": status},
        dedupe_key=f"agent.screen_pop:{user.id}:{call_sid}",
    )
    return {
        "facts": facts,
        "entry": entry,
        "verified": verified,
        "checklist": [
            {"name": name, "label": label, "ticked": name in ticked}
            for name, label in CHECKLIST.items()
        ],
        "checklist_saved": entry["checklist"] is not None,
        "destinations": verifier.destinations(account),
        "has_account": account is not None,
        "code_sent": entry["code_sent"],
        "code_result": entry["code_result"] or None,
    }


def _verifier() -> ManualVerifier:
    rt = runtime.get()
    codes = CodeService(kv.client(), rt.settings.secret_key, rt.code_policy_for(AGENT_VERIFY))
    return ManualVerifier(codes, delivery.get(), SqlDirectory(db.session()), rt.definitions.catalog)


def _audit(
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
    audit.record(
        session_db,
        action,
        actor=actor or f"agent:{_user().id}",
        call_sid=call_sid,
        account_id=account_id,
        details=details,
        dedupe_key=dedupe_key,
    )


def _clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M:%S UTC")


def _clock_iso(value: Any) -> str:
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%H:%M:%S UTC")
