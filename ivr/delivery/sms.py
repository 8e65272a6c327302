"""SMS through the real Twilio REST client (`client.messages.create`)."""

from __future__ import annotations

import logging

from twilio.rest import Client

from ivr.delivery import Outgoing
from ivr.delivery.twilio_errors import (
    TwilioDeliveryFailed,
    calling_twilio,
    checked_sid,
    twilio_failure,
)

__all__ = ["TwilioDeliveryFailed", "TwilioSms", "twilio_failure"]

log = logging.getLogger(__name__)


class TwilioSms:
    """The "sms" channel: one `messages.create` per message, from the support number."""

    def __init__(self, client: Client, from_number: str):
        self.client = client
        self.from_number = from_number

    def send(self, message: Outgoing) -> str:
        """Create the message at Twilio and return its SID (SM…); raise DeliveryFailed."""
        with calling_twilio("sms"):
            created = self.client.messages.create(
                to=message.to, from_=self.from_number, body=message.body
            )
            sid = checked_sid("sms", created.sid)
        log.info("sms created sid=%s call_sid=%s", sid, message.call_sid)
        return sid
