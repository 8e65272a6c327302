"""The `ivr` command: a Flask CLI group (run, routes, shell) plus the project's commands."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import FlaskGroup

from ivr.app import create_app


def register(app: Flask) -> None:
    """Attach every project command group to the app's CLI."""
    from ivr.customers.cli import customers
    from ivr.demo import demo
    from ivr.flow.cli import flows
    from ivr.migrate import db_group
    from ivr.simulator.cli import call

    for command in (db_group, customers, flows, call, demo):
        app.cli.add_command(command)


@click.group(cls=FlaskGroup, create_app=create_app)
def main() -> None:
    """ivr: the IVR voice-call service (Flask CLI with the project's commands)."""
