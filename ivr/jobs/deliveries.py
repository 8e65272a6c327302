"""Messages handed to background jobs: a notice is queued now and sent by a worker.

The payload holds the worded message (a notice: never a code) and where it goes; the
idempotency key (one per change and channel) makes a repeat of the same notice a
no-op, and the runner's "done" marker keeps a retry from sending it twice.
"""

from __future__ import annotations

from typing import Any

from ivr.delivery import Outgoing
from ivr.jobs.queue import NOTICE, enqueue


def send_later(message: Outgoing, *, key: str, account_id: int) -> bool:
    """Queue `message` for sending (False: that key was queued before)."""
    payload: dict[str, Any] = {
        "channel": message.channel,
        "to": message.to,
        "body": message.body,
        "subject": message.subject,
        "call_sid": message.call_sid,
        "purpose": message.purpose,
        "account_id": account_id,
    }
    return enqueue(NOTICE, payload, key=key)


def message_of(payload: dict[str, Any]) -> Outgoing:
    """The message a notice job sends."""
    return Outgoing(
        channel=str(payload["channel"]),
        to=str(payload["to"]),
        body=str(payload["body"]),
        subject=str(payload.get("subject") or ""),
        call_sid=payload.get("call_sid"),
        purpose=str(payload.get("purpose") or ""),
    )
