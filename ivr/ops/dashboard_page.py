"""The dashboard: how calls went over a period, as bar charts drawn on the server (SVG,
no script) with every number also written out as text.

`/ops/dashboard?period=24h|7d|30d&flow=…` charts the numbers of
`ivr.history.dashboard`: calls per hour, verification rate and methods, code delivery
per channel and result, call-back outcomes, transfer reasons, time in the IVR (median
and p90) and abandonment. This module only turns them into bars (`Chart`); the
geometry is computed here so the template writes plain attributes (the console's CSP
allows no inline style). Read-only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import abort, render_template, request

from ivr.history.dashboard import Dashboard, dashboard
from ivr.ops.blueprint import bp, readable
from ivr.ops.calls_page import known_flows
from ivr.ops.flows_page import when
from ivr.storage import db

PERIODS = {
    "24h": ("last 24 hours", timedelta(hours=24)),
    "7d": ("last 7 days", timedelta(days=7)),
    "30d": ("last 30 days", timedelta(days=30)),
}
DEFAULT_PERIOD = "24h"

# Horizontal bar charts: a label column, then bars up to BAR_WIDTH, then the number.
LABEL_WIDTH, BAR_WIDTH, ROW_HEIGHT, NUMBER_WIDTH = 240.0, 280.0, 22.0, 90.0
# The calls-per-hour columns: drawn into a fixed width whatever the period.
HOURS_WIDTH, HOURS_HEIGHT, HOURS_AXIS = 720.0, 120.0, 18.0


@dataclass(frozen=True)
class Bar:
    """One bar: its label, value, the text written beside it, and its drawn length."""

    label: str
    value: float
    text: str
    length: float
    y: float


@dataclass(frozen=True)
class Chart:
    """A horizontal bar chart: its id (for the page's anchors), title and bars."""

    id: str
    title: str
    bars: list[Bar]
    empty: str = "Nothing in this period."

    @property
    def height(self) -> float:
        return max(1, len(self.bars)) * ROW_HEIGHT

    @property
    def width(self) -> float:
        return LABEL_WIDTH + BAR_WIDTH + NUMBER_WIDTH


@dataclass(frozen=True)
class Column:
    """One hour of the calls-per-hour chart."""

    label: str  # "2026-12-04 15:00 UTC"
    count: int
    x: float
    y: float
    width: float
    height: float


def bars(id_: str, title: str, values: dict[str, int], total: int | None = None) -> Chart:
    """A chart of `values` (largest first); with `total`, each text carries its share."""
    top = max(values.values(), default=0)
    items = sorted(values.items(), key=lambda item: (-item[1], item[0]))
    drawn = []
    for index, (label, value) in enumerate(items):
        text = str(value)
        if total:
            text += f" ({value / total:.0%})"
        length = BAR_WIDTH * value / top if top else 0.0
        drawn.append(Bar(label, value, text, round(length, 1), index * ROW_HEIGHT))
    return Chart(id_, title, drawn)


def hour_columns(numbers: Dashboard) -> list[Column]:
    """The calls-per-hour columns, scaled to the busiest hour."""
    hours = numbers.hours
    top = max((bucket.count for bucket in hours), default=0)
    width = HOURS_WIDTH / max(1, len(hours))
    columns = []
    for index, bucket in enumerate(hours):
        height = (HOURS_HEIGHT - HOURS_AXIS) * bucket.count / top if top else 0.0
        columns.append(
            Column(
                label=bucket.start.strftime("%Y-%m-%d %H:%M UTC"),
                count=bucket.count,
                x=round(index * width, 2),
                y=round(HOURS_HEIGHT - HOURS_AXIS - height, 2),
                width=round(max(width - 1, 0.5), 2),
                height=round(height, 2),
            )
        )
    return columns


def charts(numbers: Dashboard) -> list[Chart]:
    """Every bar chart of the dashboard, in the page's order."""
    calls = numbers.calls
    return [
        bars("verification", "Verification level", numbers.verification, calls),
        bars("methods", "Verification methods passed (calls)", numbers.methods, calls),
        bars(
            "codes",
            "Codes sent, by channel and result",
            {f"{channel}: {result}": n for (channel, result), n in numbers.code_delivery.items()},
        ),
        bars(
            "callbacks",
            "Call-backs (number change)",
            {f"{_CALLBACK_EVENTS.get(e, e)}: {r}": n for (e, r), n in numbers.callbacks.items()},
        ),
        bars("transfers", "Transfer reasons", numbers.transfer_reasons),
        bars("outcomes", "How calls ended", numbers.outcomes, calls),
    ]


_CALLBACK_EVENTS = {
    "callback": "started",
    "callback_status": "ended unconfirmed",
    "callback_code": "code checked",
}


def seconds(value: float | None) -> str:
    """A duration for people: "42.0 s", or a dash when there were no calls."""
    return "—" if value is None else f"{value:.1f} s"


@bp.get("/dashboard", endpoint="dashboard")
@readable
def dashboard_view() -> Any:
    """Charts of the calls of a period (24 hours by default)."""
    period = request.args.get("period", DEFAULT_PERIOD)
    if period not in PERIODS:
        abort(404, f"Choose a period of {', '.join(PERIODS)}.")
    flows = known_flows()
    flow = request.args.get("flow", "").strip() or None
    if flow is not None and flow not in flows:
        abort(404, f"There is no flow named {flow!r}.")
    until = datetime.now(UTC)
    numbers = dashboard(db.session(), until - PERIODS[period][1], until, flow)
    busiest = max(numbers.hours, key=lambda bucket: bucket.count, default=None)
    return render_template(
        "ops/dashboard.html",
        numbers=numbers,
        period=period,
        periods=PERIODS,
        flow=flow,
        flows=flows,
        charts=charts(numbers),
        columns=hour_columns(numbers),
        busiest=busiest if busiest is not None and busiest.count else None,
        hours_width=HOURS_WIDTH,
        hours_height=HOURS_HEIGHT,
        hours_axis=HOURS_AXIS,
        label_width=LABEL_WIDTH,
        bar_width=BAR_WIDTH,
        row_height=ROW_HEIGHT,
        seconds=seconds,
        when=when,
    )
