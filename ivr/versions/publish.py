"""Publishing a flow's working files and rolling back: one action each, audited.

The database is the record (versions, the live one, the audit trail, all in one
transaction); the Redis pointer is then set so every worker starts new calls on
the new version within seconds, without a restart.

Making a version live is a compare-and-set: the caller says which version it saw live
(the console: the draft's `based_on`, or the version its confirmation page showed; the
CLI: the one it read first), and a publish or rollback that finds another one live by
the time it writes changes nothing (LiveChanged), so two people never silently
overwrite each other. A version goes live only if it passes today's checks: a stored
version that no longer loads would fail every new call.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Final, Literal

import redis
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ivr.errors import DefinitionProblem, InvalidDefinition, IvrError, StorageUnavailable
from ivr.storage.models import AuditEvent, FlowVersion
from ivr.versions import store

log = logging.getLogger(__name__)

PUBLISHED, UNCHANGED, RELIVE = "published", "unchanged", "made_live"
POINTER_NOTE = f"workers switch within {store.POINTER_TTL} s because Redis did not take the pointer"


class _Seen(Enum):
    NOW = "now"


# `expected=READ_NOW`: no caller's view to hold against, the live version read here is
# the one expected (the runtime's first start, scripts).
READ_NOW: Final = _Seen.NOW
Expected = str | None | Literal[_Seen.NOW]


class LiveChanged(IvrError):
    """Another version went live since the caller looked: nothing was stored or changed."""

    def __init__(self, flow: str, expected: str | None, actual: str | None):
        self.flow, self.expected, self.actual = flow, expected, actual
        super().__init__(
            f"the live version changed meanwhile: {flow} is now at {actual or 'none'},"
            f" expected {expected or 'none'}; nothing was changed"
        )


class NoLongerValid(InvalidDefinition):
    """A stored version that fails today's checks (it would fail every new call)."""

    def __init__(self, version: str, problems: list[DefinitionProblem]):
        self.version = version
        super().__init__(problems)
        self.args = (
            f"version {version} no longer passes today's checks ({len(self.problems)}"
            " problem(s)): it cannot be made live",
        )


@dataclass(frozen=True)
class Outcome:
    """What a publish or rollback did: `status` is PUBLISHED (a new version stored and
    live), UNCHANGED (the live version already has this content) or RELIVE (an older
    version with this content is live again). `pointer_set` is False when the database
    has the new live version but Redis did not take the pointer: workers switch when
    the old pointer lapses (POINTER_TTL)."""

    flow: str
    version: str
    previous: str | None
    status: str
    pointer_set: bool = True


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
    expected: Expected = READ_NOW,
    now: datetime | None = None,
) -> Outcome:
    """Validate the working files of `flow`, store them and make them live.

    InvalidDefinition (every problem) when they fail any check; LiveChanged when the
    live version is no longer `expected`; nothing changes then.
    """
    draft = store.read_draft(flows_dir, prompts_dir, flow, region)
    return publish_draft(session, client, draft, by=by, message=message, expected=expected, now=now)


def publish_draft(
    session: Session,
    client: redis.Redis,
    draft: store.Draft,
    *,
    by: str,
    message: str = "",
    expected: Expected = READ_NOW,
    now: datetime | None = None,
) -> Outcome:
    """Store a checked draft (working files, or the ops console's draft) and make it live
    if `expected` is still the live version: the one publish the CLI and console share.

    LiveChanged, with this session rolled back (anything the caller added in it too),
    when another version went live meanwhile. Without `expected`, a first publish that
    loses the race to another raises IntegrityError (the runtime's first start retries).
    """
    flow = draft.loaded.flow.name
    moment = now or datetime.now(UTC)
    version = draft.loaded.flow.version
    live = store.live_row(session, flow)
    previous = live.version_row.version if live is not None else None
    if expected is not READ_NOW and expected != previous:
        raise _moved(session, flow, expected)
    if previous == version:
        return Outcome(flow, version, previous, UNCHANGED)
    try:
        row = store.find_version(session, flow, version)
        status = RELIVE
        if row is None or row.version != version:
            row = store.add_version(session, draft, by=by, message=message, now=moment)
            status = PUBLISHED
        pointer = _make_live(
            session,
            client,
            row,
            live.version_row if live is not None else None,
            action="flow.published",
            by=by,
            now=moment,
        )
    except IntegrityError:
        if expected is READ_NOW:
            raise
        raise _moved(session, flow, expected) from None
    return Outcome(flow, version, previous, status, pointer)


def rollback(
    session: Session,
    client: redis.Redis,
    *,
    flow: str,
    to: str | None,
    by: str,
    region: str,
    expected: Expected = READ_NOW,
    now: datetime | None = None,
) -> Outcome:
    """Make `to` (a version id or its first digits), or else the version published just
    before the live one, live again, if `expected` is still the live version.

    LookupError says why there is nothing to go to; NoLongerValid (an InvalidDefinition,
    with every problem) refuses a version that fails today's checks in `region`;
    LiveChanged, another version went live meanwhile. Nothing changes then.
    """
    live = store.live_row(session, flow)
    if live is None:
        raise LookupError(f"flow {flow!r} has no published version")
    current = live.version_row
    if expected is not READ_NOW and expected != current.version:
        raise _moved(session, flow, expected)
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
    try:
        store.load_version(target, region)
    except InvalidDefinition as exc:
        raise NoLongerValid(target.version, exc.problems) from None
    moment = now or datetime.now(UTC)
    pointer = _make_live(
        session, client, target, current, action="flow.rolled_back", by=by, now=moment
    )
    return Outcome(flow, target.version, current.version, RELIVE, pointer)


def _before(row: FlowVersion, current: FlowVersion) -> bool:
    return (row.published_at, row.id) < (current.published_at, current.id)


def _moved(session: Session, flow: str, expected: str | None) -> LiveChanged:
    """Undo this session's work and say which version is live now."""
    session.rollback()
    live = store.live_row(session, flow)
    return LiveChanged(flow, expected, live.version_row.version if live is not None else None)


def _make_live(
    session: Session,
    client: redis.Redis,
    row: FlowVersion,
    previous: FlowVersion | None,
    *,
    action: str,
    by: str,
    now: datetime,
) -> bool:
    """Commit `row` as live (if `previous` still is), then set the Redis pointer; False
    when Redis did not take it (the version is live all the same: see POINTER_TTL)."""
    expected_id = previous.id if previous is not None else None
    if not store.set_live(session, row, expected=expected_id, by=by, now=now):
        raise _moved(session, row.flow, previous.version if previous is not None else None)
    session.add(
        AuditEvent(
            at=now,
            action=action,
            actor=by,
            details={
                "flow": row.flow,
                "from": previous.version if previous is not None else None,
                "to": row.version,
                "message": row.message,
            },
        )
    )
    session.commit()
    try:
        store.write_pointer(client, row.flow, row.version)
    except StorageUnavailable as exc:
        # The database is the record: the version is live and the old pointer lapses
        # within POINTER_TTL, after which workers read the database. Not a failure.
        log.warning(
            "flow %s: version %s is live but the Redis pointer was not set (%s); %s",
            row.flow,
            row.version,
            exc,
            POINTER_NOTE,
        )
        return False
    return True
