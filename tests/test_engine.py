"""The pure engine: (flow, state, event) → (state, instructions), no Flask or Twilio."""

from __future__ import annotations

import hmac
import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from ivr.flow.engine import AccountView, DialResult, Engine, Input, Turn
from ivr.flow.instructions import Gather, Hangup, Record, Say, Transfer
from ivr.flow.loader import load_definitions
from ivr.flow.model import Catalog, CheckAccountDigitsNode, TransferTarget
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


CODE = "482916"  # the one code MemoryVerifier accepts


class MemoryVerifier:
    """The engine's Verifier in memory: one known code, outcomes set by the test.

    `send_outcomes` are returned by successive sends (the last one repeats);
    `check_outcome` overrides what a check of the right code gives (expired, locked).
    Every send and check is recorded so tests see when the engine asks.
    """

    code_length = 6

    def __init__(
        self,
        *send_outcomes: str,
        check_outcome: str | None = None,
        clock: float = 1000.0,
    ):
        self.send_outcomes = list(send_outcomes or ["sent"])
        self.check_outcome = check_outcome
        self.clock = clock
        self.sent: list[tuple[int | None, str]] = []
        self.checks = 0

    def send_code(self, state: CallState, channel: str) -> str:
        self.sent.append((state.account_id, channel))
        outcome = (
            self.send_outcomes.pop(0) if len(self.send_outcomes) > 1 else self.send_outcomes[0]
        )
        if outcome == "sent":
            state.code_channel = channel
        return outcome

    def check_code(self, state: CallState, entered: str) -> str:
        self.checks += 1
        if not hmac.compare_digest(entered.encode(), CODE.encode()):
            return "wrong"
        if self.check_outcome is not None:
            return self.check_outcome
        state.verify(f"code_{state.code_channel or 'sms'}", self.clock)
        return "ok"


JANE = AccountView(1, "10004321", "Jane Doe", "+14155550100", "jane@example.com")
ANA = AccountView(2, "30001111", "Ana Lopez", "+14155550122")
LUIS = AccountView(3, "30002222", "Luis Lopez", "+14155550122")
TWIN = AccountView(4, "40001111", "Tina Lopez", "+14155550122")


def engine(
    *accounts: AccountView, clock: float = 1000.0, verifier: MemoryVerifier | None = None
) -> Engine:
    return Engine(
        FLOW,
        CATALOG,
        MemoryDirectory(*accounts),
        AGENTS,
        "US",
        clock=lambda: clock,
        verifier=verifier or MemoryVerifier(clock=clock),
    )


def verifier_of(eng: Engine) -> MemoryVerifier:
    assert isinstance(eng.verifier, MemoryVerifier)
    return eng.verifier


def text(key: str, language: str = "en-US", **values: str) -> str:
    raw = CATALOG.text(language, key)
    return raw.format(**values) if values else raw


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


def at_code(eng: Engine, caller: str = "+14155550100", digits: str = "4321") -> CallState:
    """A new call that passed the account digits and now waits for the code."""
    state = press(eng, at_digits(eng, caller), digits).state
    assert state.node == "enter_code", state.node
    return state


def test_last4_verifies_and_never_speaks_the_account_before() -> None:
    eng = engine(JANE)
    state = at_digits(eng, "+14155550100")
    assert state.verification == "none"
    turn = press(eng, state, "4321")
    assert turn.state.verification == "digits"
    assert turn.state.account_id == JANE.id
    assert turn.state.methods == [("account_digits", 1000.0)]
    assert spoken(turn) == [text("code_sent_sms"), text("enter_code")]
    assert verifier_of(eng).sent == [(JANE.id, "sms")]
    assert not any("Jane" in said for said in spoken(turn))
    turn = press(eng, turn.state, CODE)
    assert turn.state.verification == "code"
    assert turn.state.methods == [("account_digits", 1000.0), ("code_sms", 1000.0)]
    assert spoken(turn) == [text("main_menu", first_name="Jane")]


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
    assert replay.state.node == "enter_code" and replay.state.step == turn.state.step
    assert spoken(replay) == [text("enter_code")]
    assert eng.directory.lookups == lookups  # type: ignore[attr-defined]
    assert verifier_of(eng).sent == [(JANE.id, "sms")]  # no second code
    code_step = turn.state.step
    turn = press(eng, turn.state, CODE)
    replay = eng.handle(turn.state, Input(CODE, code_step))
    assert replay.state.node == "menu" and replay.state == turn.state
    assert verifier_of(eng).checks == 1  # the replayed code was not checked again


def test_code_prompt_collects_the_code_length_ended_by_pound() -> None:
    eng = engine(JANE)
    turn = press(eng, at_digits(eng, "+14155550100"), "4321")
    code_gather = gather(turn)
    assert code_gather.num_digits == MemoryVerifier.code_length
    assert code_gather.finish_on_key == "#" and code_gather.timeout == 10


def test_wrong_code_retries_then_unverified_transfer() -> None:
    eng = engine(JANE)
    turn = press(eng, at_code(eng), "000000")
    assert spoken(turn) == [text("enter_code_retry")]
    turn = press(eng, turn.state, "111111")
    assert spoken(turn) == [text("enter_code_retry")]
    turn = press(eng, turn.state, "222222")
    assert spoken(turn) == [text("connecting_unverified")]
    assert turn.state.failure == "code_failed"
    assert turn.state.verification == "digits"  # the digits passed; the code never did
    assert turn.state.transfer_reason == "verification_failed"
    assert [i for i in turn.instructions if isinstance(i, Transfer)] == [
        Transfer(AGENTS, turn.state.step)
    ]
    assert verifier_of(eng).checks == 3


@pytest.mark.parametrize(
    ("key", "channel", "prompt", "code_prompt"),
    [
        ("1", "sms", "code_sent_sms", "enter_code"),
        ("2", "voice", "code_calling", "enter_voice_code"),
        ("3", "email", "code_sent_email", "enter_code"),
    ],
)
def test_code_prompt_keys_send_a_new_code(
    key: str, channel: str, prompt: str, code_prompt: str
) -> None:
    """1 sends a new code by text, 2 by a call to the phone on file, 3 by email; the new
    code then verifies by that channel."""
    eng = engine(JANE)
    state = press(eng, at_code(eng), "000000").state  # one wrong try first
    turn = press(eng, state, key)
    assert spoken(turn) == [text(prompt), text(code_prompt)]
    assert verifier_of(eng).sent == [(JANE.id, "sms"), (JANE.id, channel)]
    assert verifier_of(eng).checks == 1  # a single key is a choice, never checked as a code
    turn = press(eng, turn.state, CODE)
    assert turn.state.verification == "code"
    assert turn.state.methods[-1][0] == f"code_{channel}"


@pytest.mark.parametrize(
    ("outcomes", "heard", "node", "failure", "channels"),
    [
        (("rate_limited",), ["connecting_unverified"], "agent_unverified", "code_rate_limited", 1),
        (("locked",), ["connecting_unverified"], "agent_unverified", "locked", 1),
        (("failed",), ["code_send_failed", "code_trouble"], "code_trouble", "sms_failed", 1),
        (("no_channel", "sent"), ["code_sent_email", "enter_code"], "enter_code", None, 2),
        (("no_channel",), ["no_email_on_file", "code_trouble"], "code_trouble", None, 2),
    ],
    ids=["rate-limited", "locked", "sms-failed", "no-phone-so-email", "no-channel-at-all"],
)
def test_send_code_outcomes(
    outcomes: tuple[str, ...], heard: list[str], node: str, failure: str | None, channels: int
) -> None:
    """Each way sending can end takes its own exit, and records why for the agent."""
    eng = engine(JANE, verifier=MemoryVerifier(*outcomes))
    turn = press(eng, at_digits(eng, JANE.phone), "4321")
    assert spoken(turn) == [text(key) for key in heard]
    assert turn.state.node == node
    assert turn.state.failure == failure
    assert turn.state.verification == "digits"
    assert [channel for _, channel in verifier_of(eng).sent] == ["sms", "email"][:channels]


def test_expired_code_says_so_and_sends_a_new_one() -> None:
    eng = engine(JANE, verifier=MemoryVerifier(check_outcome="expired"))
    turn = press(eng, at_code(eng), CODE)
    assert spoken(turn) == [text("code_expired"), text("code_sent_sms"), text("enter_code")]
    assert verifier_of(eng).sent == [(JANE.id, "sms"), (JANE.id, "sms")]
    assert turn.state.verification == "digits" and turn.state.node == "enter_code"


def test_locked_at_the_code_check_goes_to_an_agent_unverified() -> None:
    eng = engine(JANE, verifier=MemoryVerifier(check_outcome="locked"))
    turn = press(eng, at_code(eng), CODE)
    assert spoken(turn) == [text("connecting_unverified")]
    assert turn.state.failure == "locked" and turn.state.verification == "digits"
    assert any(isinstance(i, Transfer) for i in turn.instructions)


def test_without_a_verifier_nobody_reaches_the_menu() -> None:
    """An engine with no way to send codes offers help, never the fully verified menu."""
    eng = Engine(FLOW, CATALOG, MemoryDirectory(JANE), AGENTS, "US", clock=lambda: 1.0)
    turn = press(eng, at_digits(eng, JANE.phone), "4321")
    assert spoken(turn) == [text("no_email_on_file"), text("code_trouble")]
    turn = press(eng, turn.state, "1")  # try a text message again
    assert turn.state.node == "code_trouble" and turn.state.verification == "digits"


def test_full_account_number_for_unknown_caller_flags_caller_id_mismatch() -> None:
    eng = engine(JANE)
    state = at_digits(eng, "+14155550199")
    turn = press(eng, state, "10004321")
    assert turn.state.verification == "digits"
    assert turn.state.methods[-1][0] == "account_number"
    assert turn.state.flags == ["caller_id_mismatch"]


def test_menu_transfer_and_dial_outcomes() -> None:
    eng = engine(JANE)
    state = press(eng, at_code(eng), CODE).state
    turn = press(eng, state, "2")
    assert spoken(turn) == [text("connecting")]
    assert turn.state.transfer_reason == "caller_request"
    done = eng.handle(turn.state, DialResult("completed", turn.state.step))
    assert done.instructions == [Hangup()] and done.state.ended
    busy = eng.handle(turn.state, DialResult("busy", turn.state.step))
    # Nobody answered: never a bare goodbye, the caller may leave a message.
    assert spoken(busy) == [text("agents_busy"), text("voicemail_prompt")]
    assert isinstance(busy.instructions[-1], Record) and busy.state.node == "voicemail"
    assert not busy.state.ended


def test_first_name_is_spoken_only_at_full_verification() -> None:
    """{first_name} stays blank until digits *and* a code are verified (security.md)."""
    english = CATALOG.languages["en-US"]
    texts = {**english.texts, "main_menu": "Hello {first_name}. Press 2 for an agent."}
    catalog = Catalog({**CATALOG.languages, "en-US": replace(english, texts=texts)})
    eng = Engine(
        FLOW,
        catalog,
        MemoryDirectory(JANE),
        AGENTS,
        "US",
        clock=lambda: 1.0,
        verifier=MemoryVerifier(clock=1.0),
    )
    state = eng.handle(eng.start("CA" + "5" * 32, JANE.phone).state, Input("1", 1)).state
    at_digits = eng.handle(state, Input("4321", state.step)).state
    assert at_digits.verification == "digits" and at_digits.node == "enter_code"
    digits_only = replace(at_digits, node="menu")  # as if a flow offered the menu after digits
    assert spoken(eng.replay(digits_only)) == ["Hello . Press 2 for an agent."]
    fully = eng.handle(at_digits, Input(CODE, at_digits.step))
    assert fully.state.verification == "code"
    assert spoken(fully) == ["Hello Jane. Press 2 for an agent."]


def test_spanish_changes_every_later_prompt() -> None:
    eng = engine(JANE)
    turn = eng.start("CA" + "4" * 32, "+14155550100")
    turn = press(eng, turn.state, "2")
    assert spoken(turn) == [text("enter_last4", "es-US")]
    assert gather(turn).prompts[0].language == "es-US"  # type: ignore[union-attr]


def test_too_many_prompts_in_one_call_ends_with_an_agent() -> None:
    eng = engine(JANE)
    state = press(eng, at_code(eng), CODE).state
    turn = Turn(state)
    for _ in range(FLOW.max_inputs):
        turn = press(eng, turn.state, "9")  # "repeat the menu", forever
    assert any(isinstance(i, Transfer) for i in turn.instructions)
    assert turn.state.failure == "input_limit"
    after = eng.handle(turn.state, DialResult("no-answer", turn.state.step))
    assert spoken(after) == [text("agents_unavailable")] and after.state.ended


def test_state_round_trips_through_json_and_stays_small() -> None:
    eng = engine(ANA, LUIS)
    for state in (
        at_code(eng, "+14155550122", "2222"),
        press(eng, at_code(eng, "+14155550122", "2222"), CODE).state,
    ):
        encoded = state.to_json()
        assert CallState.from_json(encoded) == state
        assert len(encoded) < 2048
        rest = encoded.replace(state.call_sid, "")
        assert "2222" not in rest  # keypad digits are never stored…
        assert CODE not in rest  # …and neither is a code


def test_a_state_with_a_field_this_release_does_not_know_still_loads() -> None:
    """A call saved by a newer release (rolling deploy, rollback) carries on here."""
    state = CallState("CA" + "7" * 32, "support", "v1", "en-US", "main_menu", 1.0, step=3)
    data = json.loads(state.to_json())
    data["field_from_a_later_release"] = True

    assert CallState.from_json(json.dumps(data)) == state


def test_engine_imports_neither_flask_nor_twilio() -> None:
    code = (
        "import sys, ivr.flow.engine, ivr.flow.loader, ivr.agent.whisper;"
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
    turn = press(eng, turn.state, "12\u00b3")  # "123" with a superscript 3: not keypad digits
    assert turn.state.tries == {"ask": 2} and "reference" not in turn.state.slots
    turn = press(eng, turn.state, "12345")
    assert turn.state.slots == {"reference": "12345"} and turn.state.ended


# --- wrong account digits counted across calls ---------------------------------------------


class MemoryDigitLimits:
    """The engine's DigitLimits in memory: counts per account and per calling number."""

    def __init__(self, max_failures: int = 3):
        self.max_failures = max_failures
        self.accounts: dict[int, int] = {}
        self.callers: dict[str | None, int] = {}
        self.failures: list[tuple[str, list[int], str | None, str]] = []

    def locked(self, account_ids: Sequence[int], caller: str | None) -> bool:
        counts = [self.accounts.get(i, 0) for i in account_ids]
        if caller is not None:
            counts.append(self.callers.get(caller, 0))
        return any(count >= self.max_failures for count in counts)

    def failed(
        self, call_sid: str, account_ids: Sequence[int], caller: str | None, mode: str
    ) -> bool:
        self.failures.append((call_sid, list(account_ids), caller, mode))
        for i in account_ids:
            self.accounts[i] = self.accounts.get(i, 0) + 1
        if not account_ids and caller is not None:
            self.callers[caller] = self.callers.get(caller, 0) + 1
        return self.locked(account_ids, None if account_ids else caller)

    def attempt(self, account_ids: Sequence[int], caller: str | None) -> MemoryAttempt:
        return MemoryAttempt(self, list(account_ids), caller)


class MemoryAttempt:
    """A reserved entry of MemoryDigitLimits: counted only once found wrong."""

    def __init__(self, limits: MemoryDigitLimits, account_ids: list[int], caller: str | None):
        self.limits, self.account_ids, self.caller = limits, account_ids, caller
        self.refused = limits.locked(account_ids, None if account_ids else caller)

    def matched(self) -> None:
        pass

    def wrong(self, call_sid: str, mode: str) -> bool:
        return self.limits.failed(call_sid, self.account_ids, self.caller, mode)


def limited(*accounts: AccountView, limits: MemoryDigitLimits) -> Engine:
    eng = engine(*accounts)
    eng.digit_limits = limits
    return eng


def test_wrong_digits_count_across_calls_and_lock_the_next_call_out() -> None:
    limits = MemoryDigitLimits(max_failures=4)
    eng = limited(JANE, limits=limits)
    turn = press(eng, press(eng, at_digits(eng, "+14155550100"), "0000").state, "1111")
    turn = press(eng, turn.state, "2222")  # the third try of the call: an agent
    assert turn.state.failure == "digits_failed" and limits.accounts == {JANE.id: 3}
    state = at_digits(eng, "+14155550100")
    assert state.node == "last4"  # 3 of 4: still asked
    turn = press(eng, state, "3333")  # the 4th wrong entry: on to an agent at once
    assert turn.state.failure == "digits_locked" and turn.state.flags == ["digits_locked"]
    assert turn.state.node == "agent_unverified" and turn.state.transfer_reason
    assert spoken(turn) == [text("connecting_unverified")]
    # The next call is not asked for digits at all.
    turn = eng.start("CA" + "4" * 32, "+14155550100")
    turn = press(eng, turn.state, "1")
    assert turn.state.node == "agent_unverified"
    assert spoken(turn) == [text("connecting_unverified")]
    assert not any(isinstance(i, Gather) for i in turn.instructions)
    assert turn.state.verification == "none" and turn.state.flags == ["digits_locked"]
    assert len(limits.failures) == 4 and all(f[1] == [JANE.id] for f in limits.failures)


def test_malformed_entries_and_star_are_not_counted() -> None:
    limits = MemoryDigitLimits()
    eng = limited(JANE, limits=limits)
    turn = press(eng, at_digits(eng, "+14155550100"), "12")
    turn = press(eng, turn.state, "*")
    turn = press(eng, turn.state, "4²21")
    assert limits.failures == [] and turn.state.tries == {"last4": 2}


def test_a_family_line_counts_every_candidate_and_any_lock_stops_the_asking() -> None:
    limits = MemoryDigitLimits()
    eng = limited(ANA, LUIS, limits=limits)
    press(eng, at_digits(eng, "+14155550122"), "9999")
    assert limits.accounts == {ANA.id: 1, LUIS.id: 1}
    assert limits.failures[0][3] == "last4"
    limits.accounts[LUIS.id] = 3  # Luis's digits were guessed at from elsewhere
    state = at_digits(eng, "+14155550122")
    assert state.node == "agent_unverified" and state.failure == "digits_locked"


def test_a_lock_reached_on_another_call_meanwhile_stops_the_entry() -> None:
    """A call already at the prompt when the limit is reached: its entry is not compared."""
    limits = MemoryDigitLimits()
    eng = limited(JANE, limits=limits)
    state = at_digits(eng, "+14155550100")
    limits.accounts[JANE.id] = 3
    turn = press(eng, state, "4321")  # the right digits, too late
    assert turn.state.verification == "none" and turn.state.account_id is None
    assert turn.state.failure == "digits_locked"
    assert verifier_of(eng).sent == []


def test_full_number_counts_against_the_calling_number_and_refuses_a_locked_account() -> None:
    limits = MemoryDigitLimits(max_failures=2)
    eng = limited(JANE, limits=limits)
    state = at_digits(eng, "+14155550199")  # not on file: the full account number
    turn = press(eng, state, "99999999")
    assert limits.callers == {"+14155550199": 1} and limits.failures[0][1:] == (
        [],
        "+14155550199",
        "account_number",
    )
    turn = press(eng, turn.state, "88888888")
    assert turn.state.failure == "digits_locked" and turn.state.node == "agent_unverified"
    assert at_digits(eng, "+14155550199").node == "agent_unverified"  # not asked again
    assert at_digits(eng, "+14155550188").node == "account_number"  # another number is
    # A withheld caller has nothing to count against: audited, never locked.
    turn = press(eng, at_digits(eng, "anonymous"), "77777777")
    assert limits.failures[-1][2] is None and turn.state.node == "account_number"
    # The right number of a locked account is refused as well.
    limits.accounts[JANE.id] = 2
    turn = press(eng, at_digits(eng, "anonymous"), "10004321")
    assert turn.state.account_id is None and turn.state.failure == "digits_locked"


def test_the_locked_exit_defaults_to_the_too_many_tries_route() -> None:
    node = FLOW.nodes["last4"]
    assert isinstance(node, CheckAccountDigitsNode) and node.locked == "agent_unverified"
    bare = replace(node, locked=None, too_many_tries="goodbye")
    assert bare.locked_exit == "goodbye"
    flow = replace(FLOW, nodes={**FLOW.nodes, "last4": bare})
    eng = Engine(
        flow,
        CATALOG,
        MemoryDirectory(JANE),
        AGENTS,
        "US",
        clock=lambda: 1000.0,
        verifier=MemoryVerifier(),
        digit_limits=MemoryDigitLimits(max_failures=1),
    )
    turn = press(eng, at_digits(eng, "+14155550100"), "0000")
    assert turn.state.node == "goodbye" and turn.state.ended


def test_timeline_steps_are_in_time_order_even_when_the_input_is_noted_last() -> None:
    """An input is noted after its handler's steps (a code check) and moved before them:
    it never carries a later time than the steps it precedes (a clock that ticks on)."""
    ticks = iter(range(1_000_000))
    eng = engine(JANE)
    eng.clock = lambda: 1000.0 + next(ticks) / 1000  # one millisecond per reading
    state = at_code(eng)
    turn = press(eng, state, CODE)

    times = [item["at"] for item in turn.steps]
    assert times == sorted(times), turn.steps
    assert [item["event"] for item in turn.steps][:2] == ["input", "code_checked"]
