"""`ivr call`: place a simulated call and print what the caller (and agent) hear."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext

from ivr.config import Settings
from ivr.delivery import outbox
from ivr.phone import mask
from ivr.simulator.player import AGENT_BEHAVIOURS, Event, Scripted, Simulator
from ivr.simulator.transport import InProcess, OverHttp, Reply, Transport


class Interactive:
    """Asks the person at the terminal for the keys of each prompt."""

    def keys(self, listening: str) -> str | None:
        try:
            raw = click.prompt(
                click.style(f"  keys ({listening}; Enter = silence, q = hang up)", dim=True),
                default="",
                show_default=False,
            )
        except (EOFError, click.Abort):
            return None
        raw = raw.strip()
        return None if raw.lower() == "q" else raw


class ShowingOutbox:
    """Wraps a transport; after each webhook, prints what reached the local outbox."""

    def __init__(self, inner: Transport, path: Path):
        self.inner = inner
        self.path = path
        self.seen = len(outbox.read(path))

    def post(self, url: str, form: dict[str, str]) -> Reply:
        reply = self.inner.post(url, form)
        messages = outbox.read(self.path)
        for message in messages[self.seen :]:
            to = mask(message.to) if message.channel == "sms" else message.to
            click.echo(
                click.style(f"Outbox ({message.channel} to {to}): {message.body}", fg="yellow")
            )
        self.seen = len(messages)
        return reply


def print_event(event: Event) -> None:
    """One line per event, labelled by who hears or does it."""
    if event.kind == "say":
        label = "IVR" if event.who == "caller" else "Agent hears"
        click.echo(f"{click.style(label + ':', bold=True)} {event.text}")
    elif event.kind == "keys":
        who = "You press" if event.who == "caller" else "Agent presses"
        click.echo(click.style(f"{who}: {event.text}", fg="cyan"))
    elif event.kind == "transfer":
        click.echo(click.style(f"Transfer: {event.text}", fg="green"))
    elif event.kind == "agent":
        click.echo(click.style(f"Agent: {event.text}", fg="green"))
    else:
        click.echo(click.style(f"[{event.kind}] {event.text}", dim=True))


@click.command("call")
@click.option("--from", "caller", required=True, help="Caller ID, e.g. +14155550100 or anonymous.")
@click.option(
    "--digits",
    default=None,
    help="Keys for each prompt in turn, comma-separated (an empty entry is silence; @code "
    "is the code just sent to the local outbox), e.g. 1,4321,@code,1. Without it the call "
    "is interactive.",
)
@click.option(
    "--agent",
    type=click.Choice(AGENT_BEHAVIOURS),
    default="accept",
    show_default=True,
    help="What the agent does when the call is transferred.",
)
@click.option("--url", default=None, help="A running server to call (default: in-process).")
@click.option(
    "--public-url", default=None, help="The URL the server signs against (default: --url)."
)
@with_appcontext
def call(
    caller: str, digits: str | None, agent: str, url: str | None, public_url: str | None
) -> None:
    """Place a simulated call through the signed webhooks and print what is heard."""
    settings: Settings = current_app.config["IVR_SETTINGS"]
    transport: Transport
    if url:
        transport = OverHttp(url, settings.twilio_auth_token)
        base = public_url or url
    else:
        transport = InProcess(current_app, settings.twilio_auth_token)
        base = settings.public_url

    def read_code() -> str | None:
        """The code in the newest message of the local outbox (development only)."""
        latest = outbox.read(settings.outbox_path, limit=1)
        found = re.search(r"\b(\d{6,10})\b", latest[-1].body) if latest else None
        return found.group(1) if found else None

    keypad = Scripted(digits.split(","), read_code) if digits is not None else Interactive()
    if settings.delivery == "outbox":
        transport = ShowingOutbox(transport, settings.outbox_path)
    simulator = Simulator(
        transport, base, agent=agent, echo=print_event, support_number=settings.support_number
    )
    # An in-process service would interleave its log lines with the transcript.
    service_log = logging.getLogger("ivr")
    level = service_log.level
    if not url:
        service_log.setLevel(logging.WARNING)
    try:
        simulator.call(caller, keypad)
    finally:
        service_log.setLevel(level)
