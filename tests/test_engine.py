"""The pure engine: (flow, state, event) → (state, instructions), no Flask or Twilio."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from ivr.flow.engine import AccountView, DialResult, Engine, Input, Turn
from ivr.flow.instructions import Gather, Hangup, Say, Transfer
from ivr.flow.loader import load_definitions
from ivr.flow.model import Catalog, TransferTarget
from ivr.flow.state import CallState

ROOT = Path(__file__).resolve().parent.parent
DEFINITIONS = load_definitions(ROOT / "flows", ROOT / "prompts", "US")
FLOW = DEFINITIONS.flows["support"]
CATALOG = DEFINITIONS.catalog
AGENTS = TransferTarget("number", "+15005550006")


class MemoryDirectory:
    """Accounts in a list; counts lookups so tests can see when the engine asks."""

    def __init__(self, *accounts: AccountView):
        self.accounts = list(accounts)
        self.lookups = 0

    def accounts_for_phone(self, e164: str) -> list[AccountView]:
        self.lookups += 1
        return [a for a in self.accounts if a.phone == e164]

    def accounts_by_ids(self, ids: Sequence[int]) -> list[AccountView]:
        self.lookups += 1
        return [a for a in self.accounts if a.id in ids]

    def account_by_number(self, number: str) -> AccountView | None:
        self.lookups += 1
        return next((a for a in self.accounts if a.number == number), None)


JANE = AccountView(1, "10004321", "Jane Doe", "+14155550100")
ANA = AccountView(2, "30001111", "Ana Lopez", "+14155550122")
LUIS = AccountView(3, "30002222", "Luis Lopez", "+14155550122")
TWIN = AccountView(4, "40001111", "Tina Lopez", "+14155550122")


def engine(*accounts: AccountView, clock: float = 1000.0) -> Engine:
    return Engine(FLOW, CATALOG, MemoryDirectory(*accounts), AGENTS, "US", clock=lambda: clock)


def text(key: str, language: str = "en-US") -> str:
    return CATALOG.text(language, key)


def spoken(turn: Turn) -> list[str]:
    said: list[str] = []
    for instruction in turn.instructions:
        if isinstance(instruction, Say):
            said.append(instruction.text)
        elif isinstance(instruction, Gather):
            said.extend(p.text for p in instruction.prompts if isinstance(p, Say))
    return said


def gather(turn: Turn) -> Gather:
    found = [i for i in turn.instructions if isinstance(i, Gather)]
    assert len(found) == 1, turn.instructions
    return found[0]


def press(eng: Engine, state: CallState, digits: str | None) -> Turn:
    return eng.handle(state, Input(digits, state.step))


def test_start_greets_and_offers_languages_in_each_language() -> None:
    turn = engine().start("CA" + "1" * 32, "+14155550100")
    assert spoken(turn) == [
        text("welcome"),
        text("language_option"),
        text("language_option", "es-US"),
    ]
    assert gather(turn).num_digits == 1
    assert turn.state.caller == "+14155550100" and turn.state.node == "language"


@pytest.mark.parametrize(
    ("caller", "identity", "next_node", "accounts"),
    [
        ("+14155550100", "one_account", "last4", [JANE]),
        ("+14155550122", "several_accounts", "last4_family", [ANA, LUIS]),
        ("+14155550199", "unknown_number", "account_number", [JANE]),
        ("anonymous", "withheld", "account_number", [JANE]),
        ("+266696687", "withheld", "account_number", [JANE]),
    ],
)
def test_identify_caller_outcomes(
    caller: str, identity: str, next_node: str, accounts: list[AccountView]
) -> None:
    eng = engine(*accounts)
    turn = eng.start("CA" + "2" * 32, caller)
    turn = press(eng, turn.state, "1")
    assert turn.state.identity == identity
    assert turn.state.node == next_node


def at_digits(eng: Engine, caller: str) -> CallState:
    turn = eng.start("CA" + "3" * 32, caller)
    return press(eng, turn.state, "1").state


def test_last4_verifies_and_never_speaks_the_account_before() -> None:
    eng = engine(JANE)
    state = at_digits(eng, "+14155550100")
    assert state.verification == "none"
    turn = press(eng, state, "4321")
    assert turn.state.verification == "digits"
    assert turn.state.account_id == JANE.id
    assert turn.state.methods == [("account_digits", 1000.0)]
    assert spoken(turn) == [text("main_menu")]


def test_last4_picks_the_family_member_and_sends_twins_to_the_full_number() -> None:
    eng = engine(ANA, LUIS, TWIN)
    state = at_digits(eng, "+14155550122")
    assert press(eng, state, "2222").state.account_id == LUIS.id
    state = at_digits(eng, "+14155550122")
    turn = press(eng, state, "1111")  # Ana and Tina both end in 1111
    assert turn.state.account_id is None and turn.state.node == "account_number"


def test_wrong_digits_retry_with_clearer_prompt_then_unverified_transfer() -> None:
    eng = engine(JANE)
    state = at_digits(eng, "+14155550100")
    turn = press(eng, state, "0000")
    assert spoken(turn) == [text("enter_last4_retry")]
    turn = press(eng, turn.state, "1234")
    turn = press(eng, turn.state, "9999")
    assert turn.state.failure == "digits_failed"
    assert turn.state.transfer_reason == "verification_failed"
    assert [i for i in turn.instructions if isinstance(i, Transfer)] == [
        Transfer(AGENTS, turn.state.step)
    ]


@pytest.mark.parametrize("entry", ["12", "12345", "43a1", "#"])
def test_malformed_last4_costs_a_try(entry: str) -> None:
    eng = engine(JANE)
    state = at_digits(eng, "+14155550100")
    turn = press(eng, state, entry)
    assert turn.state.tries == {"last4": 1}
    assert turn.state.verification == "none"


def test_star_repeats_without_costing_a_try() -> None:
    eng = engine(JANE)
    state = at_digits(eng, "+14155550100")
    turn = press(eng, state, "*")
    assert spoken(turn) == [text("enter_last4")]
    assert turn.state.tries == {} and turn.state.node == "last4"


def test_silence_repeats_once_then_takes_the_safe_default() -> None:
    eng = engine(JANE)
    state = at_digits(eng, "+14155550100")
    turn = press(eng, state, None)
    assert spoken(turn) == [text("enter_last4")]
    turn = press(eng, turn.state, None)
    assert turn.state.node == "agent_unverified"
    assert turn.state.failure == "no_input"


def test_replayed_input_repeats_the_prompt_without_side_effects() -> None:
    eng = engine(JANE)
    state = at_digits(eng, "+14155550100")
    old_step = state.step
    turn = press(eng, state, "4321")
    lookups = eng.directory.lookups  # type: ignore[attr-defined]
    replay = eng.handle(turn.state, Input("4321", old_step))
    assert replay.state.node == "menu" and replay.state.step == turn.state.step
    assert spoken(replay) == [text("main_menu")]
    assert eng.directory.lookups == lookups  # type: ignore[attr-defined]


def test_full_account_number_for_unknown_caller_flags_caller_id_mismatch() -> None:
    eng = engine(JANE)
    state = at_digits(eng, "+14155550199")
    turn = press(eng, state, "10004321")
    assert turn.state.verification == "digits"
    assert turn.state.methods[-1][0] == "account_number"
    assert turn.state.flags == ["caller_id_mismatch"]


def test_menu_transfer_and_dial_outcomes() -> None:
    eng = engine(JANE)
    state = press(eng, at_digits(eng, "+14155550100"), "4321").state
    turn = press(eng, state, "1")
    assert spoken(turn) == [text("connecting")]
    assert turn.state.transfer_reason == "caller_request"
    done = eng.handle(turn.state, DialResult("completed", turn.state.step))
    assert done.instructions == [Hangup()] and done.state.ended
    busy = eng.handle(turn.state, DialResult("busy", turn.state.step))
    assert spoken(busy) == [text("agents_busy")] and busy.instructions[-1] == Hangup()


def test_first_name_is_spoken_only_at_full_verification() -> None:
    """{first_name} stays blank until digits *and* a code are verified (security.md)."""
    english = CATALOG.languages["en-US"]
    texts = {**english.texts, "main_menu": "Hello {first_name}. Press 1 for an agent."}
    catalog = Catalog({**CATALOG.languages, "en-US": replace(english, texts=texts)})
    eng = Engine(FLOW, catalog, MemoryDirectory(JANE), AGENTS, "US", clock=lambda: 1.0)
    state = eng.handle(eng.start("CA" + "5" * 32, JANE.phone).state, Input("1", 1)).state
    at_digits = eng.handle(state, Input("4321", state.step))
    assert spoken(at_digits) == ["Hello . Press 1 for an agent."]
    fully = at_digits.state
    fully.verify("code_sms", 2.0)
    assert spoken(eng.replay(fully)) == ["Hello Jane. Press 1 for an agent."]


def test_spanish_changes_every_later_prompt() -> None:
    eng = engine(JANE)
    turn = eng.start("CA" + "4" * 32, "+14155550100")
    turn = press(eng, turn.state, "2")
    assert spoken(turn) == [text("enter_last4", "es-US")]
    assert gather(turn).prompts[0].language == "es-US"  # type: ignore[union-attr]


def test_too_many_prompts_in_one_call_ends_with_an_agent() -> None:
    eng = engine(JANE)
    state = press(eng, at_digits(eng, "+14155550100"), "4321").state
    turn = Turn(state)
    for _ in range(FLOW.max_inputs):
        turn = press(eng, turn.state, "9")  # "repeat the menu", forever
    assert any(isinstance(i, Transfer) for i in turn.instructions)
    assert turn.state.failure == "input_limit"
    after = eng.handle(turn.state, DialResult("no-answer", turn.state.step))
    assert spoken(after) == [text("agents_unavailable")] and after.state.ended


def test_state_round_trips_through_json_and_stays_small() -> None:
    eng = engine(ANA, LUIS)
    state = press(eng, at_digits(eng, "+14155550122"), "2222").state
    encoded = state.to_json()
    assert CallState.from_json(encoded) == state
    assert len(encoded) < 2048
    assert "2222" not in encoded.replace(state.call_sid, "")  # keypad digits are never stored


def test_engine_imports_neither_flask_nor_twilio() -> None:
    code = (
        "import sys, ivr.flow.engine, ivr.flow.loader, ivr.whisper;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('flask', 'twilio')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_branch_and_collect_digits_nodes(tmp_path: Path) -> None:
    """The node kinds the default flow does not use yet still run as defined."""
    (tmp_path / "tiny.yaml").write_text(
        "name: tiny\nstart: who\nlanguages: [en-US]\nnodes:\n"
        "  who:\n    type: identify_caller\n    one_account: route\n    several_accounts: route\n"
        "    unknown_number: route\n    withheld: route\n"
        "  route:\n    type: branch\n    on: caller_id\n    cases: {withheld: bye}\n    default: ask\n"
        "  ask:\n    type: collect_digits\n    prompt: enter_account_number\n    save_as: reference\n"
        "    min_length: 3\n    max_length: 6\n    next: bye\n    no_input: bye\n    invalid: ask\n"
        "    too_many_tries: bye\n"
        "  bye:\n    type: hangup\n    prompt: goodbye\n"
    )
    flow = load_definitions(tmp_path, ROOT / "prompts", "US").flows["tiny"]
    eng = Engine(flow, CATALOG, MemoryDirectory(JANE), AGENTS, "US")
    withheld = eng.start("CA" + "6" * 32, "restricted")
    assert spoken(withheld) == [text("goodbye")] and withheld.state.ended
    turn = eng.start("CA" + "7" * 32, JANE.phone)
    assert gather(turn).num_digits is None and gather(turn).finish_on_key == "#"
    turn = press(eng, turn.state, "12")  # too short: a try
    assert turn.state.tries == {"ask": 1} and "reference" not in turn.state.slots
    turn = press(eng, turn.state, "12345")
    assert turn.state.slots == {"reference": "12345"} and turn.state.ended
