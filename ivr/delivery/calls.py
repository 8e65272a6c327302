"""Outbound calls through the real Twilio REST client (`client.calls.create`).

The request carries only our webhook URLs (with an opaque id) and a ring
timeout: what the call says is decided by our webhook when someone answers, so
no code ever travels to Twilio ahead of time. Answering machines are kept away
from codes by the key press our answer webhook asks for, not by Twilio's
machine detection (which costs seconds of silence and money on every call).
"""

from __future__ import annotations

import logging

from twilio.rest import Client

from ivr.delivery import OutgoingCall
from ivr.delivery.twilio_errors import calling_twilio, checked_sid
from ivr.phone import mask

log = logging.getLogger(__name__)


class TwilioCalls:
    """The Dialer: one `calls.create` per call, from the support number."""

    def __init__(self, client: Client, from_number: str):
        self.client = client
        self.from_number = from_number

    def place(self, call: OutgoingCall) -> str:
        """Create the call at Twilio and return its SID (CA…); raise DeliveryFailed."""
        with calling_twilio("call"):
            created = self.client.calls.create(
                to=call.to,
                from_=self.from_number,
                url=call.url,
                method="POST",
                status_callback=call.status_callback,
                status_callback_method="POST",
                timeout=call.ring_seconds,
            )
            sid = checked_sid("call", created.sid)
        log.info("call created sid=%s to=%s for call_sid=%s", sid, mask(call.to), call.call_sid)
        return sid
