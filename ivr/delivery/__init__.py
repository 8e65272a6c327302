"""Delivering one-time codes and notices: SMS, email, and the local outbox stand-in.

Every channel takes an `Outgoing` message and returns a provider id, or raises
`DeliveryFailed` with a reason the caller can be told plainly. Nothing here
logs a message body (it may carry a code).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ivr.errors import CallError


@dataclass(frozen=True)
class Outgoing:
    """One message to send: `channel` is "sms" or "email"; `to` is E.164 or an address."""

    channel: str
    to: str
    body: str
    subject: str = ""
    call_sid: str | None = None
    purpose: str = ""


class DeliveryFailed(CallError):
    """The message could not be handed to the provider (REST error, timeout, SMTP error)."""

    def __init__(self, channel: str, reason: str):
        self.channel = channel
        self.reason = reason
        super().__init__(f"{channel} delivery failed: {reason}")


class Channel(Protocol):
    """Something that can send an Outgoing message of its kind."""

    def send(self, message: Outgoing) -> str:
        """Send, returning the provider's id for the message; raise DeliveryFailed."""
