"""The agent page (`/agent`): sign-in, the live list of transferred calls, the screen pop,
and verification by hand.

Server-rendered with Jinja; a little vanilla JavaScript polls `/agent/calls.json`
every `POLL_SECONDS` (short polling rather than server-sent events: no long-lived
connection for a worker to hold, nothing for a proxy to buffer) and pops the newest
arriving call. Every form works without the script: each POST redirects back to
the page (post/redirect/get).

This module owns the blueprint and its views, and wires in the rest: the CSRF check
(`ivr.staff.csrf`, Flask-WTF's, before every view: the same as the ops console's),
the forms (`forms`, WTForms), who is signed in (`sessions`), the security headers
(`headers`) and what a call looks like on screen (`screen`). A form that fails its
checks is shown again, at once and with the field marked (400), instead of the
redirect; nothing of it was done. Every action on a call is audited, with masked
values only.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import (
    Blueprint,
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
from werkzeug.exceptions import HTTPException

from ivr.agent import screen, transfers
from ivr.agent.forms import (
    CheckCodeForm,
    ChecklistForm,
    CodeForm,
    LoginForm,
    PageForm,
    SendCodeForm,
)
from ivr.agent.headers import secure_headers
from ivr.agent.manual import CHECKLIST, checked_items, passed
from ivr.agent.sessions import (
    START_AGAIN,
    NeedCode,
    audit,
    current_agent,
    pending_user,
    session_cookie,
    sign_in,
    sign_in_code,
    sign_out,
    signed_in,
    signed_in_user,
    wants_data,
)
from ivr.agent.users import AGENT_PAGE_ROLES
from ivr.calls import runtime
from ivr.delivery import DeliveryFailed, OutgoingCall
from ivr.delivery import registry as delivery
from ivr.errors import StorageUnavailable
from ivr.phone import mask
from ivr.queues import claims
from ivr.staff import csrf
from ivr.storage import kv
from ivr.storage.models import AgentUser

log = logging.getLogger(__name__)

bp = Blueprint(
    "agent_web",
    __name__,
    url_prefix="/agent",
    template_folder="templates",
    static_folder="static",
)

POLL_SECONDS = 2
TAKE_RING_SECONDS = 25  # how long "take next call" rings the agent's phone
TAKE_REFRESH_SECONDS = 3  # the page reloads this often until the taken caller pops
NEXT_PAGE = "staff_next"  # the page to return to, kept between the sign-in's two steps

bp.record_once(session_cookie)
bp.after_request(secure_headers)


@bp.context_processor
def _template_globals() -> dict[str, Any]:
    # csrf_token() itself is Flask-WTF's template global.
    return {"csrf_field": csrf.CSRF_FIELD, "agent": g.get("agent_user")}


@bp.before_request
def _guard() -> None:
    if request.endpoint == "agent_web.static":
        return
    csrf.protect()
    g.agent_user = signed_in_user()


@bp.errorhandler(StorageUnavailable)
def _storage_down(exc: StorageUnavailable) -> Any:
    log.error("agent page: %s", exc)
    message = "The call list is unavailable right now (storage not reachable). Retrying."
    if wants_data():
        return jsonify(error=message), 503
    return render_template("agent/error.html", message=message), 503


@bp.errorhandler(csrf.CSRFError)
def _csrf_refused(exc: csrf.CSRFError) -> Any:
    return _page_error(csrf.CSRF_REFUSED, 400)


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Any:
    return _page_error(exc.description or exc.name, exc.code or 500)


def _page_error(message: str, status: int) -> Any:
    if wants_data():
        return jsonify(error=message), status
    return render_template("agent/error.html", message=message), status


# ---------------------------------------------------------------- signing in and out


@bp.get("/login")
def login_form() -> Any:
    """The sign-in form (`?next=` names the staff page to return to, e.g. the console)."""
    wanted = safe_next(request.args.get("next"))
    if g.agent_user is not None:
        return redirect(_landing(g.agent_user, wanted))
    return render_template("agent/login.html", form=LoginForm(formdata=None), next=wanted)


@bp.post("/login")
def login() -> Any:
    """Check the password, throttled; then the second factor when the account has one."""
    form = LoginForm()
    wanted = safe_next(form.next.data)
    if not form.validate():
        return render_template("agent/login.html", form=form, next=wanted), 400
    outcome = sign_in(form.username.data or "", form.password.data or "")
    if isinstance(outcome, NeedCode):
        if wanted:
            session[NEXT_PAGE] = wanted  # the session was renewed: kept for the code step
        return redirect(url_for(".login_code_form"), code=303)
    if outcome is not None:
        page = render_template("agent/login.html", form=form, error=outcome.message, next=wanted)
        return page, outcome.status
    return redirect(_landing(g.agent_user, wanted), code=303)


@bp.get("/login/code")
def login_code_form() -> Any:
    """The second step: the authenticator's code (or a recovery code)."""
    if g.agent_user is not None:
        return redirect(url_for(".index"))
    if pending_user() is None:
        return redirect(url_for(".login_form"))
    return render_template("agent/login_code.html", form=CodeForm(formdata=None))


@bp.post("/login/code")
def login_code() -> Any:
    """Check the code of a pending sign-in, throttled; every attempt is audited."""
    form = CodeForm()
    wanted = safe_next(session.get(NEXT_PAGE))
    if not form.validate():
        if pending_user() is None:
            return _start_again(START_AGAIN, 401)
        return render_template("agent/login_code.html", form=form), 400
    refused = sign_in_code(form.code.data or "", form.recovery_code.data or "")
    if refused is None:
        return redirect(_landing(g.agent_user, wanted), code=303)
    if pending_user() is None:  # the sign-in is over: start again from the password
        return _start_again(refused.message, refused.status)
    page = render_template(
        "agent/login_code.html", form=CodeForm(formdata=None), error=refused.message
    )
    return page, refused.status


def _start_again(message: str, status: int) -> Any:
    page = render_template("agent/login.html", form=LoginForm(formdata=None), error=message)
    return page, status


def safe_next(value: object) -> str | None:
    """A page of this site to go to after signing in: a local path only (never another
    site's address, which would make the sign-in page an open redirect)."""
    if not isinstance(value, str) or not value.startswith("/") or value.startswith("//"):
        return None
    if "\\" in value or any(ord(c) < 32 for c in value) or len(value) > 500:
        return None
    return value


def _landing(user: AgentUser, wanted: str | None) -> str:
    """Where a signed-in person goes: the page they asked for, else their role's home."""
    if wanted:
        return wanted
    return url_for("ops.index") if user.role not in AGENT_PAGE_ROLES else url_for(".index")


@bp.post("/logout")
def logout() -> Any:
    """Sign out (POST only, with the session's CSRF token, so a link or a form on another
    site cannot sign anyone out)."""
    sign_out()
    flash("You are signed out.", "ok")
    return redirect(url_for(".login_form"), code=303)


# ---------------------------------------------------------------- the page


@bp.get("/")
@signed_in
def index() -> Any:
    """The call list, with the screen pop of `?call=<CallSid>` when one is chosen."""
    chosen = request.args.get("call", "")
    taking = _taking_since()
    waiting = False
    if not chosen and taking is not None:  # "take next call": pop the caller once taken
        taken = screen.taken_call(current_agent(), since=taking)
        chosen = taken or ""
        waiting = taken is None and time.time() - taking < claims.RING_TTL
    pop = screen.pop(current_agent(), chosen) if chosen else None
    if chosen and pop is None:
        flash("That call is no longer on your list.", "error")
    return _desk(pop, waiting_for_take=waiting)


def _taking_since() -> float | None:
    """`?taking=<epoch seconds>`: the page rang the agent's phone then."""
    raw = request.args.get("taking", "")
    return float(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 12 else None


def _desk(
    pop: dict[str, Any] | None, refused: PageForm | None = None, waiting_for_take: bool = False
) -> Any:
    """The page: the call list and a screen pop; with `refused`, the form that failed its
    checks (shown with its errors, a 400). `waiting_for_take`: the page reloads itself
    until the caller the agent takes on their phone pops."""
    user = current_agent()
    page = render_template(
        "agent/index.html",
        calls=screen.calls_for(user),
        pop=pop,
        errors=refused.errors if refused is not None else {},
        poll_ms=POLL_SECONDS * 1000,
        can_take=bool(user.line_phone),
        waiting_for_take=waiting_for_take,
        take_refresh=TAKE_REFRESH_SECONDS,
    )
    return (page, 400) if refused is not None else page


def _refused(call_sid: str, form: PageForm) -> Any:
    """A screen-pop form that failed its checks: the page again, the field marked."""
    log.info("call %s: agent form refused: %s", call_sid, sorted(form.errors))
    return _desk(screen.pop(current_agent(), call_sid), refused=form)


@bp.get("/calls.json")
@signed_in
def calls_json() -> Any:
    """The calls transferred to the agent's target (supervisors: and escalated ones)."""
    user = current_agent()
    return jsonify(
        target=user.target,
        role=user.role,
        poll_seconds=POLL_SECONDS,
        calls=screen.calls_for(user),
    )


@bp.get("/calls/<call_sid>")
@signed_in
def screen_pop(call_sid: str) -> Any:
    """The screen pop of one call, as an HTML fragment for the page's script."""
    pop = screen.pop(current_agent(), call_sid)
    if pop is None:
        abort(404, description="That call is no longer on your list.")
    return render_template("agent/_pop.html", pop=pop, errors={})


@bp.post("/take-next")
@signed_in
def take_next() -> Any:
    """Ring the agent's own phone (their account's line phone: a number or a Twilio Client
    identity); answered, it runs the agent line already signed in as them (a one-time
    id in the answer URL, no PIN). The page then pops the caller they take."""
    user = current_agent()
    if not user.line_phone:
        flash("No phone is set for you: ops set one with `ivr users phone`.", "error")
        return redirect(url_for(".index"), code=303)
    ring_id = claims.new_ring(kv.client(), user.id)
    base = runtime.get().settings.public_url
    call = OutgoingCall(
        to=user.line_phone,
        url=base + url_for("agent_line.incoming", r=ring_id),
        status_callback=base + url_for("agent_line.status"),
        ring_seconds=TAKE_RING_SECONDS,
        purpose="agent_line",
    )
    shown = user.line_phone if user.line_phone.startswith("client:") else mask(user.line_phone)
    try:
        placed = delivery.get_dialer().place(call)
    except DeliveryFailed as exc:
        audit("agent.take_next", details={"to": shown, "result": "failed"})
        log.warning("agent %s: take-next call not placed: %s", user.username, exc)
        flash("Your phone could not be called just now; try again.", "error")
        return redirect(url_for(".index"), code=303)
    audit("agent.take_next", details={"to": shown, "result": "placed", "call_sid": placed})
    flash("Calling your phone: answer it to hear the next caller.", "ok")
    return redirect(url_for(".index", taking=str(int(time.time()))), code=303)


@bp.post("/calls/<call_sid>/checklist")
@signed_in
def checklist(call_sid: str) -> Any:
    """Record which checklist items the caller got right."""
    user, entry = current_agent(), _entry(call_sid)
    form = ChecklistForm()
    if not form.validate():
        return _refused(call_sid, form)
    matched = checked_items(form.matched.data or [])
    transfers.save_checklist(kv.client(), call_sid, matched, by=user.username, at=time.time())
    unmatched = [item for item in CHECKLIST if item not in matched]
    audit(
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
    form = SendCodeForm()
    if not form.validate():
        return _refused(call_sid, form)
    channel = form.channel.data or ""
    manual = screen.verifier()
    account = manual.account(entry["account_id"])
    context, _status = screen.context_of(entry)
    wanted = screen.language((context or {}).get("language"))
    sent = manual.send_code(account, channel, call_sid=call_sid, language=wanted)
    details = {"channel": channel, "outcome": sent.outcome, "to": sent.shown}
    if sent.outcome in ("sent", "sent_uncertain"):
        # sent_uncertain: Twilio took the request but did not answer in time; the code
        # stays valid and will most likely arrive.
        transfers.note(kv.client(), call_sid, code_sent=channel, code_result="")
        audit("agent.code_sent", call_sid=call_sid, account_id=entry["account_id"], details=details)
        slow = " It may take a moment to arrive." if sent.outcome == "sent_uncertain" else ""
        flash(f"Code sent to {sent.shown}.{slow} Ask the caller to read it out.", "ok")
    else:
        audit(
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
    user, entry = current_agent(), _entry(call_sid)
    manual = screen.verifier()
    form = CheckCodeForm(length=manual.codes.policy.length)
    if not form.validate():  # counted as no attempt: the caller's code is not used up
        return _refused(call_sid, form)
    outcome = manual.check_code(
        manual.account(entry["account_id"]), call_sid=call_sid, entered=form.digits
    )
    result = "pass" if passed(outcome) else "fail"
    transfers.note(kv.client(), call_sid, code_result=result, code_by=user.username)
    audit(
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
    user, entry = current_agent(), _entry(call_sid)
    if entry["escalated"]:
        flash("This call is already escalated.", "ok")
        return _back(call_sid)
    transfers.escalate(kv.client(), call_sid, by=user.username, at=time.time())
    audit(
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


def _entry(call_sid: str) -> dict[str, Any]:
    """The transfers entry of a call this agent may work on, else 404."""
    entry = transfers.lookup(kv.client(), call_sid)
    if entry is None or not screen.may_see(current_agent(), entry):
        abort(404, description="That call is no longer on your list.")
    return entry
