"""What the agent page accepts from its forms: the CSRF token every POST must carry, and
the sign-in fields (password step, code step) as the rest of the page may trust them.

Kept apart from the views so the hand-written CSRF can be swapped for a form library
in one place. The token is per session, random, kept in Flask's signed session cookie
and sent back in a hidden field (or the `X-CSRF-Token` header, for the page's script);
it is compared with `hmac.compare_digest`, and a missing or wrong one is a 400.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from flask import abort, request, session

from ivr.agent.users import normalise_username

log = logging.getLogger(__name__)

SESSION_CSRF = "agent_csrf"
CSRF_FIELD = "csrf_token"
CSRF_REFUSED = "This form has expired or did not come from this page. Reload and try again."
USERNAME_MAX = 64
CODE_MAX = 32  # a TOTP code is 6 digits and a recovery code 11 characters: room for spaces

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


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


def check_csrf() -> None:
    """Refuse (400) a request that changes something without this session's token."""
    if request.method not in SAFE_METHODS and not _csrf_ok():
        log.warning(
            "agent page: %s %s refused: CSRF token missing or wrong", request.method, request.path
        )
        abort(400, description=CSRF_REFUSED)


@dataclass(frozen=True)
class LoginForm:
    """The sign-in fields: the username normalised and bounded, the password as typed."""

    username: str
    password: str

    @classmethod
    def read(cls, form: Mapping[str, str]) -> LoginForm:
        """The fields of a posted sign-in form; missing ones read as blank."""
        return cls(
            username=normalise_username(form.get("username", ""))[:USERNAME_MAX],
            password=form.get("password", ""),
        )


@dataclass(frozen=True)
class CodeForm:
    """The second sign-in step: a TOTP code, or a recovery code, each bounded in length."""

    code: str
    recovery_code: str

    @classmethod
    def read(cls, form: Mapping[str, str]) -> CodeForm:
        """The fields of a posted code form; missing ones read as blank."""
        return cls(
            code=form.get("code", "")[:CODE_MAX],
            recovery_code=form.get("recovery_code", "")[:CODE_MAX],
        )
