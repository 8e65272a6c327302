"""What we hold about one customer, found once for both `ivr customers export` and `erase`.

A data subject is a customer, not an account: asked about one account number, both
commands cover every account of that account's customer. `Footprint` gathers the
rows that are theirs (accounts, number history, calls, voicemail, audit events) and the personal
values that may appear inside other rows (`tokens`), so the export shows, and the
erase scrubs, the same things. Their calls are those of their accounts, and those
about no account from a number of theirs, told by the keyed hash of the caller's full
number (`calls.caller_key`), never by the masked caller a thousand numbers share.
Rows of other people are theirs only where one of their distinctive values (a full
number, the email, an account number) stands there as a value of its own (`names_them`).
The job queue is `privacy_jobs`'s.

In Redis a customer's data sits under each account's `{acct:<id>}` hash tag (codes,
counters, pending number change), under the calls of their accounts (state, timeline,
last answer, the agent page's transfer entry), in call-backs placed to them, in
call-backs chosen on hold for their accounts (ivr.calls.queue_callback) and in the
digit-failure counter keyed by a keyed hash of their phone numbers (ivr.verification.
digits). The functions below find each kind; SCAN on a Redis Cluster visits every
node (redis-py's cluster `scan_iter`), so nothing hides on another master.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import redis
from flask import current_app
from sqlalchemy import Text, and_, cast, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from ivr.agent import transfers
from ivr.calls import queue_callback, store
from ivr.customers.accounts import find_account
from ivr.history.record import caller_key
from ivr.phone import mask, mask_account
from ivr.storage import keys
from ivr.storage.models import (
    Account,
    AuditEvent,
    CallRecord,
    Customer,
    PhoneChange,
    PhoneNumber,
    Voicemail,
)
from ivr.verification import digits


class NoSuchAccount(LookupError):
    """No account has the number asked about."""


@dataclass
class Footprint:
    """One customer's rows and the personal values that identify them."""

    customer: Customer
    accounts: list[Account]
    numbers: set[str] = field(default_factory=set)  # every E.164 they held, now or before
    shared: set[str] = field(default_factory=set)  # of those, numbers another customer holds
    call_sids: set[str] = field(default_factory=set)
    # Keyed hashes (calls.caller_key) of their numbers that nobody else holds.
    number_keys: set[str] = field(default_factory=set)

    @property
    def account_ids(self) -> list[int]:
        return [account.id for account in self.accounts]

    @property
    def erased(self) -> bool:
        """Erased before (a second erase): its pseudonyms are not personal values."""
        return self.customer.name == f"erased customer {self.customer.id}"

    def tokens(self) -> set[str]:
        """Values that identify the customer wherever they appear: name, email, numbers
        in full, account numbers, and their masked forms."""
        found = set() if self.erased else {self.customer.name, self.customer.first_name}
        if self.customer.email:
            found.update({self.customer.email, self.customer.email.lower()})
        for account in self.accounts:
            if not account.number.startswith("erased:"):
                found.update({account.number, mask_account(account.number)})
        for number in self.numbers:
            found.update({number, number.lstrip("+"), mask(number)})
        return {token for token in found if len(token) >= 3 and token != "•••"}

    def distinctive_tokens(self) -> set[str]:
        """The values that name them and nobody else, safe to look for in rows that are
        not theirs: full numbers (with and without "+"), account numbers, the email.
        Never a name (namesakes), a first name or a masked form (shared by thousands)."""
        found = {*self.numbers, *(n.lstrip("+") for n in self.numbers)}
        found.update(a.number for a in self.accounts)
        if self.customer.email:
            found.update({self.customer.email, self.customer.email.lower()})
        return {token for token in found if len(token) >= 5 and not token.startswith("erased:")}

    def owns(self, event: AuditEvent) -> bool:
        """An audit event of their accounts or calls (all of it is about them)."""
        return event.account_id in self.account_ids or event.call_sid in self.call_sids


def mention(token: str) -> re.Pattern[str]:
    """`token` as a value of its own inside a longer text: not part of a longer number,
    word or address ("10004321" is not in "210004321", "+1415…" not in "x+1415…1")."""
    return re.compile(r"(?<![\w+.@-])" + re.escape(token) + r"(?![\w@-]|\.\w)")


def names_them(value: Any, tokens: set[str] | frozenset[str]) -> bool:
    """Whether a JSON value holds one of `tokens` as a whole string value, or at word
    and digit boundaries inside one."""
    if isinstance(value, dict):
        return any(names_them(item, tokens) for item in value.values())
    if isinstance(value, list | tuple):
        return any(names_them(item, tokens) for item in value)
    if isinstance(value, str):
        return any(value == token or mention(token).search(value) for token in tokens)
    return False


def footprint(session: Session, account_number: str) -> Footprint:
    """The footprint of the customer who owns `account_number` (NoSuchAccount if none)."""
    account = find_account(session, account_number)
    if account is None:
        raise NoSuchAccount(f"no account {account_number!r}")
    customer = account.customer
    accounts = sorted(customer.accounts, key=lambda item: item.id)
    ids = [item.id for item in accounts]
    numbers = {item.phone.e164 for item in accounts if item.phone.e164.startswith("+")}
    for change in session.scalars(select(PhoneChange).where(PhoneChange.account_id.in_(ids))):
        numbers.update(n for n in (change.old_e164, change.new_e164) if n.startswith("+"))
    shared = set(
        session.scalars(
            select(PhoneNumber.e164)
            .join(Account, Account.phone_id == PhoneNumber.id)
            .where(Account.customer_id != customer.id, PhoneNumber.e164.in_(numbers))
        )
    )
    secret = current_app.config["IVR_SETTINGS"].secret_key
    found = Footprint(customer, accounts, numbers, shared)
    found.number_keys = {caller_key(number, secret) for number in numbers - shared}
    found.call_sids = _call_sids(session, found)
    return found


def _call_sids(session: Session, found: Footprint) -> set[str]:
    """Calls about their accounts, and calls about no account from a number of theirs
    nobody else holds (several accounts on the line, wrong digits: still theirs), told
    by the keyed hash of the caller's full number. Never by the masked caller: about a
    thousand numbers share each mask."""
    ids = found.account_ids
    calls = select(CallRecord.call_sid).where(
        or_(
            CallRecord.account_id.in_(ids),
            and_(
                CallRecord.account_id.is_(None),
                CallRecord.caller_key.in_(sorted(found.number_keys)),
            ),
        )
    )
    audited = select(AuditEvent.call_sid).where(
        AuditEvent.account_id.in_(ids), AuditEvent.call_sid.is_not(None)
    )
    changes = select(PhoneChange.call_sid).where(
        PhoneChange.account_id.in_(ids), PhoneChange.call_sid.is_not(None)
    )
    sids: set[str] = set()
    for query in (calls, audited, changes):
        sids.update(sid for sid in session.scalars(query) if sid)
    return sids


def audit_rows(session: Session, found: Footprint) -> list[AuditEvent]:
    """Audit events of their accounts or calls, and any other whose details hold one of
    their distinctive values as a value of its own (`names_them`)."""
    distinctive = found.distinctive_tokens()
    conditions: list[ColumnElement[bool]] = [
        AuditEvent.account_id.in_(found.account_ids),
        AuditEvent.call_sid.in_(sorted(found.call_sids)),
    ]
    for token in distinctive:
        # A coarse filter in SQL (a substring of the stored JSON, which escapes
        # non-ASCII as json.dumps does); `names_them` then decides.
        spelled = json.dumps(token)[1:-1]
        conditions.append(cast(AuditEvent.details, Text).contains(spelled, autoescape=True))
    query = select(AuditEvent).where(or_(*conditions)).order_by(AuditEvent.id)
    return [
        row
        for row in session.scalars(query)
        if found.owns(row) or names_them(row.details, distinctive)
    ]


def call_rows(session: Session, found: Footprint) -> list[CallRecord]:
    """Their calls (see `_call_sids`), oldest first."""
    sids = sorted(found.call_sids)
    query = select(CallRecord).where(CallRecord.call_sid.in_(sids))
    return list(session.scalars(query.order_by(CallRecord.started_at, CallRecord.call_sid)))


def voicemail_rows(session: Session, found: Footprint) -> list[Voicemail]:
    """Messages they left: on a call verified as one of their accounts, on one of their
    calls, or from a number of theirs nobody else holds (by the keyed hash of the full
    number, as for calls; never by the masked caller). Oldest first."""
    conditions: list[ColumnElement[bool]] = [Voicemail.account_id.in_(found.account_ids)]
    if found.call_sids:
        conditions.append(Voicemail.call_sid.in_(sorted(found.call_sids)))
    if found.number_keys:
        conditions.append(Voicemail.caller_key.in_(sorted(found.number_keys)))
    query = select(Voicemail).where(or_(*conditions))
    return list(session.scalars(query.order_by(Voicemail.created_at, Voicemail.id)))


# ---------------------------------------------------------------- Redis


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def scan(client: redis.Redis, pattern: str) -> Iterator[str]:
    """Key names matching `pattern`, each once (a cluster client scans every node)."""
    seen: set[str] = set()
    for name in client.scan_iter(match=pattern, count=1000):
        key = text(name)
        if key not in seen:
            seen.add(key)
            yield key


def account_keys(client: redis.Redis, found: Footprint) -> list[str]:
    """Every key under the hash tag of one of their accounts."""
    return sorted(
        key
        for account_id in found.account_ids
        for key in scan(client, keys.account_pattern(account_id))
    )


def caller_keys(client: redis.Redis, found: Footprint, secret: str) -> list[str]:
    """The digit-failure counters of their numbers (keyed by a hash of each), if present."""
    names = [digits.caller_key(secret.encode(), number) for number in sorted(found.numbers)]
    return [name for name in names if client.exists(name)]


def call_keys(client: redis.Redis, found: Footprint) -> list[str]:
    """Keys of their calls: ended ones by CallSid, and live states or transfer entries that
    name one of their accounts or numbers (a call not yet in the database)."""
    sids = set(found.call_sids) | set(related_states(client, found))
    ids = {str(account_id) for account_id in found.account_ids}
    for key in scan(client, f"{keys.PREFIX}:{{call:*}}:transfer"):
        if text(client.hget(key, "account_id") or b"") in ids:
            sids.add(_call_sid_of(key))
    names = []
    for sid in sorted(sids):
        for name in (
            keys.call_state(sid),
            keys.call_lock(sid),
            keys.call_answer(sid),
            keys.call_timeline(sid),
            transfers.entry_key(sid),
        ):
            if client.exists(name):
                names.append(name)
    return names


def related_states(client: redis.Redis, found: Footprint) -> dict[str, Any]:
    """Call states in Redis about one of their accounts or from one of their numbers."""
    ids = set(found.account_ids)
    result = {}
    for key in scan(client, f"{keys.PREFIX}:{{call:*}}:state"):
        sid = _call_sid_of(key)
        state = store.load(sid)
        if state is None:
            continue
        if state.account_id in ids or state.caller in found.numbers or ids & set(state.candidates):
            result[sid] = state
    return result


def callback_keys(client: redis.Redis, found: Footprint) -> dict[str, dict[str, Any]]:
    """Call-backs placed to their numbers or for their accounts: key name → record."""
    ids = set(found.account_ids)
    result = {}
    for key in scan(client, f"{keys.PREFIX}:{{cb:*}}:callback"):
        raw = client.get(key)
        if not raw:
            continue
        record = json.loads(raw)
        if record.get("account_id") in ids or record.get("to") in found.numbers:
            result[key] = record
    return result


def queue_callback_keys(client: redis.Redis, found: Footprint) -> dict[str, dict[str, Any]]:
    """Call-backs chosen on hold (ivr.calls.queue_callback) for their accounts: key name →
    record. Their account's one-waiting reservation sits under the account's tag."""
    ids = set(found.account_ids)
    result = {}
    for key in scan(client, queue_callback.pattern()):
        raw = client.get(key)
        if not raw:
            continue
        record = json.loads(raw)
        if record.get("account_id") in ids:
            result[key] = record
    return result


def listing_keys(client: redis.Redis) -> list[str]:
    """The agent page's listings (sorted sets of CallSids) of every target, and escalations."""
    return [*scan(client, f"{keys.PREFIX}:{{agent:*}}:transfers"), transfers.escalations_key()]


def _call_sid_of(key: str) -> str:
    return key.split("{call:", 1)[1].split("}", 1)[0]


def open_call_in_progress(found: Footprint) -> str | None:
    """The CallSid of a call in progress about their accounts or from their numbers."""
    ids = set(found.account_ids)
    for sid in store.open_call_sids(limit=1_000_000):
        state = store.load(sid)
        if state is None:
            continue
        if state.account_id in ids or state.caller in found.numbers:
            return sid
    return None
