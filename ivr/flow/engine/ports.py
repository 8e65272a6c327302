"""What the engine needs from the rest of the service, stated as protocols.

The engine stays pure by asking for accounts, codes and number changes through
these shapes; the database, Redis and Twilio-backed services implement them
elsewhere, and tests hand in small in-memory ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ivr.flow.state import CallState


@dataclass(frozen=True)
class AccountView:
    """What the engine may know about an account."""

    id: int
    number: str
    name: str
    phone: str
    email: str | None = None
    phone_changed_at: float | None = None  # when the number on file last changed (epoch s)

    @property
    def first_name(self) -> str:
        return self.name.split()[0] if self.name.split() else ""


class Directory(Protocol):
    """Account lookups the engine needs (implemented over the database)."""

    def accounts_for_phone(self, e164: str) -> list[AccountView]: ...

    def accounts_by_ids(self, ids: Sequence[int]) -> list[AccountView]: ...

    def account_by_number(self, number: str) -> AccountView | None: ...


class Verifier(Protocol):
    """One-time codes for the engine (implemented by ivr.verification.verifier)."""

    code_length: int

    def send_code(self, state: CallState, channel: str) -> str:
        """Send a code on file: sent, no_channel, rate_limited, locked or failed."""
        ...

    def check_code(self, state: CallState, entered: str) -> str:
        """Check an entered code: ok, wrong, expired or locked."""
        ...


class DigitLimits(Protocol):
    """Wrong account-digit entries counted across calls (ivr.verification.digits).

    A wrong entry counts against every account it was checked against (the caller
    ID's candidates in last4 mode) or, when there is none (a full account number that
    matches nothing), against the calling number. Storage trouble raises
    StorageUnavailable: the call then fails closed, to an agent, unverified.
    """

    def locked(self, account_ids: Sequence[int], caller: str | None) -> bool:
        """Whether any of the accounts, or the calling number, takes no more digit attempts."""
        ...

    def attempt(self, account_ids: Sequence[int], caller: str | None) -> DigitAttempt:
        """Reserve one entry against the accounts (or, with none, the calling number;
        the caller is audited either way) before it is compared, reading the counts in
        the same round trip, so calls made at the same moment cannot all get a guess at
        the last try: refused when the limit was already reached (nothing then counts)."""
        ...


class DigitAttempt(Protocol):
    """One reserved digit entry: it counts as wrong unless `matched` gives it back."""

    refused: bool  # the limit was reached before this entry: it must not be compared

    def matched(self) -> None:
        """A right (or ambiguous) entry is no failure: give the reservation back."""
        ...

    def wrong(self, call_sid: str, mode: str) -> bool:
        """Keep the entry as a failure and audit it; True when it reached the limit."""
        ...


@dataclass(frozen=True)
class Started:
    """How starting a number-change call-back went; `code` only when it must be read now."""

    outcome: str  # calling, code_read, limited, locked, taken, failed, needs_code
    code: str | None = None


class NumberChanger(Protocol):
    """Changing the phone number on file, confirmed by a code call-back (ivr.numberchange)."""

    def check_number(self, state: CallState, account: AccountView, keyed: str) -> str:
        """ "ok" (kept in state.slots), "taken" (on another account) or a number problem."""
        ...

    def start(self, state: CallState, account: AccountView) -> Started:
        """Place the call-back to the new number, or read the code for one after this call."""
        ...

    def callback_status(self, state: CallState) -> str:
        """waiting (ringing or in progress), read, not_answered, busy or failed."""
        ...

    def confirm(self, state: CallState, entered: str) -> str:
        """Check the code keyed in here: ok (the number changed), wrong, expired, locked,
        conflict (the number changed meanwhile), taken (the new number went to another
        account meanwhile)."""
        ...


class LineStatus(Protocol):
    """Whether ops closed the line in an emergency (`ivr hours close`), read by the
    `schedule` node; implemented over the database (issue 15, the hours work)."""

    def emergency(self) -> str | None:
        """The prompt key of the closure's message while the line is closed, else None."""
