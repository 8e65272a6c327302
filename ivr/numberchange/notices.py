"""The notices a number change sends to the old contacts (NIST SP 800-63B 6.1.2.1, ASVS 2.2.3).

The old number gets a text, and the mailbox on file an email, right after the change:
if it was not the customer, they learn of it through a channel the attacker did not
choose, and the message says how to report it. The notices are worded here; they are
sent by background jobs (retried until Twilio or the mail server takes them), or at
once when no job can be queued.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from ivr.delivery import Channel, DeliveryFailed, Outgoing
from ivr.flow.model import Catalog
from ivr.numberchange.pending import PendingChange

PURPOSE = "number_changed"


class NoticeQueue(Protocol):
    """Hands a notice to a background job, once per idempotency key (ivr.jobs)."""

    def __call__(self, message: Outgoing, *, key: str, account_id: int) -> bool: ...


def change_notices(
    channels: Iterable[str],
    catalog: Catalog,
    change: PendingChange,
    email: str | None,
    support_number: str,
) -> list[Outgoing]:
    """The notices of a change in the caller's language, for the channels there are."""
    texts = catalog.languages[change.language].texts
    values = {"last4": change.new[-4:], "support_number": support_number}
    notices = [("sms", change.old, "")]
    if email:
        notices.append(("email", email, texts["message_number_changed_email_subject"]))
    available = set(channels)
    return [
        Outgoing(
            channel=channel,
            to=to,
            body=" ".join(texts[f"message_number_changed_{channel}"].format(**values).split()),
            subject=subject,
            call_sid=change.call_sid,
            purpose=PURPOSE,
        )
        for channel, to, subject in notices
        if channel in available
    ]


def notice_key(change: PendingChange, channel: str) -> str:
    """The idempotency key of one notice: one per change and channel, ever."""
    return f"notice:{change.id}:{channel}"


def send_now(channels: Mapping[str, Channel], message: Outgoing) -> str | None:
    """Send one notice at once; the reason it failed, or None."""
    try:
        channels[message.channel].send(message)
    except DeliveryFailed as exc:
        return exc.reason
    return None
