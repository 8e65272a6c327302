"""Changing the phone number on file, confirmed by a code call-back (product.md, journey 5).

The engine's NumberChanger. A pending change lives in Redis per account while
its call-back runs; the code that proves the new phone is bound to the change's
id, so it works for this change and nothing else. Two modes:

- ON_LINE: the caller is on another phone and stays on the line. The service
  rings the new number; whoever answers presses a key and hears a code, which
  the caller keys in here.
- AFTER_CALL: the caller is calling from the new phone, which cannot ring while
  in use. This call reads the code and ends; when its status callback arrives,
  the service rings the new phone, which asks for the code.

Only a right code changes anything, in one database transaction
(ivr.numberchange.onfile); then the old number gets an SMS (and the mailbox on file an
email) saying so, through background jobs that retry until the message is taken.
Every attempt, finished or not, is audited with masked numbers.

The AFTER_CALL call-back is placed by a job too (`after_call`), once the call has
ended: a Twilio that cannot take it now is retried while its code lives.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from ivr.calls import outbound
from ivr.calls.outbound import ASK, READ, Callback
from ivr.delivery import Channel, DeliveryFailed, DeliveryUncertain
from ivr.errors import StorageUnavailable
from ivr.flow.engine import AccountView, Directory, Started
from ivr.flow.model import Catalog
from ivr.flow.state import CallState
from ivr.numberchange import onfile
from ivr.numberchange.notices import NoticeQueue, change_notices, notice_key, send_now
from ivr.numberchange.pending import (
    AFTER_CALL,
    ON_LINE,
    PendingChange,
    drop_pending,
    load_pending,
    save_pending,
)
from ivr.numberchange.rules import Accepted, NumberRules, check_new_number, spoken
from ivr.phone import mask
from ivr.storage import audit
from ivr.verification.codes import CONFIRM_NUMBER, OK, CodeService, Issued

log = logging.getLogger(__name__)

PURPOSE = CONFIRM_NUMBER
MAX_ENTRIES = 3  # codes keyed in per call-back (security.md)
# Ringing, answering and hearing the code take well under this; past it, a call-back
# whose status never arrived counts as not answered rather than keeping the caller waiting.
CALLBACK_DEADLINE = outbound.RING_SECONDS + 120

# How a call-back that read no code ended, in the engine's words.
_UNREACHED = {
    "completed": "not_answered",  # answered, but nobody pressed a key: voicemail
    "no-answer": "not_answered",
    "canceled": "not_answered",
    "busy": "busy",
    "failed": "failed",
}


@dataclass(frozen=True)
class CallbackReply:
    """What an ASK call-back says next: ask for the code again, or a last prompt."""

    prompt: str
    ask_again: bool = False


class NumberChanges:
    """Implements the engine's NumberChanger over codes, call-backs and the database."""

    def __init__(
        self,
        *,
        session: Session,
        directory: Directory,
        codes: CodeService,
        placer: outbound.Placer,
        rules: NumberRules,
        channels: Mapping[str, Channel],
        catalog: Catalog,
        support_number: str,
        clock: Callable[[], float] = time.time,
        later: NoticeQueue | None = None,
    ):
        self.session = session
        self.directory = directory
        self.codes = codes
        self.placer = placer
        self.rules = rules
        self.channels = channels
        self.catalog = catalog
        self.support_number = support_number
        self.clock = clock
        self.later = later  # None: notices are sent at once
        self.code_length = codes.policy.length

    # ------------------------------------------------------------ the engine's side

    def check_number(self, state: CallState, account: AccountView, keyed: str) -> str:
        result = check_new_number(keyed, self.rules, account.phone)
        if not isinstance(result, Accepted):
            log.info("call %s: new number refused (%s)", state.call_sid, result.problem)
            # Keypad digits are never recorded; only why they were refused.
            self._audit(
                "number_change.refused",
                state.call_sid,
                account.id,
                {"old": mask(account.phone), "reason": result.problem},
            )
            return result.problem
        if onfile.number_on_other_account_now(self._engine(), result.e164, account.id):
            self._audit(
                "number_change.refused",
                state.call_sid,
                account.id,
                {"old": mask(account.phone), "new": mask(result.e164), "reason": "recycled"},
            )
            return "taken"
        state.slots["new_number"] = result.e164
        state.slots["new_number_spoken"] = spoken(result.e164, self.rules)
        return "ok"

    def start(self, state: CallState, account: AccountView) -> Started:
        new = state.slots.get("new_number")
        if not new:
            return Started("needs_code")
        if onfile.number_on_other_account_now(self._engine(), new, account.id):
            return Started("taken")
        earlier = load_pending(account.id)
        if earlier is not None:  # a retry on this call, or another call: the old one is over
            self.codes.withdraw_code(account.id, PURPOSE)
            self._failed(earlier, "superseded")
        state.changing_number = True  # the end of this call has work to do: see after_call
        change = PendingChange(
            id=outbound.new_id(),
            account_id=account.id,
            call_sid=state.call_sid,
            old=account.phone,
            new=new,
            mode=AFTER_CALL if state.caller == new else ON_LINE,
            language=state.language,
            created=self.clock(),
        )
        if change.mode == AFTER_CALL:
            return self._read_code_now(change)
        return self._call_new_number(change)

    def _call_new_number(self, change: PendingChange) -> Started:
        callback = self._callback(change, READ)
        refused = self.codes.reserve(change.account_id, PURPOSE, callback.id)
        if refused is not None:
            self._failed(change, refused.reason)
            return Started("locked" if refused.reason == "locked" else "limited")
        if not self._ring(change, callback):
            return Started("failed")
        self._audit("number_change.started", change.call_sid, change.account_id, change.masked())
        return Started("calling")

    def _read_code_now(self, change: PendingChange) -> Started:
        issued = self.codes.issue(change.account_id, PURPOSE, change.id)
        if not isinstance(issued, Issued):
            self._failed(change, issued.reason)
            return Started("locked" if issued.reason == "locked" else "limited")
        save_pending(change)
        self._audit("number_change.started", change.call_sid, change.account_id, change.masked())
        return Started("code_read", issued.code)

    def callback_status(self, state: CallState) -> str:
        change = self._pending_of(state)
        if change is None or change.callback_id is None:
            return "failed"
        callback = outbound.load(change.callback_id)
        if callback is None:
            return "failed"
        if callback.revealed:
            return "read"
        if not callback.ended and self.clock() < callback.created + CALLBACK_DEADLINE:
            return "waiting"
        # Nobody took the code (or its status never came): this attempt is over, and
        # the caller may start another.
        unreached = _UNREACHED.get(callback.status, "not_answered")
        self.codes.withdraw_code(change.account_id, PURPOSE)
        drop_pending(change)
        self._failed(change, unreached)
        return unreached

    def confirm(self, state: CallState, entered: str) -> str:
        change = self._pending_of(state)
        if change is None:
            return "expired"
        outcome = self.codes.check(change.account_id, PURPOSE, change.id, entered)
        if outcome == OK:
            return self._apply(change)
        log.info("call %s: new-number code %s", state.call_sid, outcome)
        change.entries += 1
        if outcome == "wrong" and change.entries < MAX_ENTRIES:
            save_pending(change)
            return outcome
        # The code is dead (3 entries), expired or the account locked: this attempt is over.
        self.codes.withdraw_code(change.account_id, PURPOSE)
        drop_pending(change)
        self._failed(change, f"code_{outcome}")
        return outcome

    # ------------------------------------------------------------ the call-back's side

    def confirm_on_callback(self, callback: Callback, entered: str) -> CallbackReply:
        """A code keyed in on an AFTER_CALL call-back (ASK mode)."""
        change = load_pending(callback.account_id)
        if change is None or change.callback_id != callback.id:
            return CallbackReply("callback_expired")
        entries = callback.entries + 1
        outcome = self.codes.check(change.account_id, PURPOSE, change.id, entered)
        if outcome == OK:
            applied = self._apply(change)
            outbound.update(callback.id, entries=entries, outcome=applied)
            if applied == "ok":
                return CallbackReply("callback_number_changed")
            if applied == "taken":  # the number went to another account: people review it
                return CallbackReply("callback_not_changed")
            return CallbackReply("callback_change_conflict")
        outbound.update(callback.id, entries=entries, outcome=outcome)
        if outcome == "wrong" and entries < MAX_ENTRIES:
            return CallbackReply("callback_enter_code_retry", ask_again=True)
        self.codes.withdraw_code(change.account_id, PURPOSE)
        drop_pending(change)
        self._failed(change, f"code_{outcome}")
        return CallbackReply("callback_not_changed")

    def original_call_ended(self, state: CallState) -> None:
        """The caller's call ended: ring the new phone (AFTER_CALL), or close an
        ON_LINE change the caller walked away from (at once; no retry)."""
        if state.account_id is None:
            return
        self.after_call(state.call_sid, state.account_id)

    def after_call(self, call_sid: str, account_id: int, *, last_attempt: bool = True) -> None:
        """What follows the end of call `call_sid` (the job of an ended call).

        A call-back Twilio could not take now (an outage, not a refusal) raises
        DeliveryFailed with the change still pending, so a job can try again; on the
        last attempt, or a refusal, the attempt is over and its code withdrawn."""
        change = load_pending(account_id)
        if change is None or change.call_sid != call_sid:
            return
        if change.mode == ON_LINE:
            self.codes.withdraw_code(change.account_id, PURPOSE)
            drop_pending(change)
            self._failed(change, "abandoned")
            return
        if change.status != "pending":
            return  # a repeated status callback: the call-back is already on its way
        callback = self._callback(change, ASK)
        change.callback_id = callback.id
        change.status = "calling"
        save_pending(change)
        try:
            self.placer.place(callback)
        except DeliveryUncertain as exc:
            # The call may still ring; its status callback closes the attempt either way.
            log.warning("account %s: call-back placed without answer: %s", account_id, exc.reason)
        except DeliveryFailed as exc:
            if not (last_attempt or exc.permanent):
                change.status = "pending"
                change.callback_id = None
                save_pending(change)
                raise
            self.codes.withdraw(change.account_id, PURPOSE)
            drop_pending(change)
            self._failed(change, "callback_not_placed", twilio=exc.reason)

    def callback_ended(self, callback: Callback) -> None:
        """A call-back leg ended; an AFTER_CALL change that got no right code is over."""
        if callback.purpose != PURPOSE or callback.mode != ASK:
            return  # ON_LINE: the caller on the line hears about it (callback_status)
        change = load_pending(callback.account_id)
        if change is None or change.callback_id != callback.id:
            return
        if callback.answered:
            reason = (callback.outcome and f"code_{callback.outcome}") or "no_code_entered"
        else:
            reason = _UNREACHED.get(callback.status, "failed")
        self.codes.withdraw_code(change.account_id, PURPOSE)
        drop_pending(change)
        self._failed(change, reason)

    # ------------------------------------------------------------ helpers

    def _ring(self, change: PendingChange, callback: Callback) -> bool:
        """Place the change's call-back; if Twilio refuses it, the attempt is over and
        its code and send are withdrawn (the call-back never happened)."""
        change.callback_id = callback.id
        change.status = "calling"
        save_pending(change)
        try:
            self.placer.place(callback)
        except DeliveryUncertain as exc:
            # Twilio may be ringing it: keep the code; the caller waits as for any
            # call-back, and its deadline ends the wait if no status ever comes.
            log.warning("call %s: call-back placed without answer: %s", change.call_sid, exc.reason)
        except DeliveryFailed as exc:
            self.codes.withdraw(change.account_id, PURPOSE)
            drop_pending(change)
            self._failed(change, "callback_not_placed", twilio=exc.reason)
            return False
        return True

    def _apply(self, change: PendingChange) -> str:
        result = onfile.apply_change(
            self.session,
            account_id=change.account_id,
            expected_old=change.old,
            new=change.new,
            call_sid=change.call_sid,
            mode=change.mode,
            now=datetime.fromtimestamp(self.clock(), UTC),
        )
        if not isinstance(result, onfile.Changed):
            drop_pending(change)
            self._failed(change, f"conflict_{result.reason}")
            return "taken" if result.reason == "taken" else "conflict"
        # The number has changed: the old number hears about it before anything else
        # can fail, and tidying Redis afterwards must not undo that.
        self._notify(change, result.email)
        try:
            drop_pending(change)
        except StorageUnavailable:
            log.error("account %s: pending change left to expire", change.account_id)
        return "ok"

    def _notify(self, change: PendingChange, email: str | None) -> None:
        """Tell the old number (and `email`, the mailbox on file as the change committed):
        each notice is a job, retried until it is taken; when no job can be queued
        (Redis down) it is sent at once. A notice that could not be sent is audited, and
        never undoes the change."""
        notices = change_notices(self.channels, self.catalog, change, email, self.support_number)
        for message in notices:
            if self.later is not None:
                try:
                    key = notice_key(change, message.channel)
                    self.later(message, key=key, account_id=change.account_id)
                    continue
                except StorageUnavailable:
                    log.error("account %s: notice not queued; sent now", change.account_id)
            reason = send_now(self.channels, message)
            if reason is None:
                continue
            log.error("account %s: change notice by %s failed", change.account_id, message.channel)
            self._audit(
                "number_change.notice_failed",
                change.call_sid,
                change.account_id,
                {"channel": message.channel, "reason": reason},
            )

    def _failed(self, change: PendingChange, reason: str, **extra: str) -> None:
        self._audit(
            "number_change.failed",
            change.call_sid,
            change.account_id,
            {**change.masked(), "reason": reason, **extra},
            dedupe_key=f"number_change.failed:{change.id}",
        )

    def _audit(
        self,
        action: str,
        call_sid: str,
        account_id: int,
        details: Mapping[str, object],
        dedupe_key: str | None = None,
    ) -> None:
        audit.record_alone(
            self._engine(),
            action,
            actor="caller",
            call_sid=call_sid,
            account_id=account_id,
            details=dict(details),
            dedupe_key=dedupe_key,
        )

    def _engine(self) -> Engine:
        """The session's engine: early checks and audit rows go alone, in autocommit
        (one statement each); only the change itself is a transaction."""
        bind = self.session.get_bind()
        return bind if isinstance(bind, Engine) else bind.engine

    def _callback(self, change: PendingChange, mode: str) -> Callback:
        return outbound.new_callback(
            purpose=PURPOSE,
            mode=mode,
            account_id=change.account_id,
            bound_to=change.id,
            language=change.language,
            to=change.new,
            placed_for=change.call_sid,
            clock=self.clock,
        )

    def _pending_of(self, state: CallState) -> PendingChange | None:
        if state.account_id is None:
            return None
        change = load_pending(state.account_id)
        return change if change is not None and change.call_sid == state.call_sid else None
