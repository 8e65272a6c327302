"""The console's blueprint and what every page of it shares: who may see it, CSRF, the
security headers, and how errors look.

Each page lives in its own module (`flows_page`, `drafts_page`, `publish_page`,
`simulator_page`, `audit_page`) and adds its views to `bp`. Signing in is the agent
page's (one staff sign-in for both); a visitor who is not signed in is sent there and
back. Roles: `readable` views are for supervisors and ops, `editable` ones (anything that changes a
draft or what callers hear) for ops only; an agent gets a 403 everywhere.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from flask import Blueprint, current_app, g, jsonify, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from ivr.agent.headers import secure_headers
from ivr.agent.sessions import audit as audit_as_staff
from ivr.agent.sessions import session_cookie, signed_in_user, wants_data
from ivr.agent.users import CONSOLE_EDIT_ROLES, CONSOLE_READ_ROLES
from ivr.errors import StorageUnavailable
from ivr.staff import csrf
from ivr.storage.models import AgentUser

log = logging.getLogger(__name__)

bp = Blueprint(
    "ops",
    __name__,
    url_prefix="/ops",
    template_folder="templates",
    static_folder="static",
)

# The console's pages, in the order of the menu: (endpoint, label). A page module that
# is not wired in yet leaves its entry out of the menu.
MENU = (
    ("ops.index", "Flows"),
    ("ops.simulator", "Simulator"),
    ("ops.calls", "Calls"),
    ("ops.dashboard", "Dashboard"),
    ("ops.hours", "Hours"),
    ("ops.audit_log", "Audit"),
)

NO_ACCESS = "The ops console is for ops staff and supervisors."
READ_ONLY = "Only ops staff may change flows; supervisors may read them."

bp.record_once(session_cookie)
bp.after_request(secure_headers)


@bp.before_request
def _guard() -> None:
    if request.endpoint == "ops.static":
        return
    csrf.protect()
    g.agent_user = signed_in_user()


@bp.context_processor
def _template_globals() -> dict[str, Any]:
    user: AgentUser | None = g.get("agent_user")
    return {
        "staff": user,
        "can_edit": user is not None and user.role in CONSOLE_EDIT_ROLES,
        "menu": [(e, label) for e, label in MENU if e in current_app.view_functions],
    }


def current_staff() -> AgentUser:
    """The signed-in staff member of a view behind `readable` or `editable`."""
    user: AgentUser | None = g.get("agent_user")
    assert user is not None, "view not behind @readable or @editable"
    return user


def staff_name() -> str:
    """How the console names the signed-in person in versions and audit (`ops:<username>`)."""
    return f"ops:{current_staff().username}"


def audit(action: str, details: dict[str, Any] | None = None) -> None:
    """Audit a console action as the signed-in staff member."""
    audit_as_staff(action, actor=staff_name(), details=details)


def _allowed(roles: tuple[str, ...], refused: str) -> Callable[..., Any]:
    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            user: AgentUser | None = g.get("agent_user")
            if user is None:
                if wants_data():
                    return jsonify(error="sign in first"), 401
                return redirect(url_for("agent_web.login_form", next=request.full_path.rstrip("?")))
            if user.role not in roles:
                return _page_error(refused if user.role in CONSOLE_READ_ROLES else NO_ACCESS, 403)
            return view(*args, **kwargs)

        return wrapper

    return decorate


readable = _allowed(CONSOLE_READ_ROLES, NO_ACCESS)
editable = _allowed(CONSOLE_EDIT_ROLES, READ_ONLY)


def _page_error(message: str, status: int) -> Any:
    if wants_data():
        return jsonify(error=message), status
    return render_template("ops/error.html", message=message), status


@bp.errorhandler(csrf.CSRFError)
def _csrf_refused(exc: csrf.CSRFError) -> Any:
    return _page_error(csrf.CSRF_REFUSED, 400)


@bp.errorhandler(StorageUnavailable)
def _storage_down(exc: StorageUnavailable) -> Any:
    log.error("ops console: %s", exc)
    return _page_error("Storage is not reachable right now. Nothing was changed; try again.", 503)


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Any:
    return _page_error(exc.description or exc.name, exc.code or 500)
