"""The agent page's voicemail (`/agent/voicemail`): the messages callers left, newest
first, a player, and "mark handled".

Signed-in agents and supervisors see every message (a voicemail belongs to no queue);
ops staff go to their console, as on the rest of the agent page. Sign-in, CSRF and
the security headers are the agent page's own (`sessions`, `ivr.staff.csrf`,
`headers`); marking a message handled is audited (`voicemail.handled`) and shows who
and when. The audio is Twilio's and needs the account's credentials, so the page plays
it through `/agent/voicemail/<id>/audio`, which streams it from Twilio
(`ivr.voicemail.audio`); the browser never sees a Twilio URL or credential.

`voicemail_unhandled()` is a template global, so the main agent page can show the
panel (`agent/_voicemail_panel.html`) with a plain include.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from werkzeug.exceptions import HTTPException

from ivr.agent.headers import CONTENT_SECURITY_POLICY, secure_headers
from ivr.agent.sessions import audit, current_agent, signed_in_user, wants_data
from ivr.agent.users import AGENT_PAGE_ROLES
from ivr.errors import StorageUnavailable
from ivr.staff import csrf
from ivr.storage import db
from ivr.voicemail import audio, queries

log = logging.getLogger(__name__)

bp = Blueprint(
    "agent_voicemail", __name__, url_prefix="/agent/voicemail", template_folder="templates"
)

# The page's own player loads audio from this site only.
VOICEMAIL_CSP = CONTENT_SECURITY_POLICY + "; media-src 'self'"


@bp.after_request
def _headers(response: Response) -> Response:
    secure_headers(response)
    response.headers["Content-Security-Policy"] = VOICEMAIL_CSP
    return response


@bp.context_processor
def _template_globals() -> dict[str, Any]:
    return {"csrf_field": csrf.CSRF_FIELD, "agent": g.get("agent_user")}


@bp.app_template_global()
def voicemail_unhandled() -> int | None:
    """Messages nobody has marked handled (None when the database cannot say)."""
    try:
        with db.unavailable_as_storage_error():
            return queries.unhandled_count(db.session())
    except StorageUnavailable as exc:
        log.warning("voicemail panel: %s", exc)
        return None


@bp.before_request
def _guard() -> None:
    csrf.protect()
    g.agent_user = signed_in_user()


def _agents_only(view: Callable[..., Any]) -> Callable[..., Any]:
    """Signed-in agents and supervisors; others to the sign-in page (or 401), ops staff
    to their console (or 403)."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        user = g.get("agent_user")
        if user is None:
            if wants_data():
                return jsonify(error="sign in first"), 401
            return redirect(url_for("agent_web.login_form", next=request.path))
        if user.role not in AGENT_PAGE_ROLES:
            if wants_data():
                return jsonify(error="the agent page is for agents and supervisors"), 403
            return redirect(url_for("ops.index"))
        return view(*args, **kwargs)

    return wrapper


@bp.errorhandler(StorageUnavailable)
def _storage_down(exc: StorageUnavailable) -> Any:
    log.error("voicemail page: %s", exc)
    message = "Voicemail is unavailable right now (storage not reachable). Try again shortly."
    return _page_error(message, 503)


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


@bp.get("/")
@_agents_only
def index() -> Any:
    """The messages, newest first (`?all=1`: handled ones too)."""
    show_all = request.args.get("all") == "1"
    session = db.session()
    now = datetime.now(UTC)
    with db.unavailable_as_storage_error():
        rows = queries.listed(session, include_handled=show_all)
        messages = [queries.as_dict(session, row, now) for row in rows]
        unhandled = queries.unhandled_count(session)
    return render_template(
        "agent/voicemail.html", messages=messages, show_all=show_all, unhandled=unhandled
    )


@bp.post("/<int:voicemail_id>/handled")
@_agents_only
def handled(voicemail_id: int) -> Any:
    """Mark a message handled: who and when are kept and shown; audited once."""
    user = current_agent()
    session = db.session()
    with db.unavailable_as_storage_error():
        row = queries.find(session, voicemail_id)
        if row is None:
            abort(404, description="That message is no longer there.")
        if not queries.mark_handled(session, row, user.username):
            session.rollback()
            flash(f"Already handled by {row.handled_by}.", "ok")
            return redirect(url_for(".index"), code=303)
        audit(
            "voicemail.handled",
            call_sid=row.call_sid,
            account_id=row.account_id,
            details={"voicemail_id": row.id, "recording_sid": row.recording_sid},
        )
    flash(f"Message from {row.caller or 'a withheld number'} marked handled.", "ok")
    return redirect(url_for(".index"), code=303)


@bp.get("/<int:voicemail_id>/audio")
@_agents_only
def play(voicemail_id: int) -> Any:
    """The message's audio, streamed from Twilio with the service's credentials."""
    with db.unavailable_as_storage_error():
        row = queries.find(db.session(), voicemail_id)
    if row is None:
        abort(404, description="That message is no longer there.")
    try:
        found = audio.fetch(current_app.config["IVR_SETTINGS"], row.recording_sid)
    except audio.NoAudio as exc:
        log.warning("voicemail %s: no audio: %s", row.recording_sid, exc)
        abort(404, description=f"The recording cannot be played: {exc}.")
    headers = {"Content-Length": found.length} if found.length else {}
    return Response(
        stream_with_context(found.chunks),
        mimetype=found.content_type,
        headers=headers,
    )
