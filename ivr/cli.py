"""The `ivr` command: a Flask CLI group (run, routes, shell) plus the project's commands.

A configuration or flow problem found while the app boots is the operator's to fix,
not a bug: every command prints it as the one message that names every problem and
exits 1, never as a traceback.
"""

from __future__ import annotations

from typing import IO, Any

import click
import redis
from flask import Flask
from flask.cli import FlaskGroup, NoAppException
from sqlalchemy.exc import OperationalError

from ivr.app import create_app
from ivr.commands import project_commands
from ivr.errors import ConfigError, InvalidDefinition, StorageUnavailable


class BootRefused(NoAppException):
    """The app refused to boot. Flask's CLI already prints its own "cannot load the app"
    error without a traceback; this one also leaves out the usage lines and exits 1 (it
    is not a usage mistake)."""

    exit_code = 1

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"Error: {self.format_message()}", file=file, err=True)


def create_app_for_cli() -> Flask:
    """The app as every `ivr` command boots it, or BootRefused naming every problem."""
    try:
        return create_app()
    except (ConfigError, InvalidDefinition) as exc:
        raise BootRefused(str(exc)) from None


class IvrGroup(FlaskGroup):
    """Flask's CLI group; a database or Redis that cannot be reached is one line too."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except StorageUnavailable as exc:
            raise click.ClickException(f"storage unavailable: {exc}") from None
        except (OperationalError, redis.exceptions.ConnectionError) as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise click.ClickException(
                f"cannot reach the {_what(exc)}: {type(exc).__name__}: {first_line}"
            ) from None


def _what(exc: Exception) -> str:
    return "database (DATABASE_URL)" if isinstance(exc, OperationalError) else "Redis (REDIS_URL)"


@click.group(cls=IvrGroup, create_app=create_app_for_cli)
def main() -> None:
    """ivr: the IVR voice-call service (Flask CLI with the project's commands)."""


# On the group itself, not only on the app, so `ivr flows validate` works even when
# a broken flow stops the app from booting.
for _command in project_commands():
    main.add_command(_command)
