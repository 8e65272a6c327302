"""SMS through the real Twilio REST client (`client.messages.create`).

Twilio's error answers (the legacy shape and the RFC 9457 one alike) quote the
number ("The 'To' number +1… is not a valid phone number"), so a failure keeps
only Twilio's error code and HTTP status and is described in words of our own:
the reason never carries a number or a body.
"""

from __future__ import annotations

import logging

import requests
import urllib3.exceptions
from twilio.base.exceptions import (
    TwilioException,
    TwilioRestException,
    TwilioServiceException,
)
from twilio.rest import Client

from ivr.delivery import DeliveryFailed, Outgoing

log = logging.getLogger(__name__)

# Twilio error codes worth telling apart (https://www.twilio.com/docs/api/errors).
TWILIO_ERROR_REASONS = {
    20003: "Twilio refused our credentials",
    20429: "Twilio is rate limiting our requests",
    21211: "the number is not a valid phone number",
    21408: "sending to that country or region is not enabled",
    21610: "the recipient has opted out of messages from this number",
    21612: "this sender cannot reach that number",
    21614: "the number cannot receive SMS",
    30007: "the carrier filtered the message",
}

UNREADABLE = "Twilio sent an answer we could not read"


class TwilioDeliveryFailed(DeliveryFailed):
    """Twilio answered with an error: its code and HTTP status are kept for decisions."""

    def __init__(self, channel: str, reason: str, *, code: int | None, status: int | None):
        self.code = code
        self.status = status
        super().__init__(channel, reason)


class TwilioSms:
    """The "sms" channel: one `messages.create` per message, from the support number."""

    def __init__(self, client: Client, from_number: str):
        self.client = client
        self.from_number = from_number

    def send(self, message: Outgoing) -> str:
        """Create the message at Twilio and return its SID (SM…); raise DeliveryFailed."""
        try:
            created = self.client.messages.create(
                to=message.to, from_=self.from_number, body=message.body
            )
        except (TwilioRestException, TwilioServiceException) as exc:
            raise twilio_failure("sms", exc) from None
        except (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError):
            raise DeliveryFailed("sms", "Twilio did not answer in time") from None
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise DeliveryFailed("sms", f"could not reach Twilio ({type(exc).__name__})") from None
        except (TwilioException, ValueError, AttributeError):
            # A proxy's HTML page, or JSON of another shape: not a message we can vouch for.
            raise DeliveryFailed("sms", UNREADABLE) from None
        if not isinstance(created.sid, str) or not created.sid:
            raise DeliveryFailed("sms", UNREADABLE)
        log.info("sms created sid=%s call_sid=%s", created.sid, message.call_sid)
        return created.sid


def twilio_failure(
    channel: str, exc: TwilioRestException | TwilioServiceException
) -> TwilioDeliveryFailed:
    """A DeliveryFailed for a Twilio error answer, without Twilio's own message text."""
    status = exc.status
    # The client puts the HTTP status in `code` when the answer carried no Twilio code;
    # Twilio's own codes have five digits.
    code = exc.code if isinstance(exc.code, int) and exc.code >= 10000 else None
    detail = f"Twilio error {code}" if code is not None else f"HTTP {status}"
    known = TWILIO_ERROR_REASONS.get(code) if code is not None else None
    if known:
        reason = f"{known} ({detail})"
    elif status >= 500:
        reason = f"Twilio had a problem ({detail})"
    else:
        reason = f"Twilio refused the request ({detail})"
    return TwilioDeliveryFailed(channel, reason, code=code, status=status)
