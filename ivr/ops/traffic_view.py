"""The traffic overlay: a flow's diagram with, on every node, how many calls entered it
and how many hung up there, and on every exit how many took it, for a chosen period
and version, colour-scaled by share of the period's calls.

`/ops/flows/<flow>/traffic?period=hour|day|week&version=…` draws the same diagram as
the flows page (`diagram_view.render_diagram`, with `traffic=`) over the counts of
`ivr.history.funnel`. The version is the live one unless another stored version is
chosen (a flow never published: its working files). The numbers are also listed in a
table under the drawing, for screen readers and for copying. Read-only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import abort, current_app, render_template, request, url_for

from ivr.config import Settings
from ivr.history.funnel import Funnel, funnel
from ivr.ops.blueprint import bp, readable
from ivr.ops.diagram_view import render_diagram
from ivr.ops.flows_page import flow_names, shown_version, when
from ivr.storage import db
from ivr.versions import store

PERIODS = {
    "hour": ("last hour", timedelta(hours=1)),
    "day": ("last day", timedelta(days=1)),
    "week": ("last week", timedelta(days=7)),
}
DEFAULT_PERIOD = "day"
HEAT_LEVELS = 5  # heat-1 … heat-5; heat-0 is "none"


def heat(count: int, total: int) -> int:
    """A colour step for `count` of `total` calls: 0 for none, else 1 to 5 by share."""
    if count <= 0 or total <= 0:
        return 0
    return max(1, min(HEAT_LEVELS, math.ceil(count / total * HEAT_LEVELS)))


@dataclass(frozen=True)
class NodeTraffic:
    """A node's numbers on the overlay."""

    entered: int
    dropped: int
    heat: int

    @property
    def text(self) -> str:
        hung_up = f" · {self.dropped} hung up" if self.dropped else ""
        return f"{self.entered} in{hung_up}"


@dataclass(frozen=True)
class ExitTraffic:
    """An exit's numbers on the overlay."""

    count: int
    heat: int


@dataclass(frozen=True)
class Overlay:
    """The funnel in the shape the diagram template asks for it."""

    funnel: Funnel

    def node(self, node_id: str) -> NodeTraffic:
        entered = self.funnel.entered.get(node_id, 0)
        return NodeTraffic(
            entered=entered,
            dropped=self.funnel.dropped.get(node_id, 0),
            heat=heat(entered, self.funnel.calls),
        )

    def exit(self, node_id: str, exit_label: str) -> ExitTraffic:
        count = self.funnel.exits.get((node_id, exit_label), 0)
        return ExitTraffic(count=count, heat=heat(count, self.funnel.calls))

    def share(self, count: int) -> str:
        """A count as a percentage of the period's calls, for people."""
        return f"{self.funnel.share(count):.0%}"


@bp.get("/flows/<flow>/traffic", endpoint="traffic")
@readable
def traffic_page(flow: str) -> Any:
    """A flow's diagram with the calls that went through it over a period."""
    settings: Settings = current_app.config["IVR_SETTINGS"]
    if flow not in flow_names(settings):
        abort(404, f"There is no flow named {flow!r}.")
    period = request.args.get("period", DEFAULT_PERIOD)
    if period not in PERIODS:
        abort(404, f"Choose a period of {', '.join(PERIODS)}.")
    asked = request.args.get("version", "").strip() or None
    shown = shown_version(settings, flow, asked)
    session = db.session()
    versions = store.history(session, flow)
    if shown.loaded is None:
        return render_template(
            "ops/traffic.html",
            name=flow,
            shown=shown,
            versions=versions,
            overlay=None,
            period=period,
            periods=PERIODS,
            asked=asked,
            diagram=None,
            rows=[],
            when=when,
        )
    loaded = shown.loaded.flow
    until = datetime.now(UTC)
    counted = funnel(session, flow, loaded.version, until - PERIODS[period][1], until)
    overlay = Overlay(counted)

    def link(target: str) -> str:
        return url_for("ops.flow", flow=flow, version=asked, node=target)

    diagram = render_diagram(loaded, link=link, traffic=overlay)
    rows = [
        (
            node_id,
            overlay.node(node_id),
            [
                (exit_label, target, overlay.exit(node_id, exit_label))
                for exit_label, target in node.transitions().items()
            ],
        )
        for node_id, node in loaded.nodes.items()
    ]
    return render_template(
        "ops/traffic.html",
        name=flow,
        shown=shown,
        flow=loaded,
        versions=versions,
        overlay=overlay,
        funnel=counted,
        period=period,
        periods=PERIODS,
        asked=asked,
        diagram=diagram,
        rows=rows,
        when=when,
    )
