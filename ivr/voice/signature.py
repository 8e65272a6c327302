"""Checks that a voice webhook comes from Twilio, for our account (security.md, "Webhooks").

Two checks, both 403 when they fail:

- `X-Twilio-Signature`: the URL is rebuilt from IVR_PUBLIC_URL, because behind a
  TLS-terminating proxy Flask sees http:// and an internal host, while Twilio
  signed the public https URL. All POSTed form fields are passed (request.form,
  not request.values).
- `AccountSid` must be TWILIO_ACCOUNT_SID. A signature only proves the request was
  signed with our auth token; a subaccount, a rotated secondary token or a
  leaked token used from another account would still sign validly, and Twilio
  sends AccountSid on every voice webhook, so a request for another account (or
  without one) is refused too.
"""

from __future__ import annotations

import hmac
import logging
import re
from functools import cache
from urllib.parse import urlparse

from flask import abort, current_app, g, request
from twilio.request_validator import RequestValidator, add_port, compare, remove_port
from werkzeug.datastructures import MultiDict

from ivr.config import Settings
from ivr.voice.webhook import CALL_SID

log = logging.getLogger(__name__)

ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")


def signed_url(settings: Settings) -> str:
    """The URL Twilio requested, as it signed it: public base + path + query as sent."""
    query = request.query_string.decode("latin-1")
    return settings.public_url + request.path + (f"?{query}" if query else "")


def _shown_account(value: str) -> str:
    """An AccountSid for a log line: its last 4 characters only, or what is wrong with it."""
    if not value:
        return "missing"
    return f"AC…{value[-4:]}" if ACCOUNT_SID.fullmatch(value) else "malformed"


@cache
def _validator(auth_token: str) -> RequestValidator:
    """One validator per process and token (building one per request was measurable)."""
    return RequestValidator(auth_token)


def _signed(
    validator: RequestValidator, url: str, form: MultiDict[str, str], signature: str
) -> bool:
    """`RequestValidator.validate`, stopping at the first URL form that matches.

    Twilio may have signed the URL with or without its default port, and `validate`
    computes both signatures every time; nearly every request matches the first (the
    URL as configured has no port), so the second is computed only when it does not:
    half the HMAC work on a valid request, the same answer on any. A body signed by
    hash (`bodySHA256`, JSON webhooks) goes to `validate` unchanged."""
    parsed = urlparse(url)
    if "bodySHA256" in parsed.query:
        return bool(validator.validate(url, form, signature))
    return any(
        compare(validator.compute_signature(candidate, form), signature)
        for candidate in (remove_port(parsed), add_port(parsed))
    )


def require_twilio_signature() -> None:
    """before_request hook: 403 unless the request carries Twilio's valid signature and
    our AccountSid."""
    settings: Settings = current_app.config["IVR_SETTINGS"]
    if not settings.validate_signatures:
        return
    validator = _validator(settings.twilio_auth_token)
    signature = request.headers.get("X-Twilio-Signature", "")
    call_sid = request.form.get("CallSid", "")
    call_sid = call_sid if CALL_SID.fullmatch(call_sid) else "-"
    if not _signed(validator, signed_url(settings), request.form, signature):
        log.warning(
            "rejected %s: bad or missing X-Twilio-Signature (call %s)", request.path, call_sid
        )
        abort(403)
    if request.method != "POST":
        return  # no form to check: routing answers 405 (Twilio only ever POSTs here)
    account = request.form.get("AccountSid", "")
    ours = settings.twilio_account_sid
    if not account or not hmac.compare_digest(account.encode(), ours.encode()):
        log.warning(
            "rejected %s: AccountSid %s is not ours (call %s)",
            request.path,
            _shown_account(account),
            call_sid,
        )
        abort(403)
    g.ivr_twilio_verified = True  # the request's CallSid may now be put on log lines
