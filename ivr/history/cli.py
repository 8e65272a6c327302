"""`ivr calls …`: list the calls that ended, show one call's timeline, prune old ones.

Reads through `ivr.history.query` (the console's calls page reads the same way);
prints masked callers and counted keys only, as stored. Bad option values end with
one `Error:` line, never a traceback.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import click
from flask import current_app
from flask.cli import with_appcontext

from ivr.config_observe import MAX_CALL_HISTORY_DAYS
from ivr.flow import timeline
from ivr.history import prune as pruning
from ivr.history.query import (
    CALL_SID,
    MAX_LIMIT,
    CallFilter,
    call_as_dict,
    get_call,
    list_calls,
    parse_since,
    step_text,
)
from ivr.storage import db
from ivr.storage.models import CallRecord


class Period(click.ParamType):
    """A period like 30m, 1h, 2d (see `parse_since`)."""

    name = "period"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, timedelta):
            return value
        try:
            return parse_since(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


@click.group("calls")
def calls() -> None:
    """Call history: the calls that ended, each one's timeline, and pruning old ones."""


@calls.command("list")
@click.option("--since", type=Period(), help="Only calls started within this period: 30m, 1h, 2d.")
@click.option("--outcome", type=click.Choice(timeline.OUTCOMES), help="How the call ended.")
@click.option(
    "--verified",
    type=click.Choice(("yes", "no")),
    help="yes: the caller passed a verification step (digits or a code); no: none.",
)
@click.option("--flow", help="Only calls of this flow.")
@click.option(
    "--limit",
    type=click.IntRange(1, MAX_LIMIT),
    default=50,
    show_default=True,
    help="At most this many calls.",
)
@click.option("--before", metavar="CALLSID", help="The page after this call (older calls).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of objects.")
@with_appcontext
def list_command(
    since: timedelta | None,
    outcome: str | None,
    verified: str | None,
    flow: str | None,
    limit: int,
    before: str | None,
    as_json: bool,
) -> None:
    """The calls that ended, newest first: time, CallSid, masked caller, flow@version,
    verification, outcome, duration, the node where it ended."""
    if before is not None:
        _check_sid(before, "--before")
    filt = CallFilter(
        since=since,
        outcome=outcome,
        verified=None if verified is None else verified == "yes",
        flow=flow,
        limit=limit,
        before=before,
    )
    try:
        rows = list_calls(db.session(), filt, datetime.now(UTC))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(
            json.dumps([call_as_dict(r, steps=False) for r in rows], indent=2, ensure_ascii=False)
        )
        return
    if not rows:
        click.echo("no calls match" if _filtered(filt) else "no calls recorded yet")
        return
    table = [_HEADER, *(_columns(row) for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(_HEADER))]
    for line in table:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )
    if len(rows) == limit:
        click.echo(f"(first {limit}; older ones: --before {rows[-1].call_sid})")


_HEADER = (
    "STARTED (UTC)",
    "CALLSID",
    "CALLER",
    "FLOW@VERSION",
    "VERIFIED",
    "OUTCOME",
    "DURATION",
    "LAST NODE",
)


def _columns(row: CallRecord) -> tuple[str, ...]:
    data = call_as_dict(row, steps=False)
    return (
        f"{datetime.fromisoformat(data['started_at']):%Y-%m-%d %H:%M:%S}",
        row.call_sid,
        row.caller or "withheld",
        f"{row.flow}@{row.version[:8]}",
        _verification(data),
        row.outcome,
        "-" if row.duration is None else f"{row.duration}s",
        row.last_node or "-",
    )


def _verification(data: dict[str, Any]) -> str:
    if not data["methods"]:
        return str(data["verification"])
    return f"{data['verification']} ({', '.join(data['methods'])})"


def _filtered(filt: CallFilter) -> bool:
    return any(
        value is not None for value in (filt.since, filt.outcome, filt.verified, filt.flow)
    ) or (filt.before is not None)


@calls.command("show")
@click.argument("call_sid", metavar="CALLSID")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object; `steps` in order.")
@with_appcontext
def show_command(call_sid: str, as_json: bool) -> None:
    """One call: its summary, then its timeline, one step per line."""
    _check_sid(call_sid, "CALLSID")
    row = get_call(db.session(), call_sid)
    if row is None:
        days = current_app.config["IVR_SETTINGS"].observe.call_history_days
        raise click.ClickException(
            f"no call {call_sid} in the call history (calls are kept {days} days; a call"
            " still in progress is not there yet)"
        )
    data = call_as_dict(row, steps=True)
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    lines = [
        ("call", data["call_sid"]),
        ("flow", f"{data['flow']} version {data['version']}"),
        ("started", f"{data['started_at']}  ended {data['ended_at']}"),
        ("duration", _seconds(data["duration"], data["ivr_seconds"])),
        ("caller", f"{data['caller'] or 'withheld'} ({data['identity'] or 'unknown'})"),
        ("language", data["language"] or "-"),
        ("verification", _verification(data)),
        ("status", f"{data['status']}, {data['outcome']}"),
        ("transfer reason", data["transfer_reason"] or "-"),
        ("failure", data["failure"] or "-"),
        ("last node", data["last_node"] or "-"),
        ("flags", ", ".join(data["flags"]) or "-"),
    ]
    width = max(len(label) for label, _ in lines)
    for label, value in lines:
        click.echo(f"{label + ':':<{width + 1}} {value}")
    click.echo(f"timeline ({len(data['steps'])} steps):")
    for item in data["steps"]:
        click.echo(f"  {int(item.get('at', 0)) / 1000:>7.1f}s  {step_text(item)}")


def _seconds(duration: int | None, ivr_seconds: float | None) -> str:
    total = "unknown" if duration is None else f"{duration} s"
    return total if ivr_seconds is None else f"{total} ({ivr_seconds:.1f} s in the IVR)"


def _check_sid(value: str, hint: str) -> None:
    if not CALL_SID.fullmatch(value):
        raise click.BadParameter(
            f"{value[:40]!r} is not a CallSid (CA followed by 32 hexadecimal digits)",
            param_hint=hint,
        )


@calls.command("prune")
@click.option(
    "--days",
    type=click.IntRange(1, MAX_CALL_HISTORY_DAYS),
    help="Delete calls that started more than this many days ago (default: IVR_CALL_HISTORY_DAYS).",
)
@click.option("--dry-run", is_flag=True, help="Only say how many calls would be deleted.")
@with_appcontext
def prune_command(days: int | None, dry_run: bool) -> None:
    """Delete old calls and their timelines (audited as calls.pruned, per batch)."""
    keep = days or current_app.config["IVR_SETTINGS"].observe.call_history_days
    cutoff = pruning.cutoff_for(keep, datetime.now(UTC))
    session = db.session()
    when = f"{cutoff:%Y-%m-%d %H:%M} UTC"
    if dry_run:
        count = pruning.count_older(session, cutoff)
        click.echo(f"would delete {count} call(s) started before {when} (older than {keep} days)")
        return
    # Unbounded (no job timeout here); each batch is committed with its audit row, so
    # an interrupted run has recorded what it deleted and can simply be run again.
    deleted = pruning.prune(session, cutoff, actor="cli", days=keep)
    click.echo(f"deleted {deleted} call(s) started before {when} (older than {keep} days)")
