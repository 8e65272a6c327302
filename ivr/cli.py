"""The `ivr` command: a Flask CLI group (run, routes, shell) plus the project's commands."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import FlaskGroup

from ivr.app import create_app


def commands() -> list[click.Command]:
    """Every project command group."""
    from ivr.agent.users import users
    from ivr.customers.cli import customers
    from ivr.delivery.cli import outbox
    from ivr.demo import demo
    from ivr.flow.cli import flows
    from ivr.migrate import db_group
    from ivr.simulator.cli import call

    return [db_group, customers, flows, call, demo, outbox, users]


def register(app: Flask) -> None:
    """Attach the project's commands to the app's CLI (used by the test CLI runner)."""
    for command in commands():
        app.cli.add_command(command)


@click.group(cls=FlaskGroup, create_app=create_app)
def main() -> None:
    """ivr: the IVR voice-call service (Flask CLI with the project's commands)."""


# On the group itself too, so `ivr flows validate` works even when a broken flow
# stops the app from booting.
for _command in commands():
    main.add_command(_command)
