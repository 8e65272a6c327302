"""How the simulator reaches the service: in-process (Flask test client) or over HTTP.

Both sign every request exactly as Twilio does — over the public URL the
service believes it is reached at — so the real signature check runs. Flask is
needed only to build `InProcess`: the simulator itself imports neither.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from twilio.request_validator import RequestValidator

if TYPE_CHECKING:
    from flask import Flask


@dataclass(frozen=True)
class Reply:
    status: int
    body: str


class Transport(Protocol):
    """Posts a webhook: `url` is the public URL Twilio would request."""

    def post(self, url: str, form: dict[str, str]) -> Reply: ...


def _path_of(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _as_account(form: dict[str, str], account_sid: str | None) -> dict[str, str]:
    """The form with AccountSid set to `account_sid` (unchanged when None)."""
    return form if account_sid is None else {**form, "AccountSid": account_sid}


class InProcess:
    """Calls the app directly; no server needed."""

    def __init__(self, app: Flask, auth_token: str, signed: bool = True):
        # Twilio acts on what a job did (a call-back placed after the call) seconds
        # later; in one process the simulator acts at once, so jobs run as requests end.
        # (Imported here: the player runs over HTTP without Flask.)
        from ivr.jobs.runner import run_at_request_end

        run_at_request_end(app)
        self.client = app.test_client()
        self.validator = RequestValidator(auth_token)
        self.signed = signed
        # The service refuses another account's webhooks: speak as the app's account.
        settings = app.config.get("IVR_SETTINGS")
        self.account_sid: str | None = getattr(settings, "twilio_account_sid", None) or None

    def post(self, url: str, form: dict[str, str]) -> Reply:
        form = _as_account(form, self.account_sid)
        headers = (
            {"X-Twilio-Signature": self.validator.compute_signature(url, form)}
            if self.signed
            else {}
        )
        response = self.client.post(_path_of(url), data=form, headers=headers)
        return Reply(response.status_code, response.get_data(as_text=True))


class OverHttp:
    """Calls a running server (`ivr run`, gunicorn) at `server_url`."""

    def __init__(
        self,
        server_url: str,
        auth_token: str,
        timeout: float = 15.0,
        account_sid: str | None = None,
    ):
        self.server_url = server_url.rstrip("/")
        self.validator = RequestValidator(auth_token)
        self.timeout = timeout  # Twilio's own webhook budget
        self.account_sid = account_sid  # the server's TWILIO_ACCOUNT_SID, when known

    def post(self, url: str, form: dict[str, str]) -> Reply:
        form = _as_account(form, self.account_sid)
        request = urllib.request.Request(
            self.server_url + _path_of(url),
            data=urllib.parse.urlencode(form).encode(),
            headers={
                "X-Twilio-Signature": self.validator.compute_signature(url, form),
                "Content-Type": "application/x-www-form-urlencoded",
            },
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return Reply(response.status, response.read().decode())
        except urllib.error.HTTPError as exc:
            return Reply(exc.code, exc.read().decode(errors="replace"))
