"""Which channel delivers each kind of message, chosen once at boot from Settings.

"sms" and outbound calls go through Twilio, or into the local outbox when
`IVR_DELIVERY=outbox`.
"email" goes over SMTP when `IVR_SMTP_URL` is set, else into the outbox in
development; otherwise there is no email channel and flows offer none.
"""

from __future__ import annotations

from flask import Flask, current_app

from ivr.config import Settings
from ivr.delivery import Channel, Dialer
from ivr.delivery.calls import TwilioCalls
from ivr.delivery.email import SmtpEmail
from ivr.delivery.outbox import Outbox
from ivr.delivery.sms import TwilioSms
from ivr.delivery.twilio_client import make_client

EXTENSION_KEY = "ivr.delivery"
DIALER_KEY = "ivr.dialer"

# Seconds to wait for the mail server per step: the caller is on the line.
SMTP_TIMEOUT = 5.0


def channels(settings: Settings) -> dict[str, Channel]:
    """The delivery channels these settings allow, by kind ("sms", "email")."""
    found: dict[str, Channel] = {}
    outbox = Outbox(settings.outbox_path)
    if settings.delivery == "outbox":
        found["sms"] = outbox
    else:
        found["sms"] = TwilioSms(make_client(settings), settings.support_number)
    if settings.smtp_url:
        found["email"] = SmtpEmail(settings.smtp_url, settings.email_from, SMTP_TIMEOUT)
    elif settings.delivery == "outbox":
        found["email"] = outbox
    return found


def dialer(settings: Settings) -> Dialer:
    """What places outbound calls: Twilio, or the local outbox."""
    if settings.delivery == "outbox":
        return Outbox(settings.outbox_path)
    return TwilioCalls(make_client(settings), settings.support_number)


def init_app(app: Flask) -> None:
    """Build the app's channels (a bad IVR_SMTP_URL stops the boot here)."""
    settings = app.config["IVR_SETTINGS"]
    app.extensions[EXTENSION_KEY] = channels(settings)
    app.extensions[DIALER_KEY] = dialer(settings)


def get() -> dict[str, Channel]:
    """The current app's delivery channels, by kind."""
    found: dict[str, Channel] = current_app.extensions[EXTENSION_KEY]
    return found


def get_dialer() -> Dialer:
    """The current app's outbound-call dialer."""
    found: Dialer = current_app.extensions[DIALER_KEY]
    return found
