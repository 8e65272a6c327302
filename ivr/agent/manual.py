"""Verification by hand, for callers the IVR could not verify: the checklist and a code.

The agent ticks what the caller got right (`CHECKLIST`) and can send a one-time
code to the phone or email on file, then type in what the caller reads out. The
code is a `CodeService` code of its own purpose (`AGENT_VERIFY`) bound to the
call, so it never matches a code the IVR sent, and it follows the same rules
(single use, wrong entries counted, per-account send limits and lockout). The
agent is told only whether it matched: the code itself never reaches the page.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ivr.delivery import Channel
from ivr.flow.engine import AccountView, Directory
from ivr.flow.model import Catalog
from ivr.phone import mask
from ivr.verification.codes import EXPIRED, OK, CodeService
from ivr.verification.verifier import contact, send_code_message

log = logging.getLogger(__name__)

AGENT_VERIFY = "agent_verify"

# What the agent may tick, in the order the page shows it.
CHECKLIST: Mapping[str, str] = {
    "full_name": "Full name",
    "account_or_email": "Account number or email address",
    "phone": "Phone number",
}

# Channels a code can go by, in the order the page offers them.
CODE_CHANNELS = ("sms", "email")


@dataclass(frozen=True)
class Destination:
    """Where a code by `channel` would go, as the agent may see it (masked)."""

    channel: str
    shown: str


@dataclass(frozen=True)
class Sent:
    """The outcome of a send: "sent", "sent_uncertain" (no answer from Twilio in time: the
    code stays valid), "no_channel", "rate_limited", "locked" or "failed"."""

    outcome: str
    channel: str
    shown: str = ""


def mask_email(address: str) -> str:
    """j•••@example.com: enough for the agent to say which mailbox, not to write to it."""
    local, at, domain = address.partition("@")
    if not at:
        return "•••"
    return f"{local[:1]}•••@{domain}"


class ManualVerifier:
    """Sends and checks the agent's codes for one transferred call at a time."""

    def __init__(
        self,
        codes: CodeService,
        channels: Mapping[str, Channel],
        directory: Directory,
        catalog: Catalog,
    ):
        self.codes = codes
        self.channels = channels
        self.directory = directory
        self.catalog = catalog

    def account(self, account_id: int | None) -> AccountView | None:
        """The account on file for the call, if it still exists."""
        if account_id is None:
            return None
        found = self.directory.accounts_by_ids([account_id])
        return found[0] if found else None

    def destinations(self, account: AccountView | None) -> list[Destination]:
        """The channels a code can go by for this account, with masked addresses."""
        if account is None:
            return []
        found = []
        for channel in CODE_CHANNELS:
            to = contact(account, channel)
            if channel in self.channels and to:
                found.append(Destination(channel, _shown(to, channel)))
        return found

    def send_code(
        self, account: AccountView | None, channel: str, *, call_sid: str, language: str
    ) -> Sent:
        """Send a new code for this call to the contact on file (replacing any earlier one)."""
        to = contact(account, channel) if account is not None else None
        if account is None or not to:
            return Sent("no_channel", channel)
        outcome = send_code_message(
            self.codes,
            self.channels,
            self.catalog,
            account,
            channel,
            purpose=AGENT_VERIFY,
            call_sid=call_sid,
            language=language,
        )
        return Sent(outcome, channel, _shown(to, channel) if outcome != "no_channel" else "")

    def check_code(self, account: AccountView | None, *, call_sid: str, entered: str) -> str:
        """The code service's outcome (ok, wrong, expired, locked) for what the caller read out."""
        if account is None:
            return EXPIRED
        digits = "".join(ch for ch in entered if "0" <= ch <= "9")  # "123 456" as read out
        outcome = self.codes.check(account.id, AGENT_VERIFY, call_sid, digits)
        log.info("call %s: agent code check %s", call_sid, outcome)
        return outcome


def passed(outcome: str) -> bool:
    """Whether a check outcome counts as a pass on the agent's screen."""
    return outcome == OK


def checked_items(ticked: Sequence[str]) -> list[str]:
    """The known checklist items among those ticked, in checklist order."""
    return [item for item in CHECKLIST if item in ticked]


def _shown(to: str, channel: str) -> str:
    return mask(to) if channel == "sms" else mask_email(to)
