"""`ivr hours`: close the line in an emergency, open it again, and see how it is.

No publish is involved: the closure is a row in the database that every flow's
`schedule` node reads (within CACHE_SECONDS on each worker). Exit codes: 0 the line
was switched (or, for `status`, was read); 1 an error, with a one-line message (an
unknown message key, storage down); 3 nothing to do: the line was closed (or open)
already, and the message says since when and by whom.
"""

from __future__ import annotations

import json
import os
from typing import NoReturn

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext
from sqlalchemy.exc import SQLAlchemyError

from ivr.config import Settings
from ivr.errors import InvalidDefinition, StorageUnavailable
from ivr.hours import closures, messages
from ivr.hours.status import CACHE_SECONDS
from ivr.storage import db

NOTHING_TO_DO = 3  # the exit code when the line already was as asked

hours = AppGroup("hours", help="Close the line in an emergency, or open it again.")


def _line() -> str:
    settings: Settings = current_app.config["IVR_SETTINGS"]
    return settings.flow


def _by(given: str | None) -> str:
    """Who switches: --by, else IVR_OPERATOR, else the login name (the audit keeps it)."""
    name = (given or os.environ.get("IVR_OPERATOR") or os.environ.get("USER") or "cli").strip()
    if not name:
        raise click.BadParameter("must not be empty", param_hint="--by")
    return name[:64]


def _nothing_to_do(text: str) -> NoReturn:
    click.echo(text, err=True)
    raise click.exceptions.Exit(NOTHING_TO_DO)


def _storage_error(exc: Exception) -> click.ClickException:
    return click.ClickException(
        f"storage is not reachable ({exc.__class__.__name__}); nothing was changed"
    )


@hours.command("close")
@click.option("--message", "message", required=True, help="The prompt key callers hear.")
@click.option("--by", "by", default=None, help="Who closes it (default: IVR_OPERATOR or USER).")
@with_appcontext
def close_command(message: str, by: str | None) -> None:
    """Close the line now: every schedule node speaks MESSAGE and takes its emergency exit."""
    who = _by(by)
    key = message.strip()
    session = db.session()
    try:
        version, catalog = messages.live_catalog()
        messages.check(key, catalog)
        closure = closures.close(session, _line(), key, who)
    except messages.UnknownMessage as exc:
        raise click.ClickException(f"{exc}; nothing was changed") from None
    except InvalidDefinition:
        raise click.ClickException(
            "the live version no longer loads, so its prompts cannot be checked; nothing was"
            " changed"
        ) from None
    except closures.AlreadyClosed as exc:
        _nothing_to_do(f"{exc}; nothing was changed (open it first to change the message)")
    except (SQLAlchemyError, StorageUnavailable) as exc:
        raise _storage_error(exc) from None
    click.echo(
        f"closed the line {closure.line} with the message {key} (live version {version});"
        f" every worker takes it within {CACHE_SECONDS:g} s"
    )


@hours.command("open")
@click.option("--by", "by", default=None, help="Who opens it (default: IVR_OPERATOR or USER).")
@with_appcontext
def open_command(by: str | None) -> None:
    """Open the line again after an emergency closure (the hours apply again)."""
    who = _by(by)
    try:
        closure = closures.reopen(db.session(), _line(), who)
    except closures.AlreadyOpen as exc:
        _nothing_to_do(f"{exc}; nothing was changed")
    except (SQLAlchemyError, StorageUnavailable) as exc:
        raise _storage_error(exc) from None
    click.echo(
        f"opened the line {closure.line} (closed {closures.describe(closure)});"
        f" every worker takes it within {CACHE_SECONDS:g} s"
    )


@hours.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print an object: line, state, …")
@with_appcontext
def status_command(as_json: bool) -> None:
    """Whether the line is closed in an emergency, since when, by whom, with which message."""
    line = _line()
    try:
        now = closures.Status(line, closures.current(db.session(), line))
    except (SQLAlchemyError, StorageUnavailable) as exc:
        raise click.ClickException(f"storage is not reachable ({exc.__class__.__name__})") from None
    if as_json:
        click.echo(json.dumps(now.as_dict(), indent=2, sort_keys=True))
    elif now.closure is None:
        click.echo(f"the line {line} is open (the schedule nodes' hours apply)")
    else:
        click.echo(f"the line {line} is CLOSED {closures.describe(now.closure)}")
