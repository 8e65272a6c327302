"""What the agent page and `ivr voicemail list` read, and the "mark handled" action.

Agents see every message (a voicemail belongs to no queue): newest first, the caller
masked, the account as the agent page shows accounts (its number masked to the last
four) and only when the call was verified. Erased and deleted messages are not listed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.orm import Session

from ivr.phone import mask_account
from ivr.storage.models import Account, Voicemail

LISTED = ("recording", "ready", "failed")  # erased and deleted messages are gone
LIST_LIMIT = 100


def listed(
    session: Session, *, include_handled: bool = True, limit: int = LIST_LIMIT
) -> list[Voicemail]:
    """The messages agents see, newest first."""
    query = select(Voicemail).where(Voicemail.status.in_(LISTED))
    if not include_handled:
        query = query.where(Voicemail.handled_at.is_(None))
    query = query.order_by(Voicemail.created_at.desc(), Voicemail.id.desc()).limit(limit)
    return list(session.scalars(query))


def unhandled_count(session: Session) -> int:
    """How many listed messages nobody has marked handled yet."""
    query = select(func.count(Voicemail.id)).where(
        Voicemail.status.in_(LISTED), Voicemail.handled_at.is_(None)
    )
    return int(session.scalar(query) or 0)


def find(session: Session, voicemail_id: int) -> Voicemail | None:
    """A listed message by id (None for an erased, deleted or unknown one)."""
    row = session.get(Voicemail, voicemail_id)
    return row if row is not None and row.status in LISTED else None


def mark_handled(session: Session, row: Voicemail, by: str, now: datetime | None = None) -> bool:
    """Mark a message handled (not committed: the audit row commits it); False when it
    already was. One conditional UPDATE, so of two agents at once only the first counts
    and their name and time stay."""
    result = session.execute(
        update(Voicemail)
        .where(Voicemail.id == row.id, Voicemail.handled_at.is_(None))
        .values(handled_at=now or datetime.now(UTC), handled_by=by)
        .execution_options(synchronize_session=False)
    )
    session.refresh(row)
    return bool(cast(CursorResult[Any], result).rowcount)


def age(created: datetime, now: datetime) -> str:
    """How long ago, in words an agent reads at a glance ("5 min", "3 h", "2 d")."""
    if created.tzinfo is None:  # SQLite hands back naive UTC
        created = created.replace(tzinfo=UTC)
    seconds = max(0, int((now - created).total_seconds()))
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


def as_dict(session: Session, row: Voicemail, now: datetime | None = None) -> dict[str, Any]:
    """One message as the page and the CLI show it (masked values only)."""
    moment = now or datetime.now(UTC)
    account = session.get(Account, row.account_id) if row.account_id is not None else None
    created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
    return {
        "id": row.id,
        "call_sid": row.call_sid,
        "recording_sid": row.recording_sid,
        "created_at": created.isoformat(timespec="seconds"),
        "age": age(created, moment),
        "caller": row.caller or "withheld",
        "account": mask_account(account.number) if account is not None else None,
        "verification": row.verification,
        "methods": list(row.methods or []),
        "duration": row.duration,
        "language": row.language,
        "flow": row.flow,
        "status": row.status,
        "handled_at": row.handled_at.isoformat(timespec="seconds") if row.handled_at else None,
        "handled_by": row.handled_by,
    }
