"""The numbers behind the console's dashboard, for a period (and optionally one flow):
calls per hour, verification rate and methods, code delivery per channel and result,
call-back outcomes, transfer reasons, time spent in the IVR, abandonment.

Everything is counted in the database, so a page view over 30 busy days reads a few
dozen result rows, never the period's calls: plain columns with GROUP BY; calls per
hour grouped by the hour since the epoch (an expression per dialect, SQLite and
PostgreSQL); the JSON list of methods unnested per dialect (`json_each`,
`json_array_elements_text`); the median and p90 of `ivr_seconds` as nearest-rank
percentiles read with ORDER BY … OFFSET. Another dialect falls back to reading just
the one column concerned. Plain dataclasses out, no Flask.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Integer, Select, cast, func, select, true
from sqlalchemy.orm import Session

from ivr.flow import timeline
from ivr.storage.models import CallRecord, CallStep

HOUR = timedelta(hours=1)
NO_REASON = "(none given)"


@dataclass(frozen=True)
class Bucket:
    """Calls that started in the hour beginning at `start`."""

    start: datetime
    count: int


@dataclass(frozen=True)
class Dashboard:
    """Everything the dashboard draws, for calls started in [since, until)."""

    since: datetime
    until: datetime
    flow: str | None
    calls: int = 0
    hours: list[Bucket] = field(default_factory=list)
    verification: dict[str, int] = field(default_factory=dict)  # none | digits | code
    methods: dict[str, int] = field(default_factory=dict)  # calls that passed each method
    code_delivery: dict[tuple[str, str], int] = field(default_factory=dict)  # (channel, result)
    callbacks: dict[tuple[str, str], int] = field(default_factory=dict)  # (event, result)
    transfer_reasons: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)
    ivr_median: float | None = None  # seconds
    ivr_p90: float | None = None

    @property
    def verified(self) -> int:
        """Calls verified at least by their account digits."""
        return sum(n for level, n in self.verification.items() if level != "none")

    @property
    def verified_share(self) -> float:
        return self.verified / self.calls if self.calls else 0.0

    @property
    def abandoned(self) -> int:
        return self.outcomes.get(timeline.ABANDONED, 0)

    @property
    def abandoned_share(self) -> float:
        return self.abandoned / self.calls if self.calls else 0.0


def _in_period(since: datetime, until: datetime, flow: str | None) -> list[ColumnElement[bool]]:
    conditions = [CallRecord.started_at >= since, CallRecord.started_at < until]
    if flow is not None:
        conditions.append(CallRecord.flow == flow)
    return conditions


def dashboard(
    session: Session, since: datetime, until: datetime, flow: str | None = None
) -> Dashboard:
    """The dashboard's numbers for calls started in [since, until) (aware, UTC)."""
    period = _in_period(since, until, flow)
    calls = select(CallRecord.call_sid).where(*period)
    total = session.scalar(select(func.count()).select_from(CallRecord).where(*period)) or 0
    return Dashboard(
        since=since,
        until=until,
        flow=flow,
        calls=int(total),
        hours=_hours(session, period, since, until),
        verification=_grouped(session, CallRecord.verification, period),
        methods=_methods(session, period),
        code_delivery=_step_counts(session, calls, [timeline.CODE_SENT], "channel", "result"),
        callbacks=_callbacks(session, calls),
        transfer_reasons=_transfer_reasons(session, calls, period),
        outcomes=_grouped(session, CallRecord.outcome, period),
        ivr_median=_ivr_percentile(session, period, 50),
        ivr_p90=_ivr_percentile(session, period, 90),
    )


def hour_buckets(started: Sequence[datetime], since: datetime, until: datetime) -> list[Bucket]:
    """Calls started in [since, until) per hour, from the hour `since` falls in, empty
    hours included."""
    since, until = _utc(since), _utc(until)
    first = since.replace(minute=0, second=0, microsecond=0)
    count = max(1, math.ceil((until - first) / HOUR))
    tally = [0] * count
    for moment in map(_utc, started):
        if since <= moment < until:
            tally[int((moment - first) // HOUR)] += 1
    return [Bucket(first + i * HOUR, n) for i, n in enumerate(tally)]


def percentile(ordered: Sequence[float], pct: float) -> float | None:
    """The nearest-rank percentile of sorted values (None for none)."""
    if not ordered:
        return None
    return ordered[_rank(len(ordered), pct) - 1]


def _rank(count: int, pct: float) -> int:
    """The 1-based nearest rank of the `pct` percentile among `count` sorted values."""
    return max(1, math.ceil(pct / 100 * count))


def _utc(moment: datetime) -> datetime:
    """SQLite hands back naive UTC; PostgreSQL aware datetimes."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _grouped(session: Session, column: Any, period: list[ColumnElement[bool]]) -> dict[str, int]:
    rows = session.execute(select(column, func.count()).where(*period).group_by(column)).all()
    return {str(value): int(n) for value, n in rows}


def _step_counts(
    session: Session, calls: Select[Any], events: list[str], *keys: str
) -> dict[tuple[str, str], int]:
    """Steps of `events` of the period's calls, counted by two fields of their detail."""
    first, second = (CallStep.detail[key].as_string() for key in keys)
    rows = session.execute(
        select(first, second, func.count())
        .where(CallStep.event.in_(events), CallStep.call_sid.in_(calls))
        .group_by(first, second)
    ).all()
    return {(str(a or "?"), str(b or "?")): int(n) for a, b, n in rows}


def _callbacks(session: Session, calls: Select[Any]) -> dict[tuple[str, str], int]:
    """Call-back steps by (event, result): started, ended unconfirmed, its code checked."""
    result = CallStep.detail["result"].as_string()
    status = CallStep.detail["status"].as_string()
    rows = session.execute(
        select(CallStep.event, func.coalesce(result, status), func.count())
        .where(
            CallStep.event.in_(
                [timeline.CALLBACK, timeline.CALLBACK_STATUS, timeline.CALLBACK_CODE]
            ),
            CallStep.call_sid.in_(calls),
        )
        .group_by(CallStep.event, func.coalesce(result, status))
    ).all()
    return {(str(event), str(value or "?")): int(n) for event, value, n in rows}


def _transfer_reasons(
    session: Session, calls: Select[Any], period: list[ColumnElement[bool]]
) -> dict[str, int]:
    """Why calls were handed to people, among the period's calls with a transfer step."""
    transferred = select(CallStep.call_sid).where(
        CallStep.event == timeline.TRANSFER, CallStep.call_sid.in_(calls)
    )
    rows = session.execute(
        select(CallRecord.transfer_reason, func.count())
        .where(*period, CallRecord.call_sid.in_(transferred))
        .group_by(CallRecord.transfer_reason)
    ).all()
    return {str(reason) if reason else NO_REASON: int(n) for reason, n in rows}


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def _hours(
    session: Session, period: list[ColumnElement[bool]], since: datetime, until: datetime
) -> list[Bucket]:
    """Calls per hour, grouped in the database by the hour since the epoch (UTC)."""
    dialect = _dialect(session)
    if dialect == "sqlite":  # stored as naive UTC text: strftime reads it as UTC
        hour: Any = cast(func.strftime("%s", CallRecord.started_at), Integer) // 3600
    elif dialect == "postgresql":  # epoch of a timestamptz is absolute, whatever the zone
        hour = cast(func.floor(func.extract("epoch", CallRecord.started_at) / 3600), BigInteger)
    else:  # another database: read only the start times
        started = session.scalars(select(CallRecord.started_at).where(*period))
        return hour_buckets(list(started), since, until)
    rows = session.execute(select(hour, func.count()).where(*period).group_by(hour)).all()
    counted = {datetime.fromtimestamp(int(h) * 3600, UTC): int(n) for h, n in rows}
    return [
        Bucket(bucket.start, counted.get(bucket.start, 0))
        for bucket in hour_buckets([], since, until)
    ]


def _methods(session: Session, period: list[ColumnElement[bool]]) -> dict[str, int]:
    """Calls that passed each verification method (a method listed twice counts once),
    unnesting the JSON list in the database."""
    dialect = _dialect(session)
    if dialect == "sqlite":
        element = func.json_each(CallRecord.methods).table_valued("value")
        method: Any = element.c.value
        is_list = func.json_type(CallRecord.methods) == "array"
    elif dialect == "postgresql":
        unnest = func.json_array_elements_text(CallRecord.methods)
        element = unnest.table_valued("value").render_derived()  # AS anon(value)
        method = element.c.value
        is_list = func.json_typeof(CallRecord.methods) == "array"
    else:  # another database: read only the lists
        listed = session.scalars(select(CallRecord.methods).where(*period))
        counter: Counter[str] = Counter()
        for methods in listed:
            counter.update(set(methods or []))
        return dict(counter)
    rows = session.execute(
        select(method, func.count(CallRecord.call_sid.distinct()))
        .select_from(CallRecord)
        .join(element, true())
        .where(*period, is_list, method.is_not(None))
        .group_by(method)
    ).all()
    return {str(name): int(n) for name, n in rows}


def _ivr_percentile(
    session: Session, period: list[ColumnElement[bool]], pct: float
) -> float | None:
    """The nearest-rank percentile of `ivr_seconds`: count, then read the one value at
    its rank (ORDER BY … OFFSET), the same on every database."""
    known = [*period, CallRecord.ivr_seconds.is_not(None)]
    count = session.scalar(select(func.count(CallRecord.ivr_seconds)).where(*known)) or 0
    if not count:
        return None
    value = session.scalar(
        select(CallRecord.ivr_seconds)
        .where(*known)
        .order_by(CallRecord.ivr_seconds)
        .offset(_rank(int(count), pct) - 1)
        .limit(1)
    )
    return None if value is None else float(value)
