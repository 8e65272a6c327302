"""Turning whatever a Twilio REST request raised into a DeliveryFailed we can tell a caller.

A request that reached Twilio and got no answer in time is `DeliveryUncertain`: the
message or call may still go out, so nothing that depends on it is withdrawn.

Twilio's error answers (the legacy shape and the RFC 9457 one alike) quote the
number ("The 'To' number +1… is not a valid phone number"), so a failure keeps
only Twilio's error code and HTTP status and is described in words of our own:
the reason never carries a number or a body.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import requests
import urllib3.exceptions
from twilio.base.exceptions import (
    TwilioException,
    TwilioRestException,
    TwilioServiceException,
)

from ivr.delivery import DeliveryFailed, DeliveryUncertain
from ivr.metrics import registry as metrics

# Twilio error codes worth telling apart (https://www.twilio.com/docs/api/errors).
TWILIO_ERROR_REASONS = {
    13223: "the number is not a valid phone number to call",
    13227: "calling that country or region is not enabled",
    20003: "Twilio refused our credentials",
    20429: "Twilio is rate limiting our requests",
    21211: "the number is not a valid phone number",
    21215: "calling that country or region is not enabled",
    21216: "that number cannot be called",
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

    @property
    def permanent(self) -> bool:
        """A 4xx refusal would be refused again; 429 (rate limit) and 5xx may pass later."""
        return self.status is not None and 400 <= self.status < 500 and self.status != 429


@contextmanager
def calling_twilio(channel: str) -> Iterator[None]:
    """Run one REST request; any failure (error answer, timeout, garbage) is DeliveryFailed."""
    try:
        yield
    except (TwilioRestException, TwilioServiceException) as exc:
        failure = twilio_failure(channel, exc)
        metrics.count_twilio_error(failure.code, failure.status)
        raise failure from None
    except (requests.ConnectTimeout, urllib3.exceptions.ConnectTimeoutError):
        # The request never reached Twilio: nothing can go out.
        metrics.count_twilio_error(kind="unreachable")
        raise DeliveryFailed(channel, "could not reach Twilio in time") from None
    except (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError):
        # Sent, but no answer: Twilio may still create the message or call.
        metrics.count_twilio_error(kind="timeout")
        raise DeliveryUncertain(channel, "Twilio did not answer in time") from None
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        metrics.count_twilio_error(kind="unreachable")
        raise DeliveryFailed(channel, f"could not reach Twilio ({type(exc).__name__})") from None
    except (TwilioException, ValueError, AttributeError):
        # A proxy's HTML page, or JSON of another shape: not an answer we can vouch for.
        metrics.count_twilio_error(kind="unreadable")
        raise DeliveryFailed(channel, UNREADABLE) from None


def twilio_failure(
    channel: str, exc: TwilioRestException | TwilioServiceException
) -> TwilioDeliveryFailed:
    """A DeliveryFailed for a Twilio error answer, without Twilio's own message text."""
    # The RFC 9457 shape takes `status` from the JSON body: trust only an integer.
    status = exc.status if isinstance(exc.status, int) else None
    # The client puts the HTTP status in `code` when the answer carried no Twilio code;
    # Twilio's own codes have five digits.
    code = exc.code if isinstance(exc.code, int) and exc.code >= 10000 else None
    detail = f"Twilio error {code}" if code is not None else f"HTTP {status}"
    known = TWILIO_ERROR_REASONS.get(code) if code is not None else None
    if known:
        reason = f"{known} ({detail})"
    elif status is not None and status >= 500:
        reason = f"Twilio had a problem ({detail})"
    else:
        reason = f"Twilio refused the request ({detail})"
    return TwilioDeliveryFailed(channel, reason, code=code, status=status)


def checked_sid(channel: str, sid: object) -> str:
    """The SID Twilio returned, refusing an answer without one."""
    if not isinstance(sid, str) or not sid:
        raise DeliveryFailed(channel, UNREADABLE)
    return sid
