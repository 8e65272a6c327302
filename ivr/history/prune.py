"""Forgetting old calls: call history is kept IVR_CALL_HISTORY_DAYS, then deleted.

Used by `ivr calls prune` and the scheduled job. Deletes in batches, each its own
transaction, so a large backlog never holds long locks or one huge transaction; the
steps go first, so it works whether or not the database enforces ON DELETE CASCADE
(SQLite without its foreign-keys pragma does not).

An audited prune commits each batch together with its own `calls.pruned` row (how many
that batch deleted, and the run's running total), so a run cut short — the job's
timeout, a deploy, a lost connection — never leaves deletions nobody recorded. The job
is also bounded (`MAX_BATCHES`, `BUDGET_SECONDS`) to end well inside its timeout; what
is left is older than the cut-off still, and the next daily run continues with it.
Audit rows (`call.ended`) are not touched: they are the record of what happened and
follow the audit's own retention.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from ivr.storage import audit
from ivr.storage.models import CallRecord, CallStep

log = logging.getLogger(__name__)

BATCH = 1000  # calls per transaction
MAX_BATCHES = 100  # a scheduled run deletes at most 100,000 calls
BUDGET_SECONDS = 60.0  # and starts no batch after this (the job's timeout is 120 s)


def prune(
    session: Session,
    older_than: datetime,
    batch: int = BATCH,
    *,
    max_batches: int | None = None,
    budget: float | None = None,
    actor: str | None = None,
    days: int | None = None,
) -> int:
    """Delete the calls (and their steps) that started before `older_than`, `batch` calls
    per transaction, oldest first; how many calls were deleted.

    Stops after `max_batches` batches, or before a batch once `budget` seconds have
    passed (at least one batch runs). With an `actor` each batch is committed with its
    `calls.pruned` audit row (`days`: the retention it applied, when there is one)."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, not {batch}")
    if max_batches is not None and max_batches < 1:
        raise ValueError(f"max_batches must be at least 1, not {max_batches}")
    cutoff = _utc(older_than)
    started = time.monotonic()
    deleted = batches = 0
    while max_batches is None or batches < max_batches:
        if batches and budget is not None and time.monotonic() - started >= budget:
            break
        sids = _oldest(session, cutoff, batch)
        if sids:
            session.execute(delete(CallStep).where(CallStep.call_sid.in_(sids)))
            session.execute(delete(CallRecord).where(CallRecord.call_sid.in_(sids)))
            batches += 1
            deleted += len(sids)
        if actor is not None and (sids or not batches):  # a run that found none says so
            _audit_batch(session, len(sids), deleted, batches, days, cutoff, actor=actor)
        else:
            session.commit()  # the audit row commits with the deletion, or this does
        session.expire_all()  # rows deleted behind the identity map's back
        if len(sids) < batch:
            return deleted
    if _oldest(session, cutoff, 1):
        log.warning(
            "calls prune stopped after %d batch(es), %d call(s) deleted; calls older than "
            "%s remain, the next run continues",
            batches,
            deleted,
            cutoff.isoformat(),
        )
    return deleted


def _oldest(session: Session, cutoff: datetime, limit: int) -> list[str]:
    """The CallSids of (at most `limit`) calls started before `cutoff`, oldest first."""
    query = select(CallRecord.call_sid).where(CallRecord.started_at < cutoff)
    return list(session.scalars(query.order_by(CallRecord.started_at).limit(limit)))


def cutoff_for(days: int, now: datetime) -> datetime:
    """The start time before which a call is older than `days` days."""
    if days < 1:
        raise ValueError(f"days must be at least 1, not {days}")
    return _utc(now) - timedelta(days=days)


def prune_expired(
    session: Session,
    days: int,
    now: datetime,
    *,
    actor: str | None = None,
    max_batches: int | None = MAX_BATCHES,
    budget: float | None = BUDGET_SECONDS,
) -> int:
    """Delete the calls that started more than `days` days before `now`, within one
    run's bounds; how many. With an `actor` ("scheduler", "cli") each batch is audited
    as `calls.pruned`."""
    cutoff = cutoff_for(days, now)
    return prune(session, cutoff, max_batches=max_batches, budget=budget, actor=actor, days=days)


def _audit_batch(
    session: Session,
    deleted: int,
    total: int,
    batch: int,
    days: int | None,
    cutoff: datetime,
    *,
    actor: str,
) -> None:
    """Record one batch (`calls.pruned`), committing it with the batch's deletions: how
    many calls it deleted, the run's total so far and batch number, the cut-off."""
    details: dict[str, object] = {
        "deleted": deleted,
        "total": total,
        "batch": batch,
        "before": _utc(cutoff).isoformat(),
    }
    if days is not None:
        details["days"] = days
    audit.record(session, "calls.pruned", actor=actor, details=details)


def count_older(session: Session, older_than: datetime) -> int:
    """How many calls started before `older_than` (what a prune would delete)."""
    query = select(func.count()).select_from(CallRecord)
    return session.scalar(query.where(CallRecord.started_at < _utc(older_than))) or 0


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
