"""Staff accounts (agents, supervisors, ops: the agent page and the ops console share them):
creating, checking, enrolling in TOTP, disabling, and `ivr users`.

Passwords are kept only as werkzeug hashes (scrypt by default) and checked with
werkzeug; an unknown username costs the same hash check as a wrong password, so
the time taken does not tell which usernames exist. TOTP secrets and recovery codes
are made here (ivr.staff does the checking); a secret is printed once, to the
terminal of whoever runs `ivr users add` or `totp-reset`, and never logged.
Disabling an account, resetting its TOTP or `ivr users signout` end all its
sessions at once (ivr.staff.sessions). Login throttling lives in ivr.staff.throttle.
An agent's agent-line PIN is kept as a werkzeug hash too (`ivr users pin`), beside the
phone the agent page's "take next call" rings (`ivr users phone`).
"""

from __future__ import annotations

import functools
import logging
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime

import click
from flask.cli import with_appcontext
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from ivr.agent.transfers import canonical_target
from ivr.config_line import MAX_PIN_LENGTH, MIN_PIN_LENGTH
from ivr.errors import IvrError, StorageUnavailable
from ivr.phone import mask, to_e164
from ivr.staff import recovery, totp, wiring
from ivr.storage import audit, db
from ivr.storage.models import AgentUser

log = logging.getLogger(__name__)

AGENT, SUPERVISOR, OPS = "agent", "supervisor", "ops"
ROLES = (AGENT, SUPERVISOR, OPS)
AGENT_PAGE_ROLES = (AGENT, SUPERVISOR)  # ops edit flows; they take no calls
CONSOLE_READ_ROLES = (SUPERVISOR, OPS)  # the ops console: supervisors read
CONSOLE_EDIT_ROLES = (OPS,)  # ... and ops edit, publish and roll back

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024  # hashing is deliberately slow: refuse megabyte "passwords"
USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,63}")


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


# ---------------------------------------------------------------- the agent line

PIN = re.compile(r"[0-9]+")


def check_pin_rules(pin: str) -> None:
    """Raise UserError unless the PIN is 6 to 12 keypad digits (not all one digit): the
    caller ID in front of it can be spoofed, so the PIN is the agent line's one secret
    (the same length as the shared IVR_AGENT_PIN's)."""
    if not PIN.fullmatch(pin) or not MIN_PIN_LENGTH <= len(pin) <= MAX_PIN_LENGTH:
        raise UserError(
            f"the PIN must be {MIN_PIN_LENGTH} to {MAX_PIN_LENGTH} digits (0-9), keyed on a phone"
        )
    if len(set(pin)) == 1:
        raise UserError("the PIN cannot be one digit repeated")


def set_line_pin(user: AgentUser, pin: str | None) -> None:
    """Set (or with None clear) the account's agent-line PIN: only a werkzeug hash is kept.
    Not committed: the caller commits it with its audit record."""
    if pin is None:
        user.line_pin_hash = None
        return
    check_pin_rules(pin)
    user.line_pin_hash = generate_password_hash(pin)


def line_pin_matches(user: AgentUser | None, pin: str) -> bool:
    """Whether `pin` is this account's agent-line PIN (False when it has none, or there
    is no account: one hash is checked either way, so the time tells nothing)."""
    if user is None or not user.line_pin_hash:
        check_password_hash(_decoy_hash(), pin)  # same cost either way
        return False
    return check_password_hash(user.line_pin_hash, pin)


def line_account(session: Session, phone: str) -> AgentUser | None:
    """The one enabled agent or supervisor whose line phone is `phone` (E.164, or
    client:NAME); None when there is none, or more than one (ambiguous: nobody)."""
    found = session.scalars(
        select(AgentUser)
        .where(
            AgentUser.line_phone == phone,
            AgentUser.disabled.is_(False),
            AgentUser.role.in_(AGENT_PAGE_ROLES),
        )
        .limit(2)
    ).all()
    if len(found) != 1:
        if found:
            log.error("two staff accounts have the same line phone; neither is used")
        return None
    return found[0]


@functools.cache
def _decoy_hash() -> str:
    return generate_password_hash("no account has this password")


@dataclass(frozen=True)
class Enrolment:
    """What the new owner of a TOTP secret is shown once: the otpauth URI (holding the
    secret) and the recovery codes."""

    uri: str
    recovery_codes: list[str]


def enrol_totp(session: Session, user: AgentUser, secret_key: str) -> Enrolment:
    """Give the user a new TOTP secret and new recovery codes (old ones stop working);
    not committed, so the caller commits it with its audit record."""
    secret = totp.new_secret()
    user.totp_secret = totp.seal(secret_key, secret)
    user.totp_last_step = None
    session.flush()
    codes = recovery.replace(session, secret_key, user.id)
    return Enrolment(totp.provisioning_uri(secret, user.username), codes)


# ---------------------------------------------------------------- `ivr users`


@click.group("users")
def users() -> None:
    """Staff accounts (agent page, ops): add, list, disable, enable, TOTP, sessions, and
    the agent line's PIN and phone."""


def _user_or_fail(session: Session, username: str) -> AgentUser:
    user = find_user(session, username)
    if user is None:
        raise click.ClickException(f"no user named {normalise_username(username)!r}")
    return user


def _show_enrolment(user: AgentUser, enrolment: Enrolment, qr: bool | None) -> None:
    """Print what the user needs to set up their authenticator: once, never logged."""
    click.echo("")
    click.echo(f"Second factor for {user.username}: scan this in an authenticator app,")
    click.echo("or enter the URI by hand. It holds the secret: show it to no one else.")
    click.echo(f"  {enrolment.uri}")
    if qr if qr is not None else sys.stdout.isatty():
        click.echo(totp.terminal_qr(enrolment.uri))
    click.echo("")
    click.echo("Recovery codes (shown only now; each signs in once when the phone is lost):")
    for code in enrolment.recovery_codes:
        click.echo(f"  {code}")


def _end_sessions(session: Session, user: AgentUser) -> int | None:
    """End every session of a user: first in the database (every request compares its
    session's start with `sessions_valid_after`, so this holds even when Redis cannot
    be reached now), then their records in Redis; None when Redis is down."""
    user.sessions_valid_after = wiring.clock()()
    session.commit()
    try:
        return wiring.session_store().end_all(user.id)
    except StorageUnavailable:
        click.echo("warning: Redis is unreachable; sessions end at their next request", err=True)
        return None


_QR_OPTION = click.option(
    "--qr/--no-qr",
    default=None,
    help="Draw the provisioning QR code in the terminal (default: when output is a terminal).",
)


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
@click.option(
    "--no-totp",
    is_flag=True,
    help="No second factor for now (refused when IVR_STAFF_2FA=required).",
)
@_QR_OPTION
@with_appcontext
def add_command(
    username: str,
    role: str,
    target: str | None,
    password_stdin: bool,
    no_totp: bool,
    qr: bool | None,
) -> None:
    """Add a staff account; the password is asked for twice, hidden. Prints the TOTP
    provisioning URI (and QR code) and recovery codes, once."""
    session = db.session()
    settings = wiring.settings()
    if no_totp and settings.staff_2fa == "required":
        raise click.ClickException("IVR_STAFF_2FA=required: every account needs TOTP")
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
    enrolment = None if no_totp else enrol_totp(session, user, settings.secret_key)
    audit.record(
        session,
        "agent_user.added",
        actor="cli",
        details={
            "user_id": user.id,
            "username": user.username,
            "role": role,
            "target": user.target,
            "totp": enrolment is not None,
        },
    )
    click.echo(f"added {user.role} {user.username} (calls to {user.target})")
    if enrolment is not None:
        _show_enrolment(user, enrolment, qr)


@users.command("list")
@with_appcontext
def list_command() -> None:
    """List the staff accounts."""
    rows = db.session().scalars(select(AgentUser).order_by(AgentUser.username)).all()
    if not rows:
        click.echo("no agent users yet: add one with `ivr users add USERNAME`")
        return
    table = [("username", "role", "target", "created", "status", "totp", "pin", "line phone")]
    table += [
        (
            user.username,
            user.role,
            user.target,
            user.created_at.strftime("%Y-%m-%d %H:%M"),
            "disabled" if user.disabled else "active",
            "yes" if user.totp_secret else "no",
            "yes" if user.line_pin_hash else "no",
            _shown_phone(user.line_phone),
        )
        for user in rows
    ]
    widths = [max(len(row[column]) for row in table) for column in range(len(table[0]))]
    for row in table:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        click.echo("  ".join(cells).rstrip())


@users.command("disable")
@click.argument("username")
@with_appcontext
def disable_command(username: str) -> None:
    """Disable an account: no more sign-ins, and all its sessions end now."""
    session = db.session()
    user = _user_or_fail(session, username)
    if user.disabled:
        click.echo(f"{user.username} was already disabled")
        return
    user.disabled = True
    ended = _end_sessions(session, user)  # commits the flag first: every request checks it
    audit.record(
        session,
        "agent_user.disabled",
        actor="cli",
        details={"user_id": user.id, "username": user.username, "sessions_ended": ended},
    )
    click.echo(f"disabled {user.username}; {ended or 0} session(s) ended")


@users.command("enable")
@click.argument("username")
@with_appcontext
def enable_command(username: str) -> None:
    """Enable a disabled account again (its old sessions stay ended: sign in anew)."""
    session = db.session()
    user = _user_or_fail(session, username)
    if not user.disabled:
        click.echo(f"{user.username} is already enabled")
        return
    user.disabled = False
    audit.record(
        session,
        "agent_user.enabled",
        actor="cli",
        details={"user_id": user.id, "username": user.username},
    )
    click.echo(f"enabled {user.username}")


@users.command("totp-reset")
@click.argument("username")
@_QR_OPTION
@with_appcontext
def totp_reset_command(username: str, qr: bool | None) -> None:
    """Set up TOTP for an account, or replace it (a lost phone): a new secret and new
    recovery codes, printed once; the old ones stop working and all sessions end."""
    session = db.session()
    user = _user_or_fail(session, username)
    had = user.totp_secret is not None
    enrolment = enrol_totp(session, user, wiring.settings().secret_key)
    ended = _end_sessions(session, user)  # commits the new secret too
    audit.record(
        session,
        "agent_user.totp_reset",
        actor="cli",
        details={
            "user_id": user.id,
            "username": user.username,
            "replaced": had,
            "sessions_ended": ended,
        },
    )
    click.echo(
        f"{'new' if had else 'set up'} TOTP for {user.username}; {ended or 0} session(s) ended"
    )
    _show_enrolment(user, enrolment, qr)


@users.command("sessions")
@click.argument("username")
@with_appcontext
def sessions_command(username: str) -> None:
    """List an account's live sessions (by a short reference, never the cookie)."""
    user = _user_or_fail(db.session(), username)
    try:
        live = wiring.session_store().live(user.id)
    except StorageUnavailable as exc:
        raise click.ClickException("Redis is unreachable: sessions cannot be listed") from exc
    if not live:
        click.echo(f"{user.username} has no live sessions")
        return
    click.echo("session   signed in (UTC)      last seen (UTC)")
    for each in live:
        click.echo(f"{each.ref[:8]}  {_utc(each.created)}  {_utc(each.seen)}")


@users.command("signout")
@click.argument("username")
@with_appcontext
def signout_command(username: str) -> None:
    """End all of an account's sessions now (the account stays enabled)."""
    session = db.session()
    user = _user_or_fail(session, username)
    ended = _end_sessions(session, user)
    audit.record(
        session,
        "agent_user.signed_out",
        actor="cli",
        details={"user_id": user.id, "username": user.username, "sessions_ended": ended},
    )
    click.echo(f"signed out {user.username}: {ended or 0} session(s) ended")


def _shown_phone(phone: str | None) -> str:
    """The line phone as `ivr users list` shows it: a number masked, a client identity."""
    if not phone:
        return "-"
    return phone if phone.startswith("client:") else mask(phone)


def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


@users.command("pin")
@click.argument("username")
@click.option(
    "--pin-stdin",
    is_flag=True,
    help="Read the PIN from the first line of standard input (for scripts).",
)
@click.option("--clear", is_flag=True, help="Remove the PIN: no agent line by PIN for them.")
@with_appcontext
def pin_command(username: str, pin_stdin: bool, clear: bool) -> None:
    """Set the PIN an agent keys on the agent line (6 to 12 digits; only a hash is kept).
    A session on the agent line opened with the old PIN ends at its next step."""
    session = db.session()
    user = _user_or_fail(session, username)
    if user.role not in AGENT_PAGE_ROLES:
        raise click.ClickException(f"{user.username} is {user.role}: only agents take calls")
    try:
        if clear:
            set_line_pin(user, None)
        else:
            if pin_stdin:
                pin = sys.stdin.readline().rstrip("\r\n")
            else:
                pin = click.prompt("PIN", hide_input=True, confirmation_prompt=True)
            set_line_pin(user, pin)
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    audit.record(
        session,
        "agent_user.line_pin_set" if not clear else "agent_user.line_pin_cleared",
        actor="cli",
        details={"user_id": user.id, "username": user.username},
    )
    click.echo(f"{'cleared the' if clear else 'set a new'} agent-line PIN for {user.username}")


def _phone_not_taken(session: Session, user: AgentUser) -> None:
    """A line phone identifies one account: the agent line checks only that account's
    PIN, and a client identity signs in as it."""
    other = session.scalar(
        select(AgentUser.username).where(
            AgentUser.line_phone == user.line_phone, AgentUser.id != user.id
        )
    )
    if other is not None:
        session.rollback()
        raise click.ClickException(f"that phone is already {other}'s: one phone, one account")


@users.command("phone")
@click.argument("username")
@click.argument("phone", required=False)
@click.option("--clear", is_flag=True, help="Remove the phone: the page button rings nothing.")
@with_appcontext
def phone_command(username: str, phone: str | None, clear: bool) -> None:
    """Set the phone "take next call" on the agent page rings: a number (E.164 or national)
    or client:NAME for a Twilio Client identity."""
    session = db.session()
    user = _user_or_fail(session, username)
    if clear:
        user.line_phone = None
    elif not phone:
        raise click.ClickException("give the phone (a number or client:NAME), or --clear")
    elif phone.startswith("client:"):
        identity = phone.removeprefix("client:")
        if not re.fullmatch(r"[A-Za-z0-9_.@-]{1,121}", identity):
            raise click.ClickException("a client identity is letters, digits, _ . @ or -")
        user.line_phone = phone
    else:
        number = to_e164(phone, wiring.settings().default_region)
        if number is None:
            raise click.ClickException(f"not a phone number: {phone!r}")
        user.line_phone = number
    if user.line_phone is not None:
        _phone_not_taken(session, user)
    audit.record(
        session,
        "agent_user.line_phone_set" if not clear else "agent_user.line_phone_cleared",
        actor="cli",
        details={"user_id": user.id, "username": user.username},
    )
    click.echo(f"{user.username}: take-next-call rings {user.line_phone or 'nothing'}")
