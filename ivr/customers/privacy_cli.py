"""`ivr customers export|erase`: a customer's data for a data-subject request, or its erasure.

The commands only parse, confirm and report; `ivr.customers.privacy` finds what is
theirs, `privacy_export` describes it, `privacy_erase` removes it. `ivr.customers.cli`
adds both commands to the `ivr customers` group.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NoReturn

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from ivr.customers.importer import normalise_account_number as normalise
from ivr.customers.privacy import Footprint, NoSuchAccount, footprint
from ivr.customers.privacy_erase import (
    EraseRefused,
    check_idle,
    check_jobs,
    erase_database,
    erase_redis,
    pseudonym,
)
from ivr.customers.privacy_export import export
from ivr.customers.privacy_jobs import Subject, blocking, delete_jobs, their_jobs
from ivr.errors import StorageUnavailable
from ivr.jobs import queue as jobqueue
from ivr.phone import mask_account
from ivr.storage import audit, db, kv
from ivr.voicemail import retention


@click.command("export")
@click.argument("account_number")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write the JSON to this new file (created readable by its owner only, 0600).",
)
@with_appcontext
def export_command(account_number: str, output: Path | None) -> None:
    """Print, as JSON, everything held about the customer who owns ACCOUNT_NUMBER.

    This is the data subject's own copy, for the operator to hand over: it holds
    their name, email, phone numbers and account numbers IN FULL, for every account
    of that customer, with their number history, calls (with steps), audit events
    and what Redis holds for their accounts (described, never a code or its hash).
    Treat the output as personal data: prefer --output to a terminal or a log.
    The export is audited (customer.exported).
    """
    session = db.session()
    settings = current_app.config["IVR_SETTINGS"]
    try:
        found = footprint(session, account_number)
        with kv.unavailable_as_storage_error():
            data = export(session, kv.client(), jobqueue.get(), found, settings.secret_key)
    except NoSuchAccount as exc:
        _fail(str(exc))
    except StorageUnavailable as exc:
        _fail(f"nothing exported: {exc}")
    document = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if output is not None:
        try:
            descriptor = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            _fail(f"nothing exported: cannot create {output}: {exc.strerror}")
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(document)
    audit.record(
        session,
        "customer.exported",
        actor="cli",
        account_id=_asked(found, account_number),
        details={
            "account": mask_account(normalise(account_number)),
            "customer_id": found.customer.id,
            "accounts": len(found.accounts),
            "to": "file" if output is not None else "stdout",
        },
    )
    if output is None:
        click.echo(document, nl=False)
    else:
        click.echo(f"exported customer {found.customer.id} to {output}", err=True)


@click.command("erase")
@click.argument("account_number")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@with_appcontext
def erase_command(account_number: str, yes: bool) -> None:
    """Erase the personal data of the customer who owns ACCOUNT_NUMBER (all their accounts).

    Name, email, account numbers, phone numbers and number history are removed or
    replaced by pseudonyms ("erased customer <id>", account "erased:<id>"); callers
    and personal values in call history and audit details are scrubbed; their Redis
    keys are deleted. Rows are kept so the audit trail stays consistent: an erased
    account is found afterwards as "erased:<id>". Refused while a call or a number
    change of theirs is in progress, or while a job of theirs runs or waits to write
    their data back (run the worker or wait). Notices queued to them and the kept
    records of their jobs are deleted. One transaction; audited (customer.erased).
    Their voicemail recordings are then deleted at Twilio (or by the next daily
    voicemail.prune when Twilio cannot be reached).
    """
    session = db.session()
    settings = current_app.config["IVR_SETTINGS"]
    found, subject = _ready(account_number)
    if not yes:
        click.confirm(
            f"Erase customer {found.customer.id} and all {len(found.accounts)} of their "
            "account(s)? This cannot be undone",
            abort=True,
        )
        # A call, a number change or a job may have begun while the operator read the
        # question: look again, right before anything changes.
        session.expire_all()
        found, subject = _ready(account_number)
    asked = _asked(found, account_number)
    try:
        with kv.unavailable_as_storage_error():
            deleted = erase_redis(kv.client(), found, settings.secret_key)
    except StorageUnavailable as exc:
        _fail(f"nothing erased: {exc}")
    try:
        counts = erase_database(
            session, found, asked_account_id=asked, redis_keys=deleted, actor="cli"
        )
    except SQLAlchemyError as exc:
        _fail(f"nothing erased in the database (rolled back): {type(exc).__name__}; run it again")
    try:
        with kv.unavailable_as_storage_error():
            counts["redis_keys"] += erase_redis(kv.client(), found, settings.secret_key)
            counts["jobs"] = delete_jobs(jobqueue.get(), subject)
            late = blocking(their_jobs(jobqueue.get(), subject))
    except StorageUnavailable as exc:
        click.echo(
            f"warning: second pass over Redis or the job queue failed ({exc}); run "
            f"`ivr customers erase {pseudonym(asked)} --yes` again",
            err=True,
        )
    else:
        if late is not None:  # a call of theirs ended during the erase: its job came after
            click.echo(
                f"warning: a {late.name} job ({late.id}) of this customer was queued during "
                f"the erase; once it has run, run `ivr customers erase {pseudonym(asked)} "
                "--yes` again",
                err=True,
            )
    summary = ", ".join(f"{value} {name.replace('_', ' ')}" for name, value in counts.items())
    click.echo(f"erased customer {found.customer.id}: {summary}")
    if counts.get("voicemails"):
        _delete_recordings(session)


def _delete_recordings(session: Session) -> None:
    """Delete the erased messages' recordings at Twilio, then their rows; what Twilio
    does not delete now stays marked erased (nothing personal left in the row) for the
    daily `voicemail.prune`."""
    settings = current_app.config["IVR_SETTINGS"]
    try:
        done = retention.delete_erased(session, retention.recordings_for(settings))
    except SQLAlchemyError as exc:
        session.rollback()
        click.echo(
            f"warning: voicemail recordings not deleted yet ({type(exc).__name__}); the daily "
            "voicemail.prune job deletes them (or run `ivr voicemail prune`)",
            err=True,
        )
        return
    if done.kept:
        click.echo(
            f"warning: {done.kept} voicemail recording(s) not deleted at Twilio yet; the daily "
            "voicemail.prune job tries again (or run `ivr voicemail prune`)",
            err=True,
        )


def _ready(account_number: str) -> tuple[Footprint, Subject]:
    """Their footprint, once nothing of theirs is in progress (else one line, exit 1)."""
    try:
        found = footprint(db.session(), account_number)
        subject = Subject.of(found)
        with kv.unavailable_as_storage_error():
            check_idle(found)
            check_jobs(jobqueue.get(), subject)
    except (NoSuchAccount, EraseRefused, StorageUnavailable) as exc:
        _fail(f"nothing erased: {exc}")
    return found, subject


def _asked(found: Footprint, account_number: str) -> int:
    """The id of the account the operator named (one of the customer's)."""
    return next(a.id for a in found.accounts if a.number == normalise(account_number))


def _fail(message: str) -> NoReturn:
    click.echo(message, err=True)
    click.get_current_context().exit(1)
    raise AssertionError("unreachable")  # exit raises
