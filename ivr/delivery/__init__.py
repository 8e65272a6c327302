"""Delivering one-time codes and notices: SMS, email, outbound calls, and the local outbox.

Every channel takes an `Outgoing` message and returns a provider id, or raises
`DeliveryFailed` with a reason the caller can be told plainly. A `Dialer` places
an outbound call (`OutgoingCall`) whose words come later from our own webhook,
so nothing secret travels in the request. Nothing here logs a message body (it
may carry a code).
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
    """The message could not be handed to the provider (REST error, timeout, SMTP error).

    `permanent` failures (the provider refused this request: a bad number, an opt-out)
    would fail again; a background job gives up on them at once instead of retrying.
    """

    def __init__(self, channel: str, reason: str):
        self.channel = channel
        self.reason = reason
        super().__init__(f"{channel} delivery failed: {reason}")

    @property
    def permanent(self) -> bool:
        """Whether the same request would certainly fail again."""
        return False


class DeliveryUncertain(DeliveryFailed):
    """The request reached the provider but no answer came in time: the message or call
    may still go out. A code sent this way stays valid, and a job is not retried (a
    second send could deliver twice)."""


class Channel(Protocol):
    """Something that can send an Outgoing message of its kind."""

    def send(self, message: Outgoing) -> str:
        """Send, returning the provider's id for the message; raise DeliveryFailed."""


@dataclass(frozen=True)
class OutgoingCall:
    """An outbound call to place: Twilio fetches `url` when it is answered.

    `url` and `status_callback` carry only an opaque id; `ring_seconds` is how long
    the phone rings before Twilio gives up (no-answer).
    """

    to: str
    url: str
    status_callback: str
    ring_seconds: int
    call_sid: str | None = None  # the call it was placed for, when there is one
    purpose: str = ""


class Dialer(Protocol):
    """Something that can place an outbound call."""

    def place(self, call: OutgoingCall) -> str:
        """Place the call, returning the provider's call id; raise DeliveryFailed."""
