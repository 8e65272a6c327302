"""Agent accounts: creating, checking and disabling them, login throttling, `ivr users`.

Passwords are kept only as werkzeug hashes (scrypt by default) and checked with
werkzeug; an unknown username costs the same hash check as a wrong password, so
the time taken does not tell which usernames exist. Failed logins are counted
per username in Redis: after `LOGIN_FAILURES_ALLOWED` in `LOGIN_WINDOW` seconds
that username cannot sign in until the window passes.
"""

from __future__ import annotations

import functools
import re
import sys

import click
import redis
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from ivr.agent.transfers import canonical_target
from ivr.errors import IvrError
from ivr.storage import audit, db
from ivr.storage.keys import PREFIX
from ivr.storage.kv import unavailable_as_storage_error
from ivr.storage.models import AgentUser

AGENT, SUPERVISOR = "agent", "supervisor"
ROLES = (AGENT, SUPERVISOR)

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024  # hashing is deliberately slow: refuse megabyte "passwords"
USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,63}")

LOGIN_FAILURES_ALLOWED = 5
LOGIN_WINDOW = 900  # seconds


class UserError(IvrError):
    """An agent account could not be created or changed; the message says why."""


# ---------------------------------------------------------------- accounts


def normalise_username(text: str) -> str:
    """Usernames are case-insensitive: stored and looked up in lower case."""
    return text.strip().lower()


def find_user(session: Session, username: str) -> AgentUser | None:
    """The account with this username, or None."""
    return session.scalars(
        select(AgentUser).where(AgentUser.username == normalise_username(username))
    ).first()


def check_password_rules(password: str) -> None:
    """Raise UserError when the password is too weak (or absurdly long)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"the password is too short: use at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise UserError(f"the password is too long: at most {MAX_PASSWORD_LENGTH} characters")
    if password.strip() == "":
        raise UserError("the password cannot be only spaces")


def check_new_username(session: Session, username: str) -> str:
    """The normalised username; UserError when it is malformed or already taken."""
    name = normalise_username(username)
    if not USERNAME.fullmatch(name):
        raise UserError(
            "a username is 2 to 64 characters: letters, digits, '.', '_' or '-',"
            " starting with a letter or digit"
        )
    if find_user(session, name) is not None:
        raise UserError(f"a user named {name!r} already exists")
    return name


def create_user(
    session: Session, username: str, password: str, *, role: str, target: str, region: str
) -> AgentUser:
    """Add an agent account (committed); UserError on any problem."""
    name = check_new_username(session, username)
    if role not in ROLES:
        raise UserError(f"the role must be one of {', '.join(ROLES)}, not {role!r}")
    try:
        where = canonical_target(target, region)
    except ValueError as exc:
        raise UserError(f"target: {exc}") from None
    check_password_rules(password)
    if normalise_username(password) == name:
        raise UserError("the password cannot be the username")
    user = AgentUser(
        username=name, password_hash=generate_password_hash(password), role=role, target=where
    )
    session.add(user)
    session.commit()
    return user


def authenticate(session: Session, username: str, password: str) -> tuple[AgentUser | None, str]:
    """The enabled account these credentials belong to (or None), and why not:
    "ok", "unknown_user", "wrong_password" or "disabled" (for the audit, never the page)."""
    user = find_user(session, username) if username.strip() else None
    if user is None:
        check_password_hash(_decoy_hash(), password)  # same cost as a real check
        return None, "unknown_user"
    if not check_password_hash(user.password_hash, password):
        return None, "wrong_password"
    if user.disabled:
        return None, "disabled"
    return user, "ok"


@functools.cache
def _decoy_hash() -> str:
    return generate_password_hash("no account has this password")


# ---------------------------------------------------------------- login throttling


def login_failures_key(username: str) -> str:
    """Failed logins of one username in the current window (a counter)."""
    return f"{PREFIX}:{{agent-login:{normalise_username(username)[:64]}}}:failures"


def login_blocked(client: redis.Redis, username: str) -> bool:
    """Whether this username has used up its failed logins for now."""
    with unavailable_as_storage_error():
        count = client.get(login_failures_key(username))
    return int(count or 0) >= LOGIN_FAILURES_ALLOWED


def count_login_failure(client: redis.Redis, username: str) -> None:
    """Count one failed login; the window starts with the first failure."""
    key = login_failures_key(username)
    with unavailable_as_storage_error():
        pipe = client.pipeline()
        pipe.incr(key)
        pipe.expire(key, LOGIN_WINDOW, nx=True)
        pipe.execute()


def clear_login_failures(client: redis.Redis, username: str) -> None:
    """Forget failed logins after a successful one."""
    with unavailable_as_storage_error():
        client.delete(login_failures_key(username))


# ---------------------------------------------------------------- `ivr users`


@click.group("users")
def users() -> None:
    """Accounts of the agent page: add, list, disable."""


@users.command("add")
@click.argument("username")
@click.option(
    "--role", type=click.Choice(ROLES), default=AGENT, show_default=True, help="What they may do."
)
@click.option(
    "--target",
    default=None,
    help="The transfer target whose calls they take, e.g. queue:support"
    " (default: IVR_AGENT_TARGET).",
)
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of standard input (for scripts).",
)
@with_appcontext
def add_command(username: str, role: str, target: str | None, password_stdin: bool) -> None:
    """Add an agent account; the password is asked for twice, hidden."""
    session = db.session()
    settings = current_app.config["IVR_SETTINGS"]
    try:
        check_new_username(session, username)  # before asking for a password in vain
        if password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
        else:
            password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
        user = create_user(
            session,
            username,
            password,
            role=role,
            target=target or settings.agent_target,
            region=settings.default_region,
        )
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    audit.record(
        session,
        "agent_user.added",
        actor="cli",
        details={
            "user_id": user.id,
            "username": user.username,
            "role": role,
            "target": user.target,
        },
    )
    click.echo(f"added {user.role} {user.username} (calls to {user.target})")


@users.command("list")
@with_appcontext
def list_command() -> None:
    """List the agent accounts."""
    rows = db.session().scalars(select(AgentUser).order_by(AgentUser.username)).all()
    if not rows:
        click.echo("no agent users yet: add one with `ivr users add USERNAME`")
        return
    table = [("username", "role", "target", "created", "status")]
    table += [
        (
            user.username,
            user.role,
            user.target,
            user.created_at.strftime("%Y-%m-%d %H:%M"),
            "disabled" if user.disabled else "active",
        )
        for user in rows
    ]
    widths = [max(len(row[column]) for row in table) for column in range(len(table[0]))]
    for row in table:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


@users.command("disable")
@click.argument("username")
@with_appcontext
def disable_command(username: str) -> None:
    """Disable an account: no more logins, and its open sessions stop working."""
    session = db.session()
    user = find_user(session, username)
    if user is None:
        raise click.ClickException(f"no user named {normalise_username(username)!r}")
    if user.disabled:
        click.echo(f"{user.username} was already disabled")
        return
    user.disabled = True
    audit.record(  # commits the change with its audit record
        session,
        "agent_user.disabled",
        actor="cli",
        details={"user_id": user.id, "username": user.username},
    )
    click.echo(f"disabled {user.username}")
