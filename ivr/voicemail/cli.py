"""`ivr voicemail list|prune`: the messages callers left, and deleting old ones by hand
(the daily `voicemail.prune` job does the same on its own)."""

from __future__ import annotations

from datetime import UTC, datetime

import click
from flask import current_app
from flask.cli import with_appcontext

from ivr.config_line import MAX_VOICEMAIL_DAYS
from ivr.errors import StorageUnavailable
from ivr.storage import db
from ivr.voicemail import queries, retention


@click.group("voicemail")
def voicemail() -> None:
    """Voicemail: list the messages callers left; delete old ones (at Twilio too)."""


@voicemail.command("list")
@click.option("--all", "show_all", is_flag=True, help="Handled messages too.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@with_appcontext
def list_command(show_all: bool, limit: int) -> None:
    """The messages, newest first (callers masked)."""
    session = db.session()
    now = datetime.now(UTC)
    try:
        with db.unavailable_as_storage_error():
            rows = queries.listed(session, include_handled=show_all, limit=limit)
            shown = [queries.as_dict(session, row, now) for row in rows]
    except StorageUnavailable as exc:
        raise click.ClickException(f"the database is not reachable: {exc}") from None
    if not shown:
        click.echo("no messages" if show_all else "no unhandled messages")
    for item in shown:
        account = f"account {item['account']}" if item["account"] else "not verified"
        handled = f"handled by {item['handled_by']}" if item["handled_by"] else "unhandled"
        length = "?" if item["duration"] is None else f"{item['duration']} s"
        click.echo(
            f"{item['id']:>6}  {item['created_at']}  {item['caller']:<14} {account:<22} "
            f"{length:>6}  {item['language'] or '-':<6} {item['status']:<9} {handled}"
        )


@voicemail.command("prune")
@click.option(
    "--days",
    type=click.IntRange(1, MAX_VOICEMAIL_DAYS),
    help="Delete messages left more than this many days ago (default: IVR_VOICEMAIL_DAYS).",
)
@click.option("--dry-run", is_flag=True, help="Only say how many messages would be deleted.")
@with_appcontext
def prune_command(days: int | None, dry_run: bool) -> None:
    """Delete old messages (and erased customers'): the recording at Twilio, then the row;
    audited as voicemail.pruned, per batch."""
    settings = current_app.config["IVR_SETTINGS"]
    keep = days or settings.line.voicemail_days
    now = datetime.now(UTC)
    session = db.session()
    try:
        with db.unavailable_as_storage_error():
            if dry_run:
                count = retention.count_due(session, keep, now)
                click.echo(f"would delete {count} message(s) (older than {keep} days, or erased)")
                return
            done = retention.prune(
                session,
                retention.recordings_for(settings),
                keep,
                now,
                actor="cli",
                max_batches=None,
                budget=None,
            )
    except StorageUnavailable as exc:
        raise click.ClickException(f"the database is not reachable: {exc}") from None
    kept = f"; {done.kept} kept (Twilio did not delete them: run again later)" if done.kept else ""
    click.echo(f"deleted {done.deleted} message(s) older than {keep} days, or erased{kept}")
    if done.kept:
        raise SystemExit(1)
