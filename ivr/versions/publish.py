"""Publishing a flow's working files and rolling back: one action each, audited.

The database is the record (versions, the live one, the audit trail, all in one
transaction); the Redis pointer is then set so every worker starts new calls on
the new version within seconds, without a restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import redis
from sqlalchemy.orm import Session

from ivr.storage.models import AuditEvent, FlowVersion
from ivr.versions import store

PUBLISHED, UNCHANGED, RELIVE = "published", "unchanged", "made_live"


@dataclass(frozen=True)
class Outcome:
    """What a publish or rollback did: `status` is PUBLISHED (a new version stored and
    live), UNCHANGED (the live version already has this content) or RELIVE (an older
    version with this content is live again)."""

    flow: str
    version: str
    previous: str | None
    status: str


def publish(
    session: Session,
    client: redis.Redis,
    *,
    flows_dir: Path,
    prompts_dir: Path,
    flow: str,
    region: str,
    by: str,
    message: str = "",
    now: datetime | None = None,
) -> Outcome:
    """Validate the working files of `flow`, store them and make them live.

    InvalidDefinition (every problem) when they fail any check; nothing changes then.
    """
    draft = store.read_draft(flows_dir, prompts_dir, flow, region)
    return publish_draft(session, client, draft, by=by, message=message, now=now)


def publish_draft(
    session: Session,
    client: redis.Redis,
    draft: store.Draft,
    *,
    by: str,
    message: str = "",
    now: datetime | None = None,
) -> Outcome:
    """Store a checked draft (working files, or the ops console's draft) and make it live:
    the one publish both the CLI and the console perform."""
    flow = draft.loaded.flow.name
    moment = now or datetime.now(UTC)
    version = draft.loaded.flow.version
    live = store.live_row(session, flow)
    previous = live.version_row.version if live is not None else None
    if previous == version:
        return Outcome(flow, version, previous, UNCHANGED)
    row = store.find_version(session, flow, version)
    status = RELIVE
    if row is None or row.version != version:
        row = store.add_version(session, draft, by=by, message=message, now=moment)
        status = PUBLISHED
    _make_live(session, client, row, previous, action="flow.published", by=by, now=moment)
    return Outcome(flow, version, previous, status)


def rollback(
    session: Session,
    client: redis.Redis,
    *,
    flow: str,
    to: str | None,
    by: str,
    now: datetime | None = None,
) -> Outcome:
    """Make `to` (a version id or its first digits), or else the version published just
    before the live one, live again. LookupError says why there is nothing to go to."""
    live = store.live_row(session, flow)
    if live is None:
        raise LookupError(f"flow {flow!r} has no published version")
    current = live.version_row
    if to is not None:
        target = store.find_version(session, flow, to)
        if target is None:
            raise LookupError(f"flow {flow!r} has no version {to!r} (see ivr flows history)")
    else:
        older = [row for row in store.history(session, flow) if _before(row, current)]
        if not older:
            raise LookupError(f"version {current.version} is the oldest of {flow!r}")
        target = older[0]
    if target.id == current.id:
        return Outcome(flow, target.version, current.version, UNCHANGED)
    moment = now or datetime.now(UTC)
    _make_live(
        session, client, target, current.version, action="flow.rolled_back", by=by, now=moment
    )
    return Outcome(flow, target.version, current.version, RELIVE)


def _before(row: FlowVersion, current: FlowVersion) -> bool:
    return (row.published_at, row.id) < (current.published_at, current.id)


def _make_live(
    session: Session,
    client: redis.Redis,
    row: FlowVersion,
    previous: str | None,
    *,
    action: str,
    by: str,
    now: datetime,
) -> None:
    store.set_live(session, row, by=by, now=now)
    session.add(
        AuditEvent(
            at=now,
            action=action,
            actor=by,
            details={"flow": row.flow, "from": previous, "to": row.version, "message": row.message},
        )
    )
    session.commit()
    store.write_pointer(client, row.flow, row.version)
