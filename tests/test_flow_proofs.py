"""The validator's path proofs: number-change steps only after full verification, account
facts only spoken after it, no part of a flow the call cannot leave — each refusal
naming the offending path."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.errors import DefinitionProblem
from ivr.flow.loader import check_definitions, load_definitions
from ivr.flow.proofs import prove_flow

ROOT = Path(__file__).resolve().parent.parent
FLOWS = ROOT / "flows"
PROMPTS = ROOT / "prompts"

# A small flow that verifies properly: digits, a code, then a menu that greets the
# caller by name and offers the number change. Each test edits it one way.
TRUNK = """\
name: tiny
start: welcome
languages: [en-US, es-US]
nodes:
  welcome:
    type: say
    prompt: welcome
    next: digits
  digits:
    type: check_account_digits
    mode: full
    prompt: enter_account_number
    ok: send
    no_input: agent
    invalid: digits
    too_many_tries: agent
  send:
    type: send_code
    channel: sms
    sent: code
    no_channel: agent
    rate_limited: agent
    failed: agent
  code:
    type: check_code
    prompt: enter_code
    ok: menu
    expired: agent
    locked: agent
    no_input: agent
    invalid: code
    too_many_tries: agent
  menu:
    type: menu
    prompt: main_menu
    options:
      1: new_number
      2: agent
    no_input: agent
    invalid: menu
    too_many_tries: agent
  new_number:
    type: collect_new_number
    prompt: enter_new_number
    ok: confirm
    taken: agent
    needs_code: agent
    no_input: agent
    invalid: new_number
    too_many_tries: agent
  confirm:
    type: menu
    prompt: confirm_new_number
    options:
      1: callback
    no_input: agent
    invalid: confirm
    too_many_tries: agent
  callback:
    type: start_callback
    read_code_prompt: read_code_new_number
    calling: agent
    code_read: goodbye
    limited: agent
    taken: agent
    failed: agent
    needs_code: agent
  agent:
    type: transfer
    reason: caller_request
    unanswered: goodbye
  goodbye:
    type: hangup
    prompt: goodbye
"""

# A menu in front of the account digits, offering a way round them (key 2).
SHORTCUT = """\
  shortcut:
    type: menu
    prompt: {prompt}
    options:
      1: digits
      2: {target}
    no_input: agent
    invalid: shortcut
    too_many_tries: agent
"""


def flow_problems(tmp_path: Path, text: str) -> list[DefinitionProblem]:
    """Everything the loader reports about `text` as flows/tiny.yaml."""
    path = tmp_path / "tiny.yaml"
    path.write_text(text)
    _, problems = check_definitions(tmp_path, PROMPTS, "US", only=[path])
    return problems


def edit(*changes: tuple[str, str]) -> str:
    text = TRUNK
    for old, new in changes:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def with_shortcut(target: str, prompt: str = "main_menu_retry", *extra: str) -> str:
    """The trunk, entered through a shortcut menu whose key 2 goes to `target`."""
    return edit(
        ("    next: digits\n", "    next: shortcut\n"),
        (
            "  digits:\n",
            SHORTCUT.format(prompt=prompt, target=target) + "".join(extra) + "  digits:\n",
        ),
    )


def messages(problems: list[DefinitionProblem]) -> str:
    return "\n".join(map(str, problems))


def test_the_trunk_passes(tmp_path: Path) -> None:
    """The base of every other test: its refusals come from the edit alone."""
    assert flow_problems(tmp_path, TRUNK) == []


def test_a_menu_key_straight_to_the_new_number_is_refused(tmp_path: Path) -> None:
    problems = flow_problems(tmp_path, with_shortcut("new_number"))
    assert len(problems) == 1, messages(problems)
    problem = problems[0]
    assert (problem.where, problem.field) == ("new_number", "")
    assert problem.message.endswith("before any verification: welcome → shortcut[2] → new_number")
    assert "account-digits check" in problem.message
    lines = (tmp_path / "tiny.yaml").read_text().splitlines()
    assert problem.line is not None and lines[problem.line - 1] == "  new_number:"


def test_the_account_digits_alone_do_not_reach_the_number_change(tmp_path: Path) -> None:
    after_digits = (
        "  after_digits:\n    type: menu\n    prompt: main_menu_retry\n"
        "    options:\n      1: send\n      2: callback\n"
        "    no_input: agent\n    invalid: after_digits\n    too_many_tries: agent\n"
    )
    text = edit(
        (
            "    mode: full\n    prompt: enter_account_number\n    ok: send\n",
            "    mode: full\n    prompt: enter_account_number\n    ok: after_digits\n",
        ),
        ("  send:\n", after_digits + "  send:\n"),
    )
    problems = flow_problems(tmp_path, text)
    assert [(p.where, p.field) for p in problems] == [("callback", "")], messages(problems)
    assert problems[0].message.endswith(
        "after the account digits, before any one-time code:"
        " welcome → digits[ok] → after_digits[2] → callback"
    )


def guard(on: str, cases: str, default: str) -> str:
    return f"  guard:\n    type: branch\n    on: {on}\n    cases: {cases}\n    default: {default}\n"


@pytest.mark.parametrize(
    ("branch", "path"),
    [
        # Guards: the engine only takes the case to the number change once verified.
        (guard("verification", "{code: new_number}", "agent"), None),
        (guard("verification", "{none: agent, digits: agent}", "new_number"), None),
        (guard("fresh_code", "{yes: new_number}", "agent"), None),
        # Not guards: the unverified caller's own case, or a fact that proves nothing.
        (
            guard("verification", "{code: agent}", "new_number"),
            "welcome → shortcut[2] → guard[default] → new_number",
        ),
        (
            guard("verification", "{none: new_number}", "agent"),
            "welcome → shortcut[2] → guard[none] → new_number",
        ),
        (
            guard("identity", "{one_account: new_number}", "agent"),
            "welcome → shortcut[2] → guard[one_account] → new_number",
        ),
        (
            guard("fresh_code", "{no: new_number}", "agent"),
            "welcome → shortcut[2] → guard[no] → new_number",
        ),
    ],
)
def test_a_branch_guards_only_with_the_facts_its_case_implies(
    tmp_path: Path, branch: str, path: str | None
) -> None:
    problems = flow_problems(tmp_path, with_shortcut("guard", "main_menu_retry", branch))
    if path is None:
        assert problems == []
    else:
        assert len(problems) == 1, messages(problems)
        assert problems[0].where == "new_number"
        assert problems[0].message.endswith(f"before any verification: {path}")


def test_a_guard_after_the_digits_sees_the_digits_level(tmp_path: Path) -> None:
    """A branch reached after the digits takes the `digits` case, not `none`."""
    text = edit(
        ("    ok: send\n    no_input: agent\n", "    ok: guard\n    no_input: agent\n"),
        (
            "  send:\n",
            guard("verification", "{none: new_number, digits: send}", "agent") + "  send:\n",
        ),
    )
    assert flow_problems(tmp_path, text) == []
    text = text.replace("{none: new_number, digits: send}", "{none: send, digits: new_number}")
    problems = flow_problems(tmp_path, text)
    assert [p.where for p in problems] == ["new_number"], messages(problems)
    assert problems[0].message.endswith("welcome → digits[ok] → guard[digits] → new_number")


def test_two_menus_leading_only_to_each_other_are_a_trap(tmp_path: Path) -> None:
    loop = (
        "  loop_a:\n    type: menu\n    prompt: main_menu_retry\n    options:\n      1: loop_b\n"
        "    no_input: loop_b\n    invalid: loop_a\n    too_many_tries: loop_b\n"
        "  loop_b:\n    type: menu\n    prompt: change_trouble\n    options:\n      1: loop_a\n"
        "    no_input: loop_a\n    invalid: loop_b\n    too_many_tries: loop_a\n"
    )
    text = edit(
        ("      2: agent\n", "      2: agent\n      3: loop_a\n"),
        ("  agent:\n", loop + "  agent:\n"),
    )
    problems = flow_problems(tmp_path, text)
    assert [(p.where, p.field) for p in problems] == [("loop_a", "")], messages(problems)
    message = problems[0].message
    assert "never to a transfer or hang-up: loop_a[1] → loop_b[1] → loop_a;" in message
    assert message.endswith(
        "reached after full verification by welcome → digits[ok] → send[sent] → code[ok]"
        " → menu[3] → loop_a"
    )
    # One way out of the pair is enough.
    assert (
        flow_problems(
            tmp_path, text.replace("      1: loop_a\n", "      1: loop_a\n      2: agent\n")
        )
        == []
    )


def test_a_trap_only_for_the_unverified_caller_is_found(tmp_path: Path) -> None:
    """The way out of `wait` is a branch only a verified caller passes."""
    wait = (
        "  wait:\n    type: menu\n    prompt: main_menu_retry\n    options:\n      1: gate\n"
        "    no_input: gate\n    invalid: wait\n    too_many_tries: gate\n"
        + guard("verification", "{code: agent}", "wait")
    )
    problems = flow_problems(
        tmp_path, with_shortcut("wait", "main_menu_retry", wait).replace("guard", "gate")
    )
    assert [p.where for p in problems] == ["wait"], messages(problems)
    assert "wait[1] → gate[default] → wait;" in problems[0].message
    assert problems[0].message.endswith("before any verification by welcome → shortcut[2] → wait")


def test_account_facts_before_full_verification_are_refused(tmp_path: Path) -> None:
    """main_menu says {first_name}: on a menu before the digits and the code, it leaks."""
    problems = flow_problems(tmp_path, with_shortcut("agent", "main_menu"))
    assert [(p.where, p.field) for p in problems] == [("shortcut", "prompt")], messages(problems)
    message = problems[0].message
    assert message.startswith("prompt 'main_menu' uses {first_name} (en-US, es-US)")
    assert message.endswith("before any verification: welcome → shortcut")
    lines = (tmp_path / "tiny.yaml").read_text().splitlines()
    assert problems[0].line is not None and lines[problems[0].line - 1] == "    prompt: main_menu"


def test_account_facts_after_the_digits_only_are_refused(tmp_path: Path) -> None:
    """The code check left by `ok` straight to the menu that greets by name: after the digits
    only, through a retry prompt."""
    text = edit(
        ("    prompt: enter_code\n", "    prompt: enter_code\n    retry_prompt: main_menu\n"),
    )
    problems = flow_problems(tmp_path, text)
    assert [(p.where, p.field) for p in problems] == [("code", "retry_prompt")], messages(problems)
    assert problems[0].message.endswith(
        "after the account digits, before any one-time code: welcome → digits[ok] → send[sent] → code"
    )


def test_proofs_wait_for_an_otherwise_valid_flow(tmp_path: Path) -> None:
    """A bypass in a flow with a broken reference: only the broken reference is reported."""
    text = with_shortcut("new_number").replace(
        "    unanswered: goodbye\n", "    unanswered: gooodbye\n"
    )
    problems = flow_problems(tmp_path, text)
    assert [(p.where, p.field) for p in problems] == [("agent", "unanswered")], messages(problems)


def test_the_default_flow_passes_every_proof() -> None:
    definitions = load_definitions(FLOWS, PROMPTS, "US")
    flow = definitions.flows["support"]
    assert len(flow.nodes) == 48
    assert prove_flow(flow.file, flow.start, flow.nodes, flow.languages, definitions.catalog) == []


UNTIL_DIGITS = "hours[open] → welcome → language → identify[one_account] → last4[ok]"
DIGITS_ONLY = "after the account digits, before any one-time code: "


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        # Skipping the code: the menu would greet by name after the digits alone (the
        # number change itself still re-verifies through change_number's needs_code).
        (
            "    ok: send_sms\n    ambiguous: account_number         # two",
            "    ok: menu\n    ambiguous: account_number         # two",
            [
                # ...and the verified menu's agent transfer would offer a call-back.
                (
                    "agent_verified",
                    "offer_callback_after",
                    f"{DIGITS_ONLY}{UNTIL_DIGITS} → menu[2] → agent_verified",
                ),
                ("menu", "prompt", f"{DIGITS_ONLY}{UNTIL_DIGITS} → menu"),
            ],
        ),
        # The agent key of the code-trouble menu rewired to the new number: a bypass, and
        # through its no_input exit the menu that greets by name.
        (
            "      4: agent_unverified\n",
            "      4: new_number\n",
            [
                (
                    "new_number",
                    "",
                    f"{DIGITS_ONLY}{UNTIL_DIGITS} → send_sms[failed] → code_send_failed"
                    " → code_trouble[4] → new_number",
                ),
                (
                    "agent_verified",
                    "offer_callback_after",
                    f"{DIGITS_ONLY}{UNTIL_DIGITS} → send_sms[failed] → code_send_failed"
                    " → code_trouble[4] → new_number[no_input] → menu[2] → agent_verified",
                ),
                (
                    "menu",
                    "prompt",
                    f"{DIGITS_ONLY}{UNTIL_DIGITS} → send_sms[failed] → code_send_failed"
                    " → code_trouble[4] → new_number[no_input] → menu",
                ),
            ],
        ),
    ],
)
def test_a_bypass_edited_into_the_default_flow_is_refused(
    tmp_path: Path, old: str, new: str, expected: list[tuple[str, str, str]]
) -> None:
    text = (FLOWS / "support.yaml").read_text()
    assert old in text
    path = tmp_path / "support.yaml"
    path.write_text(text.replace(old, new, 1))
    _, problems = check_definitions(tmp_path, PROMPTS, "US", only=[path])
    assert [(p.where, p.field) for p in problems] == [e[:2] for e in expected], messages(problems)
    for problem, (_, _, ending) in zip(problems, expected, strict=True):
        assert problem.message.endswith(ending)
