"""The calls page: calls that ended, newest first, filtered by period, outcome,
verification and flow, paged; and one call's summary and timeline.

`/ops/calls` reads its filters from the query string (a GET form, so a filtered list
is a link one can share); a value that makes no sense is marked on its field and
nothing is listed, answered 400, never a 500. `/ops/calls/<CallSid>` shows the call's
summary and each step in words (`ivr.history.query.step_text`) with its time since
the call began, each node a link to it on the flow's diagram. Everything read here
was made safe when written (masked caller, keys counted never kept). Read-only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import abort, current_app, render_template, request, url_for

from ivr.flow import timeline
from ivr.history.query import (
    CALL_SID,
    CallFilter,
    get_call,
    list_calls,
    parse_since,
    step_text,
)
from ivr.history.record import stored_steps
from ivr.ops.blueprint import bp, readable
from ivr.ops.flows_page import flow_names, when
from ivr.storage import db
from ivr.storage.models import CallRecord
from ivr.versions import store

PAGE_SIZE = 50
PERIODS = (("1h", "last hour"), ("24h", "last day"), ("7d", "last week"), ("30d", "last 30 days"))
DEFAULT_SINCE = "24h"
VERIFIED = {"yes": True, "no": False}


@dataclass
class Filters:
    """The filter form as the visitor filled it in, with a message per bad field."""

    since: str
    outcome: str
    verified: str
    flow: str
    before: str
    errors: dict[str, str]

    def args(self) -> dict[str, Any]:
        """The filters to carry in a link (paging), without empty ones or the cursor."""
        fields = {
            "since": self.since,
            "outcome": self.outcome,
            "verified": self.verified,
            "flow": self.flow,
        }
        return {name: value for name, value in fields.items() if value}


def read_filters(args: Any, flows: list[str]) -> tuple[Filters, CallFilter | None]:
    """The form's values and the query they ask for (None when a value is bad)."""
    form = Filters(
        since=args.get("since", DEFAULT_SINCE).strip(),
        outcome=args.get("outcome", "").strip(),
        verified=args.get("verified", "").strip(),
        flow=args.get("flow", "").strip(),
        before=args.get("before", "").strip(),
        errors={},
    )
    since = None
    if form.since:
        try:
            since = parse_since(form.since)
        except ValueError as exc:
            form.errors["since"] = str(exc)
    if form.outcome and form.outcome not in timeline.OUTCOMES:
        form.errors["outcome"] = f"Choose one of {', '.join(timeline.OUTCOMES)}."
    if form.verified and form.verified not in VERIFIED:
        form.errors["verified"] = "Choose yes or no."
    if form.flow and form.flow not in flows:
        form.errors["flow"] = "There is no flow of that name."
    if form.before and not CALL_SID.fullmatch(form.before):
        form.errors["before"] = "That page link is broken."
    if form.errors:
        return form, None
    return form, CallFilter(
        since=since,
        outcome=form.outcome or None,
        verified=VERIFIED.get(form.verified),
        flow=form.flow or None,
        limit=PAGE_SIZE + 1,  # one more: is there a next page?
        before=form.before or None,
    )


def known_flows() -> list[str]:
    """The flows the service knows (its own, working files, stored versions): every
    flow a call can have run, read from small tables and the flows folder — not a
    DISTINCT over the whole calls table on every page view."""
    return flow_names(current_app.config["IVR_SETTINGS"])


@bp.get("/calls")
@readable
def calls() -> Any:
    """Calls that ended, newest first, filtered and paged."""
    flows = known_flows()
    form, query = read_filters(request.args, flows)
    rows: list[CallRecord] = []
    if query is not None:
        try:
            rows = list_calls(db.session(), query, datetime.now(UTC))
        except ValueError:  # the page's cursor names no stored call (pruned since)
            form.errors["before"] = "That page link points at a call no longer stored."
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    page = render_template(
        "ops/calls.html",
        form=form,
        flows=flows,
        outcomes=timeline.OUTCOMES,
        periods=PERIODS,
        rows=rows,
        when=when,
        first_page=url_for("ops.calls", **form.args()),
        next_page=url_for("ops.calls", **form.args(), before=rows[-1].call_sid) if more else None,
        page_size=PAGE_SIZE,
    )
    return (page, 400) if form.errors else page


@dataclass(frozen=True)
class Line:
    """A step of the timeline as the call page shows it."""

    at: str  # seconds since the call began, "12.3 s"
    event: str
    node: str | None
    link: str | None  # the node on the flow's diagram
    text: str


@bp.get("/calls/<call_sid>", endpoint="call")
@readable
def call_page(call_sid: str) -> Any:
    """One call: its summary and its timeline."""
    if not CALL_SID.fullmatch(call_sid):
        abort(404, "That is not a CallSid.")
    row = get_call(db.session(), call_sid)
    if row is None:
        abort(404, "No call with that CallSid is stored (it may have been pruned).")
    link = _node_link(row)
    lines = [
        Line(
            at=f"{int(step.get('at', 0)) / 1000:.1f} s",
            event=str(step.get("event")),
            node=step.get("node"),
            link=link(str(step["node"])) if step.get("node") else None,
            text=step_text(step),
        )
        for step in stored_steps(row)
    ]
    return render_template(
        "ops/call.html",
        row=row,
        lines=lines,
        when=when,
        last_node_link=link(row.last_node) if row.last_node else None,
    )


def _node_link(row: CallRecord) -> Any:
    """How to link a node of the call's flow: the version the call ran on when it is
    stored, else the flow's page as it is (the node may have changed since)."""
    names = current_app.view_functions
    if "ops.flow" not in names or not row.flow:
        return lambda node: None
    version = store.find_version(db.session(), row.flow, row.version) if row.version else None
    shown = row.version if version is not None else None
    return lambda node: url_for("ops.flow", flow=row.flow, version=shown, node=node)
