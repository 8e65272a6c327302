"""Calls transferred to agents, kept in Redis for an hour: what the agent page lists and pops.

The voice webhooks `record` each transfer with the call's signed context token and
the account it is about; the agent page lists the `recent` transfers of a target,
pops one by CallSid (`lookup`) and keeps the agent's notes on the entry (checklist,
code sent and checked, escalation), so a reload or a supervisor sees the same.

An entry is a hash under the call's hash tag; each target has a sorted set of
CallSids by transfer time, and escalated calls are in one more set for supervisors.
Entries expire after `ENTRY_TTL`; the sets are pruned as they are read and written.
A set member whose entry is gone, or now names another target (the call was
transferred again), is skipped.
"""

from __future__ import annotations

import json
import time
from typing import Any, cast

import redis

from ivr.storage.keys import PREFIX
from ivr.storage.kv import unavailable_as_storage_error

ENTRY_TTL = 3600  # seconds: a transfer stays on the page for about an hour

# Kinds of transfer target written "kind:name" (a phone number is written in E.164).
_SCHEMES = ("queue", "client", "sip")


# ---------------------------------------------------------------- key names
# Named like ivr.storage.keys (the service's key module), with their own hash tags; they
# belong there once the agent package settles.


def entry_key(call_sid: str) -> str:
    """One transferred call (a hash), under the call's hash tag."""
    return f"{PREFIX}:{{call:{call_sid}}}:transfer"


def target_key(target: str) -> str:
    """CallSids transferred to one target (a sorted set scored by transfer time)."""
    return f"{PREFIX}:{{agent:{target_name(target)}}}:transfers"


def escalations_key() -> str:
    """CallSids an agent escalated to a supervisor (a sorted set scored by escalation time)."""
    return f"{PREFIX}:{{agent-escalations}}:transfers"


def target_name(target: str) -> str:
    """The one spelling of a target used in keys and on agent accounts ("queue:support")."""
    value = target.strip()
    scheme, colon, rest = value.partition(":")
    if colon and scheme.lower() in _SCHEMES:
        return f"{scheme.lower()}:{rest.strip()}"
    return value


def canonical_target(text: str, default_region: str) -> str:
    """Check a target as a transfer node would and spell it as `target_name` does.

    Raises ValueError naming the forms allowed (a phone number, sip:, client:, queue:).
    """
    from ivr.flow.model import parse_target

    parsed = parse_target(text, default_region)
    if parsed.kind == "number":
        return parsed.address
    return target_name(f"{parsed.kind}:{parsed.address}")


# ---------------------------------------------------------------- writing


def record(
    redis_client: redis.Redis,
    *,
    target: str,
    call_sid: str,
    token: str,
    account_id: int | None,
    at: float,
) -> None:
    """Note that `call_sid` was transferred to `target` at `at` (epoch seconds).

    A second transfer of the same call replaces target, token and time and keeps
    the agents' notes. `token` is the call's signed context; `account_id` the
    account it is about (None: unknown caller), for the page's send-code button.
    """
    with unavailable_as_storage_error():
        # Not a transaction: the keys live in different cluster slots by design.
        pipe = redis_client.pipeline(transaction=False)
        add(pipe, target=target, call_sid=call_sid, token=token, account_id=account_id, at=at)
        pipe.execute()


def add(
    pipe: redis.client.Pipeline,
    *,
    target: str,
    call_sid: str,
    token: str,
    account_id: int | None,
    at: float,
) -> None:
    """`record`'s commands, added to `pipe` (for a caller that sends them with others)."""
    name = target_name(target)
    entry = entry_key(call_sid)
    listing = target_key(name)
    pipe.hset(
        entry,
        mapping={
            "call_sid": call_sid,
            "target": name,
            "token": token,
            "account_id": "" if account_id is None else str(account_id),
            "at": repr(float(at)),
        },
    )
    pipe.expire(entry, ENTRY_TTL)
    pipe.zadd(listing, {call_sid: at})
    pipe.zremrangebyscore(listing, "-inf", f"({at - ENTRY_TTL}")
    pipe.expire(listing, ENTRY_TTL)


def note(redis_client: redis.Redis, call_sid: str, **fields: str) -> bool:
    """Add the agent's notes to an entry; False when the entry is gone (expired)."""
    entry = entry_key(call_sid)
    with unavailable_as_storage_error():
        if not redis_client.exists(entry):
            return False
        pipe = redis_client.pipeline(transaction=False)
        pipe.hset(entry, mapping=cast(Any, fields))
        # Should the entry expire between the two calls, the notes alone expire too
        # (and `lookup` ignores an entry without its token).
        pipe.expire(entry, ENTRY_TTL, nx=True)
        pipe.execute()
    return True


def save_checklist(
    redis_client: redis.Redis, call_sid: str, matched: list[str], *, by: str, at: float
) -> bool:
    """Keep what the agent ticked on the manual checklist."""
    return note(
        redis_client, call_sid, checklist=json.dumps(matched), checklist_by=by, checklist_at=f"{at}"
    )


def escalate(redis_client: redis.Redis, call_sid: str, *, by: str, at: float) -> bool:
    """Mark the call escalated to a supervisor and list it for supervisors."""
    if not note(redis_client, call_sid, escalated_by=by, escalated_at=f"{at}"):
        return False
    with unavailable_as_storage_error():
        pipe = redis_client.pipeline(transaction=False)
        pipe.zadd(escalations_key(), {call_sid: at})
        pipe.zremrangebyscore(escalations_key(), "-inf", f"({at - ENTRY_TTL}")
        pipe.expire(escalations_key(), ENTRY_TTL)
        pipe.execute()
    return True


# ---------------------------------------------------------------- reading


def lookup(redis_client: redis.Redis, call_sid: str) -> dict[str, Any] | None:
    """The entry of a transferred call, or None when there is none (or it expired)."""
    with unavailable_as_storage_error():
        raw = redis_client.hgetall(entry_key(call_sid))
    return _entry(raw)


def recent(
    redis_client: redis.Redis, target: str, limit: int = 20, *, now: float | None = None
) -> list[dict[str, Any]]:
    """The calls transferred to `target` in the last hour, newest first, at most `limit`."""
    name = target_name(target)
    found = _listed(redis_client, target_key(name), limit, now)
    return [entry for entry in found if entry["target"] == name]


def escalated(
    redis_client: redis.Redis, limit: int = 20, *, now: float | None = None
) -> list[dict[str, Any]]:
    """Calls escalated to a supervisor in the last hour, most recently escalated first."""
    return _listed(redis_client, escalations_key(), limit, now)


def _listed(
    redis_client: redis.Redis, key: str, limit: int, now: float | None
) -> list[dict[str, Any]]:
    since = (time.time() if now is None else now) - ENTRY_TTL
    with unavailable_as_storage_error():
        call_sids = redis_client.zrevrangebyscore(key, "+inf", since, start=0, num=limit)
        if not call_sids:
            return []
        pipe = redis_client.pipeline(transaction=False)
        for call_sid in call_sids:
            pipe.hgetall(entry_key(_text(cast(bytes | str, call_sid))))
        rows = pipe.execute()
    return [entry for entry in (_entry(row) for row in rows) if entry is not None]


def _entry(raw: dict[Any, Any]) -> dict[str, Any] | None:
    fields = {_text(name): _text(value) for name, value in raw.items()}
    if not fields.get("token") or not fields.get("call_sid"):
        return None
    account = fields.get("account_id", "")
    checklist = fields.get("checklist")
    return {
        "call_sid": fields["call_sid"],
        "target": fields.get("target", ""),
        "token": fields["token"],
        "account_id": int(account) if account.isascii() and account.isdigit() else None,
        "at": _float(fields.get("at")) or 0.0,
        "escalated": "escalated_at" in fields,
        "escalated_at": _float(fields.get("escalated_at")),
        "escalated_by": fields.get("escalated_by"),
        "checklist": json.loads(checklist) if checklist else None,
        "checklist_by": fields.get("checklist_by"),
        "code_sent": fields.get("code_sent"),
        "code_result": fields.get("code_result"),
        "code_by": fields.get("code_by"),
    }


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None
