"""`ivr outbox …` commands: show and empty the local outbox (what would have gone out)."""

from __future__ import annotations

from urllib.parse import urlsplit

import click
from flask import current_app
from flask.cli import with_appcontext

from ivr.config import Settings
from ivr.delivery import outbox as outbox_file
from ivr.delivery.outbox import OutboxMessage
from ivr.phone import mask, to_e164


@click.group("outbox")
def outbox() -> None:
    """Read the local outbox of the embedded defaults (development only)."""


@outbox.command("list")
@click.option("--to", "to", metavar="NUMBER_OR_EMAIL", help="Only messages to this recipient.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Show at most this many, the newest.",
)
@with_appcontext
def list_command(to: str | None, limit: int) -> None:
    """Show what would have been sent or called, newest last."""
    settings: Settings = current_app.config["IVR_SETTINGS"]
    if settings.delivery != "outbox":
        click.echo(
            f"Note: IVR_DELIVERY is {settings.delivery!r}; "
            "SMS and outbound calls are not written to the outbox.",
            err=True,
        )
    recipient = _recipient(to, settings.default_region) if to else None
    messages = outbox_file.read(settings.outbox_path, to=recipient, limit=limit)
    if not messages:
        click.echo(
            "The outbox is empty." if recipient is None else "No messages to that recipient."
        )
        return
    for message in messages:
        shown_to = message.to if "@" in message.to else mask(message.to)
        click.echo(f"{message.at}  {message.channel:<5}  {shown_to}  {message.purpose}".rstrip())
        for line in _details(message):
            click.echo(f"    {line}")


@outbox.command("clear")
@with_appcontext
def clear_command() -> None:
    """Delete every message in the outbox."""
    path = current_app.config["IVR_SETTINGS"].outbox_path
    count = outbox_file.clear(path)
    click.echo(f"Cleared {count} message(s) from {path}.")


def _details(message: OutboxMessage) -> list[str]:
    """The indented lines under a message: subject and body, or what a call would do."""
    if message.channel == "call":
        # Only the path: the query holds the call's opaque id, which the listing has no use for.
        path = urlsplit(message.url).path or "/"
        return [f"rings {message.ring_seconds} s, then fetches {path}"]
    subject = [f"Subject: {message.subject}"] if message.subject else []
    return subject + (message.body.splitlines() or [""])


def _recipient(value: str, region: str) -> str:
    """An email address as given; a number written any common way as E.164."""
    value = value.strip()
    if "@" in value:
        return value
    return to_e164(value, region) or value
