"""Checks X-Twilio-Signature on every voice webhook (security.md, "Webhooks").

The URL is rebuilt from IVR_PUBLIC_URL, because behind a TLS-terminating proxy
Flask sees http:// and an internal host, while Twilio signed the public https URL.
All POSTed form fields are passed (request.form, not request.values).
"""

from __future__ import annotations

import logging

from flask import abort, current_app, request
from twilio.request_validator import RequestValidator

from ivr.config import Settings

log = logging.getLogger(__name__)


def signed_url(settings: Settings) -> str:
    """The URL Twilio requested, as it signed it: public base + path + query as sent."""
    query = request.query_string.decode("latin-1")
    return settings.public_url + request.path + (f"?{query}" if query else "")


def require_twilio_signature() -> None:
    """before_request hook: 403 unless the request carries Twilio's valid signature."""
    settings: Settings = current_app.config["IVR_SETTINGS"]
    if not settings.validate_signatures:
        return
    validator = RequestValidator(settings.twilio_auth_token)
    signature = request.headers.get("X-Twilio-Signature", "")
    if not validator.validate(signed_url(settings), request.form, signature):
        log.warning(
            "rejected %s: bad or missing X-Twilio-Signature (call %s)",
            request.path,
            request.form.get("CallSid", "-"),
        )
        abort(403)
