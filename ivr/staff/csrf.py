"""CSRF protection of the staff pages (agent page, ops console), through Flask-WTF.

Only the staff blueprints check tokens: Twilio's webhooks and the agent API are
authenticated otherwise (signatures, bearer tokens) and must never be refused for
lacking one, so the default check is off and those blueprints call `protect()`
before each request. A token is per session (Flask-WTF keeps the raw value in the
signed session cookie and hands out a signed copy in each form or the
`X-CSRF-Token` header); it has no time limit of its own, since the staff session it
lives in has idle and absolute limits already. A missing or wrong token is a 400 with
CSRF_REFUSED.
"""

from __future__ import annotations

import logging

from flask import Flask, g, request
from flask_wtf.csrf import CSRFError, CSRFProtect, generate_csrf

log = logging.getLogger(__name__)

CSRF_FIELD = "csrf_token"  # Flask-WTF's form field (and session key)
CSRF_REFUSED = "This form has expired or did not come from this page. Reload and try again."
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")

csrf = CSRFProtect()

__all__ = ["CSRF_FIELD", "CSRF_REFUSED", "CSRFError", "csrf", "init_app", "protect", "renew"]


def init_app(app: Flask) -> None:
    """Wire Flask-WTF in, checking only where a blueprint asks (`protect`)."""
    app.config.setdefault("WTF_CSRF_CHECK_DEFAULT", False)
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)  # bounded by the staff session
    app.config.setdefault("WTF_CSRF_FIELD_NAME", CSRF_FIELD)
    csrf.init_app(app)


def protect() -> None:
    """Refuse (CSRFError, a 400) a request that changes something without this session's
    token; safe methods pass."""
    if request.method in SAFE_METHODS:
        return
    try:
        csrf.protect()
    except CSRFError:
        log.warning(
            "staff page: %s %s refused: CSRF token missing or wrong", request.method, request.path
        )
        raise


def renew() -> str:
    """A fresh token for a session that was just cleared (sign-in): the old one is gone
    with the old session, and the one cached for this request must not be handed out."""
    g.pop(CSRF_FIELD, None)
    return generate_csrf()
