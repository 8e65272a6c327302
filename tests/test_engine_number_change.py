"""The engine's number-change nodes on the default flow, with an in-memory NumberChanger.

These pin the rules the journeys cannot reach cheaply: the 20-minute freshness of
the code, the cooling-off period, each problem's prompt, and what silence means
while the call-back rings.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from ivr.flow.engine import AccountView, Engine, Input, Started, Turn
from ivr.flow.instructions import Gather, Hangup, Say, Transfer
from ivr.flow.loader import load_definitions
from ivr.flow.model import FRESH_VERIFICATION, TransferTarget
from ivr.flow.state import CallState

ROOT = Path(__file__).resolve().parent.parent
DEFINITIONS = load_definitions(ROOT / "flows", ROOT / "prompts", "US")
FLOW = DEFINITIONS.flows["support"]
CATALOG = DEFINITIONS.catalog
NOW = 1_000_000.0
DAY = 86_400
JANE = AccountView(1, "10004321", "Jane Doe", "+14155550100", "jane@example.com")
NEW = "+14155550199"
CALLING = Started("calling")


class Directory:
    def __init__(self, *accounts: AccountView):
        self.accounts = list(accounts)

    def accounts_for_phone(self, e164: str) -> list[AccountView]:
        return [a for a in self.accounts if a.phone == e164]

    def accounts_by_ids(self, ids: Sequence[int]) -> list[AccountView]:
        return [a for a in self.accounts if a.id in ids]

    def account_by_number(self, number: str) -> AccountView | None:
        return next((a for a in self.accounts if a.number == number), None)


class Verifier:
    code_length = 6

    def __init__(self, now: float = NOW) -> None:
        self.now = now
        self.sent: list[str] = []

    def send_code(self, state: CallState, channel: str) -> str:
        self.sent.append(channel)
        state.code_channel = channel
        return "sent"

    def check_code(self, state: CallState, entered: str) -> str:
        if entered != "111111":
            return "wrong"
        state.verify(f"code_{state.code_channel}", self.now)
        return "ok"


class Changer:
    """Outcomes set by the test; every call recorded."""

    def __init__(
        self,
        number: str = "ok",
        start: Started = CALLING,
        status: Sequence[str] = ("read",),
        confirm: str = "ok",
    ):
        self.number, self.started, self.confirm_outcome = number, start, confirm
        self.statuses = list(status)
        self.calls: list[str] = []

    def check_number(self, state: CallState, account: AccountView, keyed: str) -> str:
        self.calls.append(f"check {keyed}")
        if self.number == "ok":
            state.slots["new_number"] = NEW
            state.slots["new_number_spoken"] = "4 1 5, 5 5 5, 0 1 9 9"
        return self.number

    def start(self, state: CallState, account: AccountView) -> Started:
        self.calls.append("start")
        return self.started

    def callback_status(self, state: CallState) -> str:
        self.calls.append("status")
        return self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]

    def confirm(self, state: CallState, entered: str) -> str:
        self.calls.append(f"confirm {entered}")
        return self.confirm_outcome


def engine(changer: Changer, now: float = NOW, account: AccountView = JANE) -> Engine:
    return Engine(
        FLOW,
        CATALOG,
        Directory(account),
        TransferTarget("number", "+15005550006"),
        "US",
        clock=lambda: now,
        verifier=Verifier(now),
        number_changer=changer,
        cooling_off=7 * DAY,
    )


def at_menu(eng: Engine) -> CallState:
    """Jane, verified by digits and a code at NOW, waiting at the main menu."""
    state = eng.start("CA" + "1" * 32, JANE.phone).state
    for digits in ("1", "4321", "111111"):
        state = eng.handle(state, Input(digits, state.step)).state
    assert state.node == "menu" and state.verification == "code"
    return state


def press(eng: Engine, state: CallState, digits: str | None) -> Turn:
    return eng.handle(state, Input(digits, state.step))


def spoken(turn: Turn) -> list[str]:
    said: list[str] = []
    for instruction in turn.instructions:
        if isinstance(instruction, Say):
            said.append(instruction.text)
        elif isinstance(instruction, Gather):
            said.extend(p.text for p in instruction.prompts if isinstance(p, Say))
    return said


def text(key: str, **values: str) -> str:
    raw = CATALOG.text("en-US", key)
    return raw.format(**values) if values else raw


def test_a_fresh_code_leads_to_the_new_number_prompt() -> None:
    eng = engine(Changer())
    turn = press(eng, at_menu(eng), "1")
    assert spoken(turn) == [text("enter_new_number")]
    assert turn.state.node == "new_number"


def test_a_code_older_than_20_minutes_asks_for_a_fresh_one_first() -> None:
    early = engine(Changer())
    state = at_menu(early)
    late = engine(Changer(), now=NOW + FRESH_VERIFICATION + 1)
    turn = press(late, state, "1")
    assert spoken(turn) == [
        text("fresh_code_needed"),
        text("code_sent_sms"),
        text("enter_code_short"),
    ]
    assert late.verifier is not None and late.verifier.sent == ["sms"]  # type: ignore[attr-defined]


def test_the_new_number_node_checks_freshness_itself() -> None:
    """Even a flow that skipped the check could not collect a number on a stale code."""
    eng = engine(Changer())
    state = press(eng, at_menu(eng), "1").state
    late = engine(Changer(), now=NOW + FRESH_VERIFICATION + 1)
    turn = press(late, state, "4155550199")
    assert turn.state.node == "reverify_code"
    assert late.number_changer is not None
    assert late.number_changer.calls == []  # type: ignore[attr-defined]


def test_a_number_changed_recently_needs_an_agent_for_another_change() -> None:
    recent = AccountView(1, "10004321", "Jane Doe", "+14155550100", None, NOW - 2 * DAY)
    eng = engine(Changer(), account=recent)
    state = at_menu(eng)
    assert state.flags == ["number_changed_recently", "code_to_new_number"]
    turn = press(eng, state, "1")
    assert spoken(turn) == [text("connecting_recently_changed")]
    assert isinstance(turn.instructions[-1], Transfer)
    assert turn.state.transfer_reason == "number_changed_recently"


def test_after_the_cooling_off_a_change_is_allowed_again() -> None:
    old = AccountView(1, "10004321", "Jane Doe", "+14155550100", None, NOW - 7 * DAY - 1)
    eng = engine(Changer(), account=old)
    state = at_menu(eng)
    assert state.flags == []
    assert press(eng, state, "1").state.node == "new_number"


@pytest.mark.parametrize(
    ("problem", "prompt"),
    [
        ("invalid", "new_number_invalid"),
        ("country", "new_number_country"),
        ("line_type", "new_number_line_type"),
        ("same_number", "new_number_same"),
    ],
)
def test_each_number_problem_has_its_own_retry_prompt(problem: str, prompt: str) -> None:
    eng = engine(Changer(number=problem))
    state = press(eng, at_menu(eng), "1").state
    turn = press(eng, state, "4155550199")
    assert spoken(turn) == [text(prompt)]
    assert turn.state.tries == {"new_number": 1}


def test_a_taken_number_goes_to_an_agent_for_review() -> None:
    eng = engine(Changer(number="taken"))
    state = press(eng, at_menu(eng), "1").state
    turn = press(eng, state, "4155550199")
    assert spoken(turn) == [text("connecting_recycled")]
    assert turn.state.transfer_reason == "recycled_number"
    assert turn.state.failure == "recycled_number"


def test_the_number_is_read_back_and_1_starts_the_call_back() -> None:
    changer = Changer()
    eng = engine(changer)
    state = press(eng, at_menu(eng), "1").state
    turn = press(eng, state, "4155550199")
    assert spoken(turn) == [text("confirm_new_number", new_number="4 1 5, 5 5 5, 0 1 9 9")]
    turn = press(eng, turn.state, "1")
    assert spoken(turn) == [text("callback_calling"), text("enter_callback_code")]
    assert changer.calls == ["check 4155550199", "start"]


def to_code_entry(changer: Changer) -> tuple[Engine, CallState]:
    eng = engine(changer)
    state = press(eng, at_menu(eng), "1").state
    state = press(eng, state, "4155550199").state
    state = press(eng, state, "1").state
    assert state.node == "enter_callback_code"
    return eng, state


def test_on_the_new_phone_the_code_is_read_and_the_call_ends() -> None:
    eng = engine(Changer(start=Started("code_read", "204817")))
    state = press(eng, at_menu(eng), "1").state
    state = press(eng, state, "4155550199").state
    turn = press(eng, state, "1")
    assert spoken(turn) == [
        text("read_code_new_number", code_digits="2, 0, 4, 8, 1, 7"),
        text("callback_hang_up"),
    ]
    assert isinstance(turn.instructions[-1], Hangup) and turn.state.ended
    assert "204817" not in turn.state.to_json()


@pytest.mark.parametrize(
    ("outcome", "prompt"),
    [
        ("limited", "callback_limited"),
        ("failed", "callback_failed"),
        ("locked", "connecting_unverified"),  # a lockout is not "try tomorrow"
        ("taken", "connecting_recycled"),
    ],
)
def test_a_call_back_that_cannot_start_is_explained(outcome: str, prompt: str) -> None:
    eng = engine(Changer(start=Started(outcome)))
    state = press(eng, at_menu(eng), "1").state
    state = press(eng, state, "4155550199").state
    assert spoken(press(eng, state, "1"))[0] == text(prompt)


def test_silence_while_the_call_back_rings_only_asks_to_wait() -> None:
    changer = Changer(status=("waiting", "waiting", "not_answered"))
    eng, state = to_code_entry(changer)
    for _ in range(2):
        turn = press(eng, state, None)
        assert spoken(turn) == [text("callback_waiting")]
        state = turn.state
    assert state.silences == {}
    turn = press(eng, state, None)
    assert spoken(turn) == [text("callback_not_answered"), text("change_trouble")]
    assert turn.state.failure == "callback_not_answered"


@pytest.mark.parametrize(
    ("status", "prompt"),
    [("busy", "callback_busy"), ("failed", "callback_failed")],
)
def test_a_call_back_that_ended_unanswered_is_explained(status: str, prompt: str) -> None:
    eng, state = to_code_entry(Changer(status=(status,)))
    assert spoken(press(eng, state, None))[0] == text(prompt)


def test_silence_after_the_code_was_read_is_ordinary_silence() -> None:
    eng, state = to_code_entry(Changer(status=("read",)))
    turn = press(eng, state, None)
    assert spoken(turn) == [text("enter_callback_code")]
    assert turn.state.silences == {"enter_callback_code": 1}


@pytest.mark.parametrize(
    ("outcome", "prompt"),
    [
        ("ok", "number_changed"),
        ("conflict", "number_change_conflict"),
        ("taken", "connecting_recycled"),
        ("expired", "callback_code_expired"),
    ],
)
def test_what_the_code_entry_leads_to(outcome: str, prompt: str) -> None:
    eng, state = to_code_entry(Changer(confirm=outcome))
    assert spoken(press(eng, state, "204817"))[0] == text(prompt)


def test_a_wrong_code_asks_again_with_the_retry_prompt() -> None:
    eng, state = to_code_entry(Changer(confirm="wrong"))
    turn = press(eng, state, "000000")
    assert spoken(turn) == [text("callback_code_wrong")]


def test_a_locked_account_goes_to_an_agent_unverified() -> None:
    eng, state = to_code_entry(Changer(confirm="locked"))
    turn = press(eng, state, "000000")
    assert spoken(turn) == [text("connecting_unverified")]
    assert turn.state.failure == "locked"


def test_re_verifying_does_not_skip_the_cooling_off() -> None:
    """A stale code sends the caller to re-verify; that detour still ends at the check."""
    recent = AccountView(1, "10004321", "Jane Doe", "+14155550100", None, NOW - 2 * DAY)
    state = at_menu(engine(Changer(), account=recent))
    later = NOW + FRESH_VERIFICATION + 1
    eng = engine(Changer(), now=later, account=recent)
    turn = press(eng, state, "1")
    assert turn.state.node == "reverify_code"
    turn = press(eng, turn.state, "111111")
    assert spoken(turn) == [text("connecting_recently_changed")]
    assert eng.number_changer is not None
    assert eng.number_changer.calls == []  # type: ignore[attr-defined]


def test_a_code_without_the_account_digits_is_not_full_verification() -> None:
    """A flow that asked only for a code could not reach the change: digits are required."""
    eng = engine(Changer())
    state = at_menu(eng)
    state.methods = [(method, at) for method, at in state.methods if method.startswith("code")]
    assert not eng.fresh_code(state)
    assert press(eng, state, "1").state.node == "reverify_code"
