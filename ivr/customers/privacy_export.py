"""`ivr customers export`: everything we hold about one customer, as JSON-ready data.

This is the data subject's own copy, handed over by an operator, so their values are
in full (name, email, phone numbers, account numbers, number history). What is never
in it: secrets that would help nobody and could hurt them (a live code's hash, the
agent page's signed context token), and other customers' data (another account on a
shared phone is named by nothing but the shared number itself).

Redis is described rather than dumped: which keys exist for their accounts, what kind
of thing each is (a live code, a counter, a pending number change) and counts. The job
queue is listed: notices to them (queued or kept), jobs of theirs still to run, and
the kept records of their other jobs. A number that is not one of theirs (the caller
of a call about their account, where a call-back or notice about it went) is masked.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import redis
from sqlalchemy.orm import Session

from ivr.agent import transfers
from ivr.customers.privacy import (
    Footprint,
    account_keys,
    audit_rows,
    call_rows,
    callback_keys,
    caller_keys,
    names_them,
    queue_callback_keys,
    related_states,
    scan,
    text,
    voicemail_rows,
)
from ivr.customers.privacy_jobs import QueuedJob, Subject, their_jobs
from ivr.history.query import call_as_dict
from ivr.jobs.queue import NOTICE, JobQueue
from ivr.numberchange.onfile import as_utc
from ivr.numberchange.pending import pending_change_for
from ivr.phone import mask
from ivr.storage import keys
from ivr.storage.models import Account, AuditEvent, Voicemail

EXPORT_SCHEMA = 1


def export(
    session: Session, client: redis.Redis, jobs: JobQueue, found: Footprint, secret: str
) -> dict[str, Any]:
    """The customer's data as one JSON-ready object (see the module docstring)."""
    customer = found.customer
    return {
        "schema": EXPORT_SCHEMA,
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "customer": {
            "id": customer.id,
            "name": customer.name,
            "email": customer.email,
            "created_at": _iso(customer.created_at),
        },
        "accounts": [_account(account) for account in found.accounts],
        "phone_numbers": sorted(found.numbers),
        "calls": [call_as_dict(row, steps=True) for row in call_rows(session, found)],
        "voicemails": [_voicemail(row) for row in voicemail_rows(session, found)],
        "audit_events": [_event(row, found) for row in audit_rows(session, found)],
        "redis": _redis(client, found, secret),
        "jobs": _jobs(jobs, found),
    }


def _voicemail(row: Voicemail) -> dict[str, Any]:
    """A message they left: what we hold of it (the audio itself is at Twilio, which the
    operator fetches with the recording SID if the customer asks for it)."""
    return {
        "call_sid": row.call_sid,
        "recording_sid": row.recording_sid,
        "left_at": _iso(row.created_at),
        "duration": row.duration,
        "caller": row.caller,
        "account_id": row.account_id,
        "verification": row.verification,
        "methods": list(row.methods or []),
        "language": row.language,
        "status": row.status,
        "handled_at": _iso(row.handled_at),
    }


def _account(account: Account) -> dict[str, Any]:
    return {
        "id": account.id,
        "number": account.number,
        "phone": account.phone.e164,
        "created_at": _iso(account.created_at),
        "updated_at": _iso(account.updated_at),
        "phone_changed_at": _iso(account.phone_changed_at),
        "phone_changes": [
            {
                "old": change.old_e164,
                "new": change.new_e164,
                "changed_at": _iso(change.changed_at),
                "call_sid": change.call_sid,
                "mode": change.mode,
            }
            for change in account.phone_changes
        ],
    }


def _event(row: AuditEvent, found: Footprint) -> dict[str, Any]:
    """An audit event; one of someone else's (it names them in passing) shows only the
    values that name them, not whose it is nor the rest of its details."""
    theirs = found.owns(row)
    details = row.details if theirs else _their_part(row.details, found.distinctive_tokens())
    return {
        "id": row.id,
        "at": _iso(row.at),
        "action": row.action,
        "actor": row.actor,
        "call_sid": row.call_sid if theirs else None,
        "account_id": row.account_id if theirs else None,
        "details": details,
    }


def _their_part(details: Any, tokens: set[str]) -> Any:
    if isinstance(details, dict):
        return {key: value for key, value in details.items() if names_them(value, tokens)}
    return details if names_them(details, tokens) else None


def _redis(client: redis.Redis, found: Footprint, secret: str) -> dict[str, Any]:
    by_account: dict[str, list[dict[str, Any]]] = {str(i): [] for i in found.account_ids}
    for key in account_keys(client, found):
        account_id = key.split("{acct:", 1)[1].split("}", 1)[0]
        by_account.setdefault(account_id, []).append(_describe(client, key))
    pending = {str(i): pending_change_for(i) for i in found.account_ids}
    return {
        "accounts": by_account,
        "pending_number_changes": {k: v for k, v in pending.items() if v is not None},
        "digit_failures_by_phone": len(caller_keys(client, found, secret)),
        "calls_in_redis": [
            {
                "call_sid": sid,
                "account_id": state.account_id,
                "caller": _theirs_or_masked(found, state.caller),
                "node": state.node,
                "verification": state.verification,
                "started_at": _iso_epoch(state.started_at),
                "ended": state.ended,
            }
            for sid, state in sorted(related_states(client, found).items())
        ],
        "agent_transfers": _transfers(client, found),
        "callbacks": [
            {
                key: record.get(key)
                for key in ("purpose", "status", "account_id", "placed_for", "outcome")
            }
            | {
                "to": _theirs_or_masked(found, str(record.get("to") or "")),
                "created": _iso_epoch(float(record.get("created") or 0)),
            }
            for record in callback_keys(client, found).values()
        ],
        "queue_callbacks": [
            {
                key: record.get(key)
                for key in ("account_id", "status", "attempts", "call_sid", "node", "language")
            }
            | {"created": _iso_epoch(float(record.get("created") or 0))}
            for record in queue_callback_keys(client, found).values()
        ],
    }


def _jobs(jobs: JobQueue, found: Footprint) -> dict[str, Any]:
    """Their jobs on the queue: notices (waiting or kept), others still to run, and the
    kept records of others (a finished call's record, a failed audit write)."""
    listed = their_jobs(jobs, Subject.of(found))
    notices = [job for job in listed if job.name == NOTICE]
    return {
        "queued_notices": [_notice(found, job) for job in notices],
        "pending": [_job(job) for job in listed if job.name != NOTICE and job.pending],
        "records": [_job(job) for job in listed if job.name != NOTICE and not job.pending],
    }


def _notice(found: Footprint, job: QueuedJob) -> dict[str, Any]:
    payload = job.payload
    return _job(job) | {
        "channel": payload.get("channel"),
        "to": _theirs_or_masked(found, str(payload.get("to") or "")),
        "subject": payload.get("subject"),
        "body": payload.get("body"),
        "purpose": payload.get("purpose"),
    }


def _job(job: QueuedJob) -> dict[str, Any]:
    payload = job.payload
    return {
        "id": job.id,
        "job": job.name,
        "state": job.where,
        "call_sid": payload.get("call_sid"),
        "account_id": payload.get("account_id"),
    }


def _theirs_or_masked(found: Footprint, address: str) -> str:
    """A number or email in full if it is theirs, else masked (a third party's)."""
    email = (found.customer.email or "").lower()
    if address in found.numbers or (email and address.lower() == email):
        return address
    return mask(address) if address.startswith("+") else ("[someone else]" if address else "")


def _describe(client: redis.Redis, key: str) -> dict[str, Any]:
    """What one account key holds, by kind: never a code's hash, never a code."""
    name = key.split("}:", 1)[1]
    kind = text(client.type(key))
    ttl = client.ttl(key)
    described: dict[str, Any] = {"key": name, "expires_in": ttl if ttl >= 0 else None}
    if name.startswith("code:"):
        described["holds"] = "a live one-time code (only its keyed hash is stored)"
    elif name == "number_change":
        described["holds"] = "the pending number change (see pending_number_changes)"
    elif name == "locked":
        described["holds"] = "a lockout of code verification"
    elif kind == "zset":
        described["holds"] = f"{client.zcard(key)} timestamped entries"
    elif kind == "string":
        value = text(client.get(key) or b"")
        described["holds"] = f"the count {value}" if value.isdigit() else "a value"
    else:
        described["holds"] = f"a {kind}"
    return described


def _transfers(client: redis.Redis, found: Footprint) -> list[dict[str, Any]]:
    """The agent page's entries about their accounts (without the signed context token)."""
    ids = set(found.account_ids)
    listed = []
    for key in sorted(found.call_sids | set(_entry_sids(client))):
        entry = transfers.lookup(client, key)
        if entry is None or entry["account_id"] not in ids:
            continue
        entry.pop("token", None)
        listed.append(entry)
    return listed


def _entry_sids(client: redis.Redis) -> list[str]:
    pattern = f"{keys.PREFIX}:{{call:*}}:transfer"
    return [key.split("{call:", 1)[1].split("}", 1)[0] for key in scan(client, pattern)]


def _iso(moment: datetime | None) -> str | None:
    return as_utc(moment).isoformat() if moment is not None else None


def _iso_epoch(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")
