"""Which channel delivers each kind of message, chosen once at boot from Settings.

"sms" and outbound calls go through Twilio, or into the local outbox when
`IVR_DELIVERY=outbox`.
"email" goes over SMTP when `IVR_SMTP_URL` is set, else into the outbox in
development; otherwise there is no email channel and flows offer none.

Each kind exists twice: with the short timeouts of the webhook path (a caller is
waiting) and with the longer ones of background jobs (`background=True`).
"""

from __future__ import annotations

from flask import Flask, current_app

from ivr.config import Settings
from ivr.delivery import Channel, Dialer
from ivr.delivery.calls import TwilioCalls
from ivr.delivery.email import SmtpEmail
from ivr.delivery.outbox import Outbox
from ivr.delivery.sms import TwilioSms
from ivr.delivery.twilio_client import DEFAULT_TIMEOUT, JOB_TIMEOUT, make_client

EXTENSION_KEY = "ivr.delivery"
DIALER_KEY = "ivr.dialer"
BACKGROUND_KEY = "ivr.delivery.background"
BACKGROUND_DIALER_KEY = "ivr.dialer.background"

# Seconds the whole SMTP conversation may take: the caller is on the line.
SMTP_TIMEOUT = 2.0
# In a background job nobody waits.
SMTP_JOB_TIMEOUT = 30.0


def channels(settings: Settings, *, background: bool = False) -> dict[str, Channel]:
    """The delivery channels these settings allow, by kind ("sms", "email")."""
    found: dict[str, Channel] = {}
    outbox = Outbox(settings.outbox_path)
    if settings.delivery == "outbox":
        found["sms"] = outbox
    else:
        timeout = JOB_TIMEOUT if background else DEFAULT_TIMEOUT
        found["sms"] = TwilioSms(make_client(settings, timeout=timeout), settings.support_number)
    if settings.smtp_url:
        smtp_timeout = SMTP_JOB_TIMEOUT if background else SMTP_TIMEOUT
        found["email"] = SmtpEmail(settings.smtp_url, settings.email_from, smtp_timeout)
    elif settings.delivery == "outbox":
        found["email"] = outbox
    return found


def dialer(settings: Settings, *, background: bool = False) -> Dialer:
    """What places outbound calls: Twilio, or the local outbox."""
    if settings.delivery == "outbox":
        return Outbox(settings.outbox_path)
    timeout = JOB_TIMEOUT if background else DEFAULT_TIMEOUT
    return TwilioCalls(make_client(settings, timeout=timeout), settings.support_number)


def init_app(app: Flask) -> None:
    """Build the app's channels (a bad IVR_SMTP_URL stops the boot here)."""
    settings = app.config["IVR_SETTINGS"]
    app.extensions[EXTENSION_KEY] = channels(settings)
    app.extensions[DIALER_KEY] = dialer(settings)
    app.extensions[BACKGROUND_KEY] = channels(settings, background=True)
    app.extensions[BACKGROUND_DIALER_KEY] = dialer(settings, background=True)


def get(*, background: bool = False) -> dict[str, Channel]:
    """The current app's delivery channels, by kind (a job's, with longer timeouts)."""
    found: dict[str, Channel] = current_app.extensions[
        BACKGROUND_KEY if background else EXTENSION_KEY
    ]
    return found


def get_dialer(*, background: bool = False) -> Dialer:
    """The current app's outbound-call dialer (a job's, with a longer timeout)."""
    found: Dialer = current_app.extensions[BACKGROUND_DIALER_KEY if background else DIALER_KEY]
    return found
