"""Verification by one-time code: the engine's Verifier, over codes, channels and prompts.

It finds the phone or mailbox on file, issues a code, words the message in the
caller's language and hands it to the channel. A code that could not be
delivered is withdrawn at once, so nothing is left half-done. A send whose outcome
is unknown (Twilio took the request but did not answer in time) may still arrive:
its code stays valid ("sent_uncertain") and the caller hears it may take a moment.

Codes are sent on the webhook, not by a background job: the caller waits for the
outcome (sent, or not and here is another way), and a code queued behind an
outage would arrive after the caller gave up.

The "voice" channel is a call-back to the phone on file: it only reserves the
code here, and the call-back makes and reads it once a person presses a key
(see ivr.calls.outbound).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from ivr.calls import outbound
from ivr.delivery import Channel, DeliveryFailed, DeliveryUncertain, Outgoing
from ivr.flow.engine import AccountView, Directory
from ivr.flow.model import Catalog
from ivr.flow.state import CallState
from ivr.phone import mask
from ivr.verification.codes import VERIFY, CodeService, Issued

log = logging.getLogger(__name__)

PURPOSE = VERIFY


def contact(account: AccountView, channel: str) -> str | None:
    """Where a code by `channel` goes: the phone on file, or the mailbox on file."""
    return account.email if channel == "email" else account.phone


def send_code_message(
    codes: CodeService,
    channels: Mapping[str, Channel],
    catalog: Catalog,
    account: AccountView,
    channel: str,
    *,
    purpose: str,
    call_sid: str,
    language: str,
) -> str:
    """Issue a code for `purpose` bound to the call and send it by text or email to the
    contact on file, worded in `language` (message_code_<channel>).

    The outcome is sent, sent_uncertain (no answer in time: it may still arrive, the
    code stays valid), no_channel, rate_limited, locked or failed; a code that could
    not be delivered is withdrawn with its send, so nothing is left half-done.
    """
    to = contact(account, channel)
    if channel not in channels or not to:
        return "no_channel"
    issued = codes.issue(account.id, purpose, call_sid)
    if not isinstance(issued, Issued):
        log.warning("call %s: no %s code sent (%s)", call_sid, purpose, issued.reason)
        return issued.reason
    texts = catalog.languages[language].texts
    values = {"code": issued.code, "minutes": str(max(1, issued.expires_in // 60))}
    message = Outgoing(
        channel=channel,
        to=to,
        body=" ".join(texts[f"message_code_{channel}"].format(**values).split()),
        subject=texts["message_code_email_subject"] if channel == "email" else "",
        call_sid=call_sid,
        purpose=purpose,
    )
    try:
        channels[channel].send(message)
    except DeliveryUncertain as exc:
        log.warning("call %s: %s code by %s: %s; kept", call_sid, purpose, channel, exc.reason)
        return "sent_uncertain"
    except DeliveryFailed as exc:
        codes.withdraw(account.id, purpose)
        log.error(
            "call %s: %s code by %s not delivered: %s", call_sid, purpose, channel, exc.reason
        )
        return "failed"
    shown = mask(to) if channel == "sms" else "the email on file"
    log.info("call %s: %s code sent by %s to %s", call_sid, purpose, channel, shown)
    return "sent"


class CodeVerifier:
    """Implements the engine's Verifier protocol for the "verify the caller" purpose."""

    def __init__(
        self,
        codes: CodeService,
        channels: Mapping[str, Channel],
        directory: Directory,
        catalog: Catalog,
        placer: outbound.Placer | None = None,
    ):
        self.codes = codes
        self.channels = channels
        self.directory = directory
        self.catalog = catalog
        self.placer = placer
        self.code_length = codes.policy.length

    def send_code(self, state: CallState, channel: str) -> str:
        """Send a code to the contact on file; the outcome names what happened."""
        if state.account_id is None:
            return "no_channel"
        if channel == "voice":
            return self._call_with_code(state) if self.placer else "no_channel"
        account = self._account(state)
        if account is None:
            return "no_channel"
        outcome = send_code_message(
            self.codes,
            self.channels,
            self.catalog,
            account,
            channel,
            purpose=PURPOSE,
            call_sid=state.call_sid,
            language=state.language,
        )
        if outcome in ("sent", "sent_uncertain"):
            state.code_channel = channel
        return outcome

    def _account(self, state: CallState) -> AccountView | None:
        found = self.directory.accounts_by_ids([state.account_id] if state.account_id else [])
        return found[0] if found else None

    def _call_with_code(self, state: CallState) -> str:
        """Ring the phone on file; the code is made when someone there presses a key."""
        assert self.placer is not None
        account = self._account(state)
        if account is None:
            return "no_channel"
        if account.phone == state.caller:
            return "line_in_use"  # the phone on file is the one on this call: it cannot ring
        callback = outbound.new_callback(
            purpose=PURPOSE,
            mode=outbound.READ,
            account_id=account.id,
            bound_to=state.call_sid,
            language=state.language,
            to=account.phone,
            placed_for=state.call_sid,
            clock=self.codes.clock,
        )
        refused = self.codes.reserve(account.id, PURPOSE, callback.id)
        if refused is not None:
            log.warning("call %s: no code call (%s)", state.call_sid, refused.reason)
            return refused.reason
        try:
            self.placer.place(callback)
        except DeliveryUncertain as exc:
            log.warning("call %s: code call: %s; kept", state.call_sid, exc.reason)
            state.code_channel = "voice"
            return "sent_uncertain"
        except DeliveryFailed as exc:
            self.codes.withdraw(account.id, PURPOSE)
            log.error("call %s: code call not placed: %s", state.call_sid, exc.reason)
            return "failed"
        state.code_channel = "voice"
        log.info("call %s: code call placed to %s", state.call_sid, mask(account.phone))
        return "sent"

    def check_code(self, state: CallState, entered: str) -> str:
        """Check the code the caller keyed in; a pass raises the call's verification level."""
        if state.account_id is None:
            return "expired"
        outcome = self.codes.check(state.account_id, PURPOSE, state.call_sid, entered)
        if outcome == "ok":
            state.verify(f"code_{state.code_channel or 'sms'}", self.codes.clock())
        log.info("call %s: code check %s", state.call_sid, outcome)
        return outcome
