"""What a node handler may use of the engine: its collaborators, its prompts and
the verification rules every number-change node re-checks.

It sits below both the turn loop (core) and the node handlers, so the handlers
can be typed against it without importing the engine that dispatches to them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ivr.flow.engine.ports import (
    AccountView,
    DigitLimits,
    Directory,
    LineStatus,
    NumberChanger,
    Verifier,
)
from ivr.flow.instructions import Instruction, Say
from ivr.flow.model import FRESH_VERIFICATION, Catalog, Flow, TransferTarget
from ivr.flow.state import CallState
from ivr.flow.timeline import TRANSFER, Step, step

COOLING_OFF = (
    7 * 86400
)  # seconds a changed number stays flagged (IVR_NUMBER_CHANGE_COOLING_OFF_DAYS)


@dataclass
class Turn:
    """The engine's answer: the state to store, what the caller hears next, and the
    steps the call took on the way (its timeline; never digits or codes)."""

    state: CallState
    instructions: list[Instruction] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)


class Invalid:
    """Marker: the input did not fit the node."""


INVALID = Invalid()


class EngineContext:
    """The engine's configuration and the helpers its node handlers share."""

    def __init__(
        self,
        flow: Flow,
        catalog: Catalog,
        directory: Directory,
        default_target: TransferTarget,
        default_region: str,
        clock: Callable[[], float] = time.time,
        verifier: Verifier | None = None,
        number_changer: NumberChanger | None = None,
        cooling_off: int = COOLING_OFF,
        digit_limits: DigitLimits | None = None,
        line_status: LineStatus | None = None,
        line_clock: Callable[[], float] | None = None,
    ):
        self.flow = flow
        # Wrong account digits counted across calls; None (tests of other things) counts
        # only the tries of each call.
        self.digit_limits = digit_limits
        # An emergency closure switched on by ops; None (tests of other things): never closed.
        self.line_status = line_status
        # The clock the schedule node reads the line's hours by (None: `clock`). Apart so
        # a simulated call (`ivr call --at`) or a test can be placed at another hour
        # without moving the code lifetimes and cooling-off periods with it.
        self.line_clock = line_clock
        self.verifier = verifier
        self.number_changer = number_changer
        self.cooling_off = cooling_off
        self.catalog = catalog
        self.directory = directory
        self.default_region = default_region
        self.clock = clock
        self.default_target = default_target

    # ------------------------------------------------------------ the timeline

    def note(self, turn: Turn, event: str, **fields: object) -> None:
        """Record a step of the call (see ivr.flow.timeline for what each carries)."""
        at = max(0, round((self.clock() - turn.state.started_at) * 1000))
        turn.steps.append(step(event, at, **fields))

    def note_transfer(
        self, turn: Turn, target: TransferTarget, node: str | None, reason: str | None
    ) -> None:
        """A transfer on the timeline: the target's kind, and the name of a queue or
        workflow (ours); never a number, SIP address or client identity (a person's)."""
        named = target.address if target.kind in ("queue", "workflow") else None
        self.note(turn, TRANSFER, node=node, target=target.kind, queue=named, reason=reason)

    # ------------------------------------------------------------ verification rules

    def fresh_code(self, state: CallState) -> bool:
        """Full verification on this call — the account digits, and a code passed within
        FRESH_VERIFICATION seconds — whatever path the flow took to get here."""
        now = self.clock()
        has_digits = any(method.startswith("account") for method, _ in state.methods)
        return has_digits and any(
            method.startswith("code") and now - at <= FRESH_VERIFICATION
            for method, at in state.methods
        )

    def may_change_number(self, state: CallState) -> AccountView | None:
        """The account whose number may change now: fresh full verification, and no
        change of the number on file during its cooling-off period. Checked again by
        every number-change node, so no flow path (a re-verification detour, say)
        can skip it; None when it may not."""
        if state.account_id is None or not self.fresh_code(state):
            return None
        accounts = self.directory.accounts_by_ids([state.account_id])
        if not accounts or self.changed_recently(accounts[0]):
            return None
        return accounts[0]

    def changed_recently(self, account: AccountView) -> bool:
        """The account's number changed within the cooling-off period."""
        changed = account.phone_changed_at
        return changed is not None and self.clock() - changed < self.cooling_off

    # ------------------------------------------------------------ speaking

    def say(
        self,
        turn: Turn,
        key: str,
        language: str | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> Say:
        """The prompt `key` in the call's language (or `language`), placeholders filled."""
        lang = language or turn.state.language
        text = self.catalog.text(lang, key)
        if "{" in text:
            values = self._prompt_values(turn.state)
            values.update(extra or {})
            text = text.format_map(_Blank(values))
        return Say(text, lang, self.catalog.voice(lang))

    def _prompt_values(self, state: CallState) -> dict[str, str]:
        """Account facts for prompts — only at full verification (digits and a code).

        Caller ID is spoofable and four digits are guessable, so a name is never
        spoken to a caller who has not also proven possession of the phone. The name is
        kept in the call state from the digits check (never the account number); a
        state without it (saved by an older release) looks it up once.
        """
        if state.verification != "code" or state.account_id is None:
            return {}
        if state.first_name is None:  # kept in the state: later steps need no lookup
            accounts = self.directory.accounts_by_ids([state.account_id])
            if not accounts:
                return {}
            state.first_name = accounts[0].first_name
        values = {"first_name": state.first_name}
        if "new_number_spoken" in state.slots:
            values["new_number"] = state.slots["new_number_spoken"]
        return values


class _Blank(dict[str, str]):
    """Placeholders with no value read as nothing rather than failing mid-call."""

    def __missing__(self, key: str) -> str:
        return ""


def flag(state: CallState, name: str) -> None:
    """Note a flag for the agent once, keeping the order they were raised in."""
    if name not in state.flags:
        state.flags.append(name)
