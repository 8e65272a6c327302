"""`ivr call`: place a simulated call and print what the caller (and agent) hear."""

from __future__ import annotations

import logging

import click
from flask import current_app
from flask.cli import with_appcontext

from ivr.config import Settings
from ivr.simulator.player import AGENT_BEHAVIOURS, Event, Scripted, Simulator
from ivr.simulator.transport import InProcess, OverHttp, Transport


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
    help="Keys for each prompt in turn, comma-separated (an empty entry is silence), "
    "e.g. 1,4321,1. Without it the call is interactive.",
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
        # The service runs in this process: keep its log lines out of the transcript.
        logging.getLogger("ivr").setLevel(logging.WARNING)
        transport = InProcess(current_app, settings.twilio_auth_token)
        base = settings.public_url
    keypad = Scripted(digits.split(",")) if digits is not None else Interactive()
    simulator = Simulator(
        transport, base, agent=agent, echo=print_event, support_number=settings.support_number
    )
    simulator.call(caller, keypad)
