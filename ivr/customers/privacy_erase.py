"""`ivr customers erase`: remove or pseudonymise one customer's personal data.

Rows are kept and pseudonymised rather than deleted wherever other records point at
them, so the audit trail stays whole: every audit event still names a real account
row (now "erased:<id>"), and counts and dates (calls, number changes) still add up.
What goes:

- the customer's name (→ "erased customer <id>") and email (→ NULL);
- each account's number (→ "erased:<account id>", unique, never a valid account
  number, so no import or caller can match it) and its phone (→ a placeholder phone
  row "erased:<account id>"; accounts need one);
- their phone number rows, unless another customer's account still uses the number;
- the numbers in their number history (→ "erased");
- in their calls (`calls`, `call_steps`) the masked caller (→ ""), the keyed hash of
  the caller's number (→ NULL) and any personal value in a step's details;
- in audit events of their accounts and calls, every string holding a personal value
  (their name, first name, numbers and masked forms → "[erased]"); in any other event,
  only their distinctive values (full numbers, email, account numbers) where they
  stand as values of their own: another person's row keeps its own words;
- their voicemail: the caller, its keyed hash and the account (→ cleared, marked
  "erased"); the recording at Twilio and the row are deleted right after the commit,
  or by the next daily `voicemail.prune` when Twilio cannot be reached;
- in Redis, every key of their accounts, their calls' keys, the agent page's entries
  about them, call-backs to them and the digit-failure counters of their numbers;
- in the job queue, notices to them and the kept records of their jobs (see
  `privacy_jobs`, which also says when a job makes the erase wait).

The database changes and the `customer.erased` audit event are one transaction. Redis
has no transaction with the database: its keys are deleted before the commit (so a
Redis outage stops the erase with nothing changed, and the numbers needed to find
the keys are still known) and once more after it, for whatever a call wrote between;
their jobs are deleted after it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, cast

import redis
from sqlalchemy import CursorResult, delete, exists, select
from sqlalchemy.orm import Session

from ivr.customers.privacy import (
    Footprint,
    account_keys,
    audit_rows,
    call_keys,
    call_rows,
    callback_keys,
    caller_keys,
    listing_keys,
    mention,
    open_call_in_progress,
    queue_callback_keys,
    voicemail_rows,
)
from ivr.customers.privacy_jobs import Subject, blocking, their_jobs
from ivr.jobs.queue import JobQueue
from ivr.numberchange.pending import load_pending
from ivr.phone import mask_account
from ivr.storage.models import Account, AuditEvent, PhoneChange, PhoneNumber

ERASED = "[erased]"  # what replaces a personal value inside audit details and steps
ERASED_NUMBER = "erased"  # what replaces a number in the number history
# A masked phone number (+1415•••0100) or account number (•••4321).
MASKED = re.compile(r"\+\d{1,5}•••\d{4}|•••\d{4}")


class EraseRefused(Exception):
    """The customer cannot be erased now (a call or a number change is in progress)."""


def pseudonym(account_id: int) -> str:
    """The account number (and placeholder phone) an erased account keeps."""
    return f"erased:{account_id}"


def check_idle(found: Footprint) -> None:
    """EraseRefused when a number change or a call of theirs is in progress."""
    for account in found.accounts:
        if load_pending(account.id) is not None:
            raise EraseRefused(
                f"account {mask_account(account.number)} has a number change in progress; "
                "try again once it has ended"
            )
    call_sid = open_call_in_progress(found)
    if call_sid is not None:
        raise EraseRefused(f"call {call_sid} of this customer is in progress; try again after it")


WAIT = {
    "queued": "run the worker (`ivr jobs worker --burst`) or wait for it",
    "deferred": "run the worker (`ivr jobs worker --burst`) or wait for it",
    "scheduled": "wait for its retry (if it gives up, `ivr jobs failed` lists it)",
    "started": "it is running; wait for it",
}


def check_jobs(jobs: JobQueue, subject: Subject) -> None:
    """EraseRefused while a job of theirs runs, or waits to write their data back."""
    job = blocking(their_jobs(jobs, subject))
    if job is not None:
        raise EraseRefused(
            f"a {job.name} job ({job.id}) holding this customer's data is {job.where}; "
            f"{WAIT[job.where]}, then try again"
        )


def erase_redis(client: redis.Redis, found: Footprint, secret: str) -> int:
    """Delete every Redis key holding their data; how many keys were deleted."""
    of_calls = call_keys(client, found)
    names = list(
        dict.fromkeys(
            [
                *account_keys(client, found),
                *caller_keys(client, found, secret),
                *of_calls,
                *callback_keys(client, found),
                *queue_callback_keys(client, found),
            ]
        )
    )
    # Their transferred calls leave the agent page's listings too.
    sids = [name.split("{call:", 1)[1].split("}", 1)[0] for name in of_calls]
    # The keys lie in many cluster slots: one by one, no transaction.
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.delete(name)
    if sids:
        for listing in listing_keys(client):
            pipe.zrem(listing, *sids)
    results = pipe.execute()
    return sum(int(result) for result in results[: len(names)])


def erase_database(
    session: Session, found: Footprint, *, asked_account_id: int, redis_keys: int, actor: str
) -> dict[str, int]:
    """Pseudonymise their rows and record `customer.erased`, all in one transaction;
    the counts of what was changed."""
    tokens = found.tokens()
    ids = found.account_ids
    try:
        counts = {"accounts": len(found.accounts), "redis_keys": redis_keys}
        counts["audit_events"] = _scrub_audit(audit_rows(session, found), found, tokens)
        calls = call_rows(session, found)
        for call in calls:
            call.caller = ""
            call.caller_key = None
            for step in call.steps:
                step.detail = _scrubbed(step.detail, tokens, MASKED)
        counts["calls"] = len(calls)
        counts["voicemails"] = _erase_voicemail(session, found)
        changes = list(session.scalars(select(PhoneChange).where(PhoneChange.account_id.in_(ids))))
        for change in changes:
            change.old_e164 = change.new_e164 = ERASED_NUMBER
        counts["phone_changes"] = len(changes)
        for account in found.accounts:
            account.number = pseudonym(account.id)
            account.phone = _placeholder(session, account.id)
        found.customer.name = f"erased customer {found.customer.id}"
        found.customer.email = None
        session.flush()
        counts["phone_numbers"] = _drop_unused_numbers(session, found.numbers)
        session.add(
            AuditEvent(
                action="customer.erased",
                actor=actor,
                account_id=asked_account_id,
                details={
                    "customer_id": found.customer.id,
                    "account_ids": ids,
                    "erased": [
                        "customer name and email",
                        "account numbers and phones",
                        "phone numbers",
                        "number history",
                        "callers of calls",
                        "voicemail (recordings deleted at Twilio next)",
                        "personal values in audit details and call steps",
                        "redis keys",
                        "queued notices and job records",
                    ],
                    "counts": counts,
                },
            )
        )
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return counts


def _erase_voicemail(session: Session, found: Footprint) -> int:
    """Their messages lose everything that points at them and are marked erased: the
    recording at Twilio, then the row, go right after the commit (`ivr.voicemail.
    retention.delete_erased`), or at the next daily prune if Twilio cannot now."""
    rows = voicemail_rows(session, found)
    for row in rows:
        row.caller = ""
        row.caller_key = None
        row.account_id = None
        row.verification = "none"
        row.methods = []
        row.language = ""
        row.status = "erased"
    return len(rows)


def _scrub_audit(events: Iterable[AuditEvent], found: Footprint, tokens: set[str]) -> int:
    """Scrub their events: in those of their accounts and calls every string holding a
    personal value, masked numbers included (they can only be theirs, and a second erase
    no longer knows their numbers); in others, their distinctive values alone."""
    distinctive = sorted(found.distinctive_tokens(), key=len, reverse=True)
    changed = 0
    for event in events:
        if found.owns(event):
            details = _scrubbed(event.details, tokens, MASKED)
        else:
            details = _mentions_scrubbed(event.details, distinctive)
        if details != event.details:
            event.details = details  # a new object: SQLAlchemy sees JSON reassignment only
            changed += 1
    return changed


def _scrubbed(value: Any, tokens: set[str], pattern: re.Pattern[str] | None) -> Any:
    """A copy of a JSON value with every string holding a personal value (one of
    `tokens`, or a match of `pattern`) replaced."""
    if isinstance(value, dict):
        return {key: _scrubbed(item, tokens, pattern) for key, item in value.items()}
    if isinstance(value, list):
        return [_scrubbed(item, tokens, pattern) for item in value]
    if isinstance(value, str) and (
        any(token in value for token in tokens) or (pattern and pattern.search(value))
    ):
        return ERASED
    return value


def _mentions_scrubbed(value: Any, tokens: list[str]) -> Any:
    """A copy of a JSON value (someone else's) in which each of `tokens` standing as a
    whole string, or as a value of its own inside one, is replaced; nothing else is."""
    if isinstance(value, dict):
        return {key: _mentions_scrubbed(item, tokens) for key, item in value.items()}
    if isinstance(value, list):
        return [_mentions_scrubbed(item, tokens) for item in value]
    if not isinstance(value, str):
        return value
    if value in tokens:
        return ERASED
    for token in tokens:  # longest first: "+1415…" goes before its "1415…"
        value = mention(token).sub(ERASED, value)
    return value


def _placeholder(session: Session, account_id: int) -> PhoneNumber:
    """The account's own placeholder phone row (made on the first erase, kept after)."""
    name = pseudonym(account_id)
    phone = session.scalars(select(PhoneNumber).where(PhoneNumber.e164 == name)).first()
    if phone is None:
        phone = PhoneNumber(e164=name)
        session.add(phone)
    return phone


def _drop_unused_numbers(session: Session, numbers: set[str]) -> int:
    """Delete their phone number rows that no account uses any more (another customer's
    account on a shared number keeps it)."""
    unused = delete(PhoneNumber).where(
        PhoneNumber.e164.in_(sorted(numbers)),
        ~exists().where(Account.phone_id == PhoneNumber.id),
    )
    result = cast(CursorResult[Any], session.execute(unused))
    return int(result.rowcount or 0)
