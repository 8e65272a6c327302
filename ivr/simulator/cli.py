"""`ivr call`: place a simulated call and print what the caller, the agent and any
phone the service calls back hear."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from functools import partial
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext

from ivr.config import Settings
from ivr.delivery import outbox
from ivr.hours.status import LINE_CLOCK
from ivr.phone import mask
from ivr.queues.local import LocalQueues, board_path
from ivr.simulator.keypads import CodeNotSent, KeysCodes
from ivr.simulator.player import (
    AGENT_BEHAVIOURS,
    CALLEE_BEHAVIOURS,
    AgentLineCall,
    Callee,
    CalleeBehaviour,
    Event,
    Keypad,
    Scripted,
    Simulator,
    every_callee,
)
from ivr.simulator.transport import InProcess, OverHttp, Reply, Transport

AFTER_CALL_WAIT = 3.0  # seconds `ivr call --url` watches for a call-back after the call


class Interactive(KeysCodes):
    """Asks the person at the terminal for the keys of each prompt (`label` says whose).

    `@code` (or `@code#`) keys in the code given on this call; when there is none yet,
    it says so and asks again.
    """

    def __init__(self, label: str = "keys"):
        self.label = label

    def keys(self, listening: str) -> str | None:
        while True:
            try:
                raw = click.prompt(
                    click.style(
                        f"  {self.label} ({listening}; Enter = silence, q = hang up, "
                        "@code = your code)",
                        dim=True,
                    ),
                    default="",
                    show_default=False,
                )
            except (EOFError, click.Abort):
                return None
            raw = raw.strip()
            if raw.lower() == "q":
                return None
            try:
                return self.with_code(raw)
            except CodeNotSent as exc:
                click.echo(click.style(f"  {exc}", fg="yellow"))


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
            to = mask(message.to) if message.channel in ("sms", "call") else message.to
            what = f"rings up to {message.ring_seconds} s" if message.channel == "call" else ""
            click.echo(
                click.style(
                    f"Outbox ({message.channel} to {to}): {what or message.body}", fg="yellow"
                )
            )
        self.seen = len(messages)
        return reply


HEARS = {"caller": "IVR", "agent": "Agent hears", "callee": "Call-back hears"}
PRESSES = {"caller": "You press", "agent": "Agent presses", "callee": "Call-back presses"}


def print_event(event: Event) -> None:
    """One line per event, labelled by who hears or does it."""
    if event.kind == "say":
        label = HEARS.get(event.who, event.who)
        colour = "magenta" if event.who == "callee" else None
        click.echo(f"{click.style(label + ':', bold=True, fg=colour)} {event.text}")
    elif event.kind == "keys":
        who = PRESSES.get(event.who, event.who)
        click.echo(click.style(f"{who}: {event.text}", fg="cyan"))
    elif event.kind == "transfer":
        click.echo(click.style(f"Transfer: {event.text}", fg="green"))
    elif event.kind == "agent":
        click.echo(click.style(f"Agent: {event.text}", fg="green"))
    elif event.kind == "conference":
        who = "Agent" if event.who == "agent" else "Caller"
        click.echo(click.style(f"{who} joins conference {event.text}", fg="green"))
    elif event.who == "callee":
        click.echo(click.style(f"[call-back {event.kind}] {event.text}", fg="magenta", dim=True))
    else:
        click.echo(click.style(f"[{event.kind}] {event.text}", dim=True))


def line_clock_at(text: str) -> Callable[[], float]:
    """A clock that reads `text` (ISO 8601 with an offset or Z) now, and runs on from it."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a moment like 2026-12-25T10:00-05:00") from None
    if moment.tzinfo is None:
        raise click.BadParameter(f"{text!r} needs its offset from UTC (-05:00, or Z)")
    shift = moment.timestamp() - time.time()
    return lambda: time.time() + shift


def callee_of(kind: str, digits: str | None, interactive: bool) -> Callee:
    """What the phones the service calls back do: `kind`, pressing `digits` when answered.

    Without digits, an interactive session asks the terminal for each call-back's keys;
    a scripted one answers and presses nothing (it hangs up at the first prompt).
    """
    if kind != "answer":
        return every_callee(kind)
    if digits is not None:
        return every_callee("answer", Scripted(digits.split(",")))
    if not interactive:
        return every_callee("answer")

    def ask_the_terminal(number: str) -> CalleeBehaviour:
        return CalleeBehaviour("answer", Interactive(f"Call-back to {mask(number)} — keys"))

    return ask_the_terminal


@click.command("call")
@click.option("--from", "caller", required=True, help="Caller ID, e.g. +14155550100 or anonymous.")
@click.option(
    "--digits",
    default=None,
    help="Keys for each prompt in turn, comma-separated (an empty entry is silence; @code "
    "is the latest code given on this call: sent to the local outbox or read out), e.g. "
    "1,4321,@code,1. Without it the call is interactive (@code works there too).",
)
@click.option(
    "--agent",
    type=click.Choice(AGENT_BEHAVIOURS),
    default="accept",
    show_default=True,
    help="What the agent does when the call is transferred.",
)
@click.option(
    "--callee",
    type=click.Choice(CALLEE_BEHAVIOURS),
    default="answer",
    show_default=True,
    help="What a phone the service calls back does (a phone on this call is always busy).",
)
@click.option(
    "--callee-digits",
    default=None,
    help="Keys pressed on answered call-backs, comma-separated like --digits (@code "
    "allowed). Without it an interactive call asks the terminal; a scripted one presses "
    "nothing.",
)
@click.option(
    "--agent-line-from",
    default=None,
    help="While the caller holds in a queue, an agent phones the agent line from this "
    "caller ID (a number on IVR_AGENT_PHONES, or client:NAME), hears the whisper and "
    "takes the call; needs the local outbox (IVR_DELIVERY=outbox).",
)
@click.option(
    "--agent-line-keys",
    default=None,
    help="The agent's keys on the agent line, comma-separated, e.g. 246810,1 (PIN, then 1 "
    "to take the caller). Without it the terminal asks.",
)
@click.option(
    "--at",
    "at",
    default=None,
    help="Place the call at this moment for the line's hours (schedule nodes), ISO 8601 with"
    " an offset, e.g. 2026-12-25T10:00-05:00; in-process only.",
)
@click.option("--url", default=None, help="A running server to call (default: in-process).")
@click.option(
    "--public-url", default=None, help="The URL the server signs against (default: --url)."
)
@with_appcontext
def call(
    caller: str,
    digits: str | None,
    agent: str,
    callee: str,
    callee_digits: str | None,
    agent_line_from: str | None,
    agent_line_keys: str | None,
    at: str | None,
    url: str | None,
    public_url: str | None,
) -> None:
    """Place a simulated call through the signed webhooks and print what is heard.

    Calls the service places through the local outbox (call-backs) are answered as
    --callee says, and their words printed as "Call-back hears".
    """
    settings: Settings = current_app.config["IVR_SETTINGS"]
    if at is not None:
        if url:
            raise click.ClickException("--at works in-process only: a server keeps its own clock")
        current_app.extensions[LINE_CLOCK] = line_clock_at(at)
    transport: Transport
    if url:
        transport = OverHttp(
            url, settings.twilio_auth_token, account_sid=settings.twilio_account_sid or None
        )
        base = public_url or url
    else:
        transport = InProcess(current_app, settings.twilio_auth_token)
        base = settings.public_url

    # @code keys in the latest code given on this call: sent to the outbox or read out.
    keypad = Scripted(digits.split(",")) if digits is not None else Interactive()
    reader = None  # the outbox, whose codes @code keys in and whose calls are answered
    if settings.delivery == "outbox":
        transport = ShowingOutbox(transport, settings.outbox_path)
        reader = partial(outbox.read, settings.outbox_path)
    queues = None  # the local queues the caller holds in, while an agent phones in
    agents: list[AgentLineCall] = []
    if agent_line_from:
        if settings.delivery != "outbox":
            raise click.ClickException(
                "--agent-line-from needs the local queues: set IVR_DELIVERY=outbox"
            )
        queues = LocalQueues(board_path(settings.outbox_path))
        agent_keys: Keypad = (
            Scripted(agent_line_keys.split(","))
            if agent_line_keys is not None
            else Interactive("Agent on the agent line — keys")
        )
        agents.append(AgentLineCall(agent_line_from, agent_keys))
    simulator = Simulator(
        transport,
        base,
        agent=agent,
        echo=print_event,
        support_number=settings.support_number,
        outbox=reader,
        callee=callee_of(callee, callee_digits, interactive=digits is None),
        # A running server places the after-call call-back from its jobs, a moment
        # after the status callback; in process it is placed before that answers.
        after_call_wait=AFTER_CALL_WAIT if url else 0.0,
        queues=queues,
    )
    # An in-process service would interleave its log lines with the transcript.
    service_log = logging.getLogger("ivr")
    level = service_log.level
    if not url:
        service_log.setLevel(logging.WARNING)
    try:
        simulator.call(caller, keypad, agents=agents)
    except CodeNotSent as exc:  # a script's @code with nothing to key in: the call stops
        raise click.ClickException(str(exc)) from None
    finally:
        service_log.setLevel(level)
