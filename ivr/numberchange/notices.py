"""The notices a number change sends to the old contacts (NIST SP 800-63B 6.1.2.1, ASVS 2.2.3).

The old number gets a text, and the mailbox on file an email, right after the change:
if it was not the customer, they learn of it through a channel the attacker did not
choose, and the message says how to report it.
"""

from __future__ import annotations

from collections.abc import Mapping

from ivr.delivery import Channel, DeliveryFailed, Outgoing
from ivr.flow.model import Catalog
from ivr.numberchange.pending import PendingChange


def send_change_notices(
    channels: Mapping[str, Channel],
    catalog: Catalog,
    change: PendingChange,
    email: str | None,
    support_number: str,
) -> list[tuple[str, str]]:
    """Send the notices in the caller's language; return (channel, reason) of each that failed."""
    texts = catalog.languages[change.language].texts
    values = {"last4": change.new[-4:], "support_number": support_number}
    notices = [("sms", change.old, "")]
    if email:
        notices.append(("email", email, texts["message_number_changed_email_subject"]))
    failed: list[tuple[str, str]] = []
    for channel, to, subject in notices:
        if channel not in channels:
            continue
        body = texts[f"message_number_changed_{channel}"].format(**values)
        try:
            channels[channel].send(
                Outgoing(
                    channel=channel,
                    to=to,
                    body=" ".join(body.split()),
                    subject=subject,
                    call_sid=change.call_sid,
                    purpose="number_changed",
                )
            )
        except DeliveryFailed as exc:
            failed.append((channel, exc.reason))
    return failed
