"""A flow's funnel over a period: how many calls entered each node, took each exit, and
hung up at each node — the numbers the console's diagram overlay draws.

Counted in the database with GROUP BY (on SQLite and PostgreSQL alike), over the calls
of one flow (and version) that started in the period: `calls.flow + started_at` picks
the calls, `call_steps.node + event` the steps. A call that entered a node three times
(a menu repeated) counts once there: the numbers are callers, not visits, so they can
be compared with the period's call count. No Flask here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from ivr.flow import timeline
from ivr.storage.models import CallRecord, CallStep


@dataclass(frozen=True)
class Funnel:
    """The counts of one flow (and version) over [since, until)."""

    flow: str
    version: str | None
    since: datetime
    until: datetime
    calls: int = 0
    entered: dict[str, int] = field(default_factory=dict)  # node -> distinct calls
    exits: dict[tuple[str, str], int] = field(default_factory=dict)  # (node, exit) -> calls
    dropped: dict[str, int] = field(default_factory=dict)  # node -> abandoned calls ending there

    def share(self, count: int) -> float:
        """`count` as a share of the period's calls (0 when there were none)."""
        return count / self.calls if self.calls else 0.0


def _period_calls(flow: str, version: str | None, since: datetime, until: datetime) -> Select:
    """The call_sids of the flow's calls that started in the period."""
    query = select(CallRecord.call_sid).where(
        CallRecord.flow == flow,
        CallRecord.started_at >= since,
        CallRecord.started_at < until,
    )
    if version is not None:
        query = query.where(CallRecord.version == version)
    return query


def funnel(
    session: Session, flow: str, version: str | None, since: datetime, until: datetime
) -> Funnel:
    """The funnel of `flow` (only `version` when given) over calls started in
    [since, until): aware datetimes, UTC."""
    calls = _period_calls(flow, version, since, until)
    total = session.scalar(select(func.count()).select_from(calls.subquery())) or 0
    distinct_calls = func.count(CallStep.call_sid.distinct())
    entered = session.execute(
        select(CallStep.node, distinct_calls)
        .where(CallStep.event == timeline.ENTER, CallStep.node.is_not(None))
        .where(CallStep.call_sid.in_(calls))
        .group_by(CallStep.node)
    ).all()
    exits = session.execute(
        select(CallStep.node, CallStep.exit, distinct_calls)
        .where(
            CallStep.event == timeline.EXIT,
            CallStep.node.is_not(None),
            CallStep.exit.is_not(None),
        )
        .where(CallStep.call_sid.in_(calls))
        .group_by(CallStep.node, CallStep.exit)
    ).all()
    dropped_query = (
        select(CallRecord.last_node, func.count())
        .where(
            CallRecord.flow == flow,
            CallRecord.started_at >= since,
            CallRecord.started_at < until,
            CallRecord.outcome == timeline.ABANDONED,
            CallRecord.last_node.is_not(None),
        )
        .group_by(CallRecord.last_node)
    )
    if version is not None:
        dropped_query = dropped_query.where(CallRecord.version == version)
    dropped = session.execute(dropped_query).all()
    return Funnel(
        flow=flow,
        version=version,
        since=since,
        until=until,
        calls=int(total),
        entered={str(node): int(count) for node, count in entered},
        exits={(str(node), str(label)): int(count) for node, label, count in exits},
        dropped={str(node): int(count) for node, count in dropped},
    )
