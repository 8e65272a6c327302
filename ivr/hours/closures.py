"""The emergency closures of the line, in the database: close, open again, what is in
force now, and the history.

Closing and opening are each one transaction with their audit record (`line.closed`,
`line.opened`), so the switch and its trace are written together or not at all. At
most one closure of a line is in force (a partial unique index), so two people
closing at the same moment cannot both succeed: the second is told the line is
closed already, by whom. Either change clears this process's cache of the status
(`ivr.hours.status`); other workers see it within CACHE_SECONDS.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ivr.errors import IvrError
from ivr.hours import status
from ivr.storage import audit
from ivr.storage.models import LineClosure, utcnow

CLOSED_ACTION = "line.closed"
OPENED_ACTION = "line.opened"
HISTORY_SIZE = 20


class AlreadyClosed(IvrError):
    """The line is closed already: nothing was changed."""

    def __init__(self, closure: LineClosure):
        self.closure = closure
        super().__init__(f"the line {closure.line} is closed already ({describe(closure)})")


class AlreadyOpen(IvrError):
    """The line is open already: nothing was changed."""

    def __init__(self, line: str):
        self.line = line
        super().__init__(f"the line {line} is open already; nothing to open")


class ClosedAgain(IvrError):
    """The closure someone meant to end is over, and another one is in force now."""

    def __init__(self, closure: LineClosure):
        self.closure = closure
        super().__init__(
            f"the line {closure.line} was opened and closed again meanwhile ({describe(closure)})"
        )


@dataclass(frozen=True)
class Status:
    """How the line is now, as the CLI and the console show it."""

    line: str
    closure: LineClosure | None  # the closure in force; None: open

    @property
    def closed(self) -> bool:
        return self.closure is not None

    def as_dict(self) -> dict[str, Any]:
        closure = self.closure
        return {
            "line": self.line,
            "state": "closed" if closure else "open",
            "message": closure.message if closure else None,
            "closed_by": closure.closed_by if closure else None,
            "closed_at": iso(closure.closed_at) if closure else None,
        }


def current(session: Session, line: str) -> LineClosure | None:
    """The closure of `line` in force (not opened again), if any."""
    query = select(LineClosure).where(LineClosure.line == line, LineClosure.opened_at.is_(None))
    return session.scalars(query).first()


def history(session: Session, line: str, limit: int = HISTORY_SIZE) -> list[LineClosure]:
    """The line's closures, newest first."""
    query = (
        select(LineClosure)
        .where(LineClosure.line == line)
        .order_by(LineClosure.id.desc())
        .limit(limit)
    )
    return list(session.scalars(query))


def close(session: Session, line: str, message: str, by: str) -> LineClosure:
    """Close the line with the prompt `message` (a key the caller checked exists in the
    live version), audited in the same transaction; AlreadyClosed when it is."""
    existing = current(session, line)
    if existing is not None:
        session.rollback()
        raise AlreadyClosed(existing)
    closure = LineClosure(line=line, message=message, closed_by=by[:64])
    try:
        session.add(closure)
        session.flush()  # the unique index answers here when someone closed it meanwhile
    except IntegrityError:
        session.rollback()
        winner = current(session, line)
        if winner is None:
            raise
        raise AlreadyClosed(winner) from None
    # Commits the closure with its record: one transaction.
    audit.record(
        session,
        CLOSED_ACTION,
        actor=by[:64],
        details={"line": line, "message": message, "closure": closure.id},
    )
    status.forget()
    return closure


def reopen(session: Session, line: str, by: str, expected: int | None = None) -> LineClosure:
    """Open the line again, audited in the same transaction; AlreadyOpen when it is, and
    ClosedAgain when `expected` (the closure the person saw) is no longer the one in force."""
    existing = current(session, line)
    if existing is None:
        session.rollback()
        raise AlreadyOpen(line)
    if expected is not None and existing.id != expected:
        session.rollback()
        raise ClosedAgain(existing)
    now = utcnow()
    # Only while still in force: of two people opening at once, one opens it.
    opened = session.execute(
        update(LineClosure)
        .where(LineClosure.id == existing.id, LineClosure.opened_at.is_(None))
        .values(opened_at=now, opened_by=by[:64])
        .execution_options(synchronize_session=False)
    )
    if getattr(opened, "rowcount", 1) != 1:
        session.rollback()
        raise AlreadyOpen(line)
    audit.record(  # commits the opening with its record: one transaction
        session,
        OPENED_ACTION,
        actor=by[:64],
        details={"line": line, "message": existing.message, "closure": existing.id},
    )
    status.forget()
    return existing


def describe(closure: LineClosure) -> str:
    """One line about a closure: since when, by whom, with which message."""
    return f"since {iso(closure.closed_at)} by {closure.closed_by}, message {closure.message}"


def iso(moment: datetime | None) -> str | None:
    """A stored time as ISO 8601 UTC (SQLite hands back naive UTC)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds")
