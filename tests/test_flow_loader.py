"""Loading and validating flow and prompt files: every problem is found and located."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ivr.errors import InvalidDefinition
from ivr.flow.loader import check_definitions, load_definitions
from ivr.flow.model import CheckAccountDigitsNode, MenuNode

ROOT = Path(__file__).resolve().parent.parent
FLOWS = ROOT / "flows"
PROMPTS = ROOT / "prompts"

# Each edit breaks the default flow in one way; the validator must report every one,
# naming the node (or top-level key) and the field, all in a single run.
BREAKAGES = [
    # (text to replace, replacement, node, field, words in the message)
    ("max_inputs: 40\n", "max_inputs: 40\ntitle: Support\n", "", "title", "unknown key; allowed"),
    (
        "  welcome:\n    type: say\n",
        "  welcome:\n    type: play_music\n",
        "welcome",
        "type",
        "unknown node type 'play_music'",
    ),
    (
        "    prompt: enter_last4_family\n",
        "    promt: enter_last4_family\n",
        "last4_family",
        "promt",
        "unknown key; allowed",
    ),
    (
        "    ok: send_sms\n    ambiguous: account_number         # two",
        "    ok: menuu\n    ambiguous: account_number         # two",
        "last4",
        "ok",
        "goes to 'menuu'",
    ),
    (
        "    prompt: main_menu                # keys or words",
        "    prompt: main_menu_v2             # keys or words",
        "menu",
        "prompt",
        "prompt 'main_menu_v2' is missing in: en-US, es-US",
    ),
    (
        "      2: es-US\n",
        "      2: es-US\n      3: fr-FR\n",
        "language",
        "options.3",
        "'fr-FR' is not one of the flow's languages",
    ),
    (
        "      9: menu\n",
        "      9: menu\n      12: goodbye\n",
        "menu",
        "options",
        "keys must be single keypad digits",
    ),
    ("    timeout: 8\n", "    timeout: 99\n", "account_number", "timeout", "must be from 1 to 30"),
    (
        "    mode: full\n",
        "    mode: everything\n",
        "account_number",
        "mode",
        "'everything' is not one of: full, last4",
    ),
    (
        "    reason: caller_request\n",
        "    reason: caller_request\n    target: +1 nope\n",
        "agent_verified",
        "target",
        "not a phone number",
    ),
    # A TaskRouter workflow SID that is not one; hold music where nobody holds.
    (
        "    reason: verification_failed\n",
        "    reason: verification_failed\n    target: workflow:WW12\n",
        "agent_unverified",
        "target",
        "not a TaskRouter Workflow SID",
    ),
    (
        "    reason: no_input\n",
        "    reason: no_input\n    hold_music: https://media.example.test/hold.mp3\n",
        "agent_no_response",
        "hold_music",
        "needs the node's own queue: or workflow: target",
    ),
    # An input node without its no-input exit.
    (
        "    invalid: last4_family\n    no_input: agent_unverified\n",
        "    invalid: last4_family\n",
        "last4_family",
        "no_input",
        "every input node needs no_input, invalid and too_many_tries",
    ),
    # A node nothing leads to.
    ("  goodbye:\n", "  orphan:\n    type: hangup\n\n  goodbye:\n", "orphan", "", "unreachable"),
    # Two say nodes bouncing between each other: a loop that never waits for the caller.
    (
        "  goodbye:\n",
        "  spin_a:\n    type: say\n    prompt: goodbye\n    next: spin_b\n\n"
        "  spin_b:\n    type: say\n    prompt: goodbye\n    next: spin_a\n\n  goodbye:\n",
        "spin_a",
        "",
        "loop that never asks the caller",
    ),
    ("      3: goodbye\n", "      3: spin_a\n", "menu", "", ""),  # makes the loop reachable
    # The code step: an unknown channel, a broken exit, and a message text used as a prompt.
    ("    channel: sms\n", "    channel: fax\n", "send_sms", "channel", "'fax' is not one of"),
    (
        "    expired: code_expired\n",
        "    expired: code_expird\n",
        "enter_code",
        "expired",
        "goes to 'code_expird'",
    ),
    (
        "    prompt: code_sent_email\n",
        "    prompt: message_code_email\n",
        "send_email",
        "prompt",
        "is a message text",
    ),
    (
        "    too_many_tries: agent_menu_failed\n",
        "    too_many_tries: menu\n",
        "menu",
        "too_many_tries",
        "must lead away from the node",
    ),
]


def broken_copy(tmp_path: Path) -> Path:
    text = (FLOWS / "support.yaml").read_text()
    for old, new, *_ in BREAKAGES:
        assert old in text, f"the default flow changed; update this breakage: {old!r}"
        text = text.replace(old, new, 1)
    path = tmp_path / "support.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("flow_file", sorted(FLOWS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_flow_is_valid(flow_file: Path) -> None:
    """Every file in flows/ loads and validates against the shipped prompts."""
    definitions, problems = check_definitions(FLOWS, PROMPTS, "US", only=[flow_file])
    assert problems == []
    assert definitions is not None and flow_file.stem in definitions.flows


def test_broken_copy_of_default_flow_reports_every_error(tmp_path: Path) -> None:
    path = broken_copy(tmp_path)
    _, problems = check_definitions(tmp_path, PROMPTS, "US", only=[path])
    rendered = [str(problem) for problem in problems]
    for _old, _new, node, field, words in BREAKAGES:
        if not words:
            continue
        matching = [
            p for p in problems if p.where == node and p.field == field and words in p.message
        ]
        assert matching, f"no problem for {node}.{field} ({words!r}) in:\n" + "\n".join(rendered)
        assert all(p.file == str(path) and p.line for p in matching)


def test_problem_lines_point_at_the_offending_key(tmp_path: Path) -> None:
    path = broken_copy(tmp_path)
    _, problems = check_definitions(tmp_path, PROMPTS, "US", only=[path])
    lines = path.read_text().splitlines()
    typo = next(p for p in problems if p.field == "promt")
    assert lines[typo.line - 1].strip().startswith("promt:")
    bad_target = next(p for p in problems if p.field == "ok" and p.where == "last4")
    assert lines[bad_target.line - 1].strip() == "ok: menuu"


def test_load_definitions_raises_with_every_problem(tmp_path: Path) -> None:
    broken_copy(tmp_path)
    with pytest.raises(InvalidDefinition, match=r"problem\(s\) in flow definitions") as info:
        load_definitions(tmp_path, PROMPTS, "US")
    assert len(info.value.problems) >= len([b for b in BREAKAGES if b[4]])


def test_menu_keys_stay_strings_and_yes_no_stay_words(tmp_path: Path) -> None:
    """`1:` is the menu key "1", not the integer 1; `no:` is not the boolean False."""
    definitions = load_definitions(FLOWS, PROMPTS, "US")
    menu = definitions.flows["support"].nodes["menu"]
    assert isinstance(menu, MenuNode)
    assert set(menu.options) == {"1", "2", "3", "9"}
    last4 = definitions.flows["support"].nodes["last4"]
    assert isinstance(last4, CheckAccountDigitsNode) and last4.mode == "last4"


def write_flow(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text("name: tiny\nstart: hello\nlanguages: [en-US]\n" + body)
    return path


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "nodes:\n  hello:\n    type: hangup\n  hello:\n    type: hangup\n",
            "key 'hello' appears twice",
        ),
        ("nodes:\n  hello: [unclosed\n", "YAML error"),
        (
            "nodes:\n  hello:\n    type: hangup\n    prompt: 42\n",
            "hello: prompt: must be a non-empty word",
        ),
        ("nodes: []\n", "nodes: must be a mapping"),
        (
            'nodes:\n  hello:\n    type: hangup\n    prompt: "good\\x0ebye"\n',
            "hello: prompt: contains the control character U+000E",
        ),
        ("nodes:\n  hello:\n    type: say\n    prompt: goodbye\n", "hello: next: missing"),
        (
            "max_inputs: 1\nnodes:\n  hello:\n    type: hangup\n",
            "max_inputs: must be a whole number",
        ),
        (
            "nodes:\n  hello:\n    type: branch\n    on: mood\n    cases: {happy: hello}\n"
            "    default: hello\n",
            "'mood' is not one of",
        ),
        (
            "nodes:\n  hello:\n    type: branch\n    on: identity\n    cases: {famous: bye}\n"
            "    default: bye\n  bye:\n    type: hangup\n",
            "identity is never 'famous'",
        ),
        (
            "nodes:\n  hello:\n    type: collect_digits\n    prompt: goodbye\n    save_as: x\n"
            "    min_length: 9\n    max_length: 4\n    next: bye\n    no_input: bye\n"
            "    invalid: hello\n    too_many_tries: bye\n  bye:\n    type: hangup\n",
            "min_length: is greater than max_length",
        ),
        (
            "nodes:\n  hello:\n    type: check_account_digits\n    mode: last4\n"
            "    prompt: goodbye\n"
            "    ok: bye\n    no_input: bye\n    invalid: hello\n    too_many_tries: bye\n"
            "  bye:\n    type: hangup\n",
            "ambiguous: missing",
        ),
    ],
)
def test_bad_flow_files_are_explained(tmp_path: Path, body: str, expected: str) -> None:
    path = write_flow(tmp_path, body)
    _, problems = check_definitions(tmp_path, PROMPTS, "US", only=[path])
    assert any(expected in str(p) for p in problems), "\n".join(map(str, problems))
    assert all(str(path) in str(p) for p in problems)


@pytest.fixture
def prompt_dir(tmp_path: Path) -> Path:
    target = tmp_path / "prompts"
    shutil.copytree(PROMPTS, target)
    return target


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("  goodbye: Gracias por llamar. Adiós.\n", ""), "prompt 'goodbye' is missing in: es-US"),
        (
            ("  error_apology: >\n", "  error_apologies: >\n"),
            "error_apology: prompts: system prompt missing",
        ),
        (("voice: Polly.Lupe", "voice: Polly.Lupe-Neural"), "voice: must be man, woman or Polly"),
        (
            ("  goodbye: Gracias por llamar. Adiós.", "  goodbye: Adiós {nombre}."),
            "unknown placeholder {nombre}",
        ),
        (("language: es-US", "language: es-MX"), "language: must be 'es-US'"),
        # A control character (YAML lets a quoted string carry it as an escape) would
        # make every answer that speaks the prompt unparseable TwiML.
        (
            ("  goodbye: Gracias por llamar. Adiós.", '  goodbye: "Gracias\\x0e por llamar."'),
            "goodbye: text: contains the control character U+000E",
        ),
        # The call-back leg knows nothing of the caller: no account facts there, and
        # the code-reading prompts get the code only.
        (
            (
                "  read_code_callback: Su código es {code_digits}.",
                "  read_code_callback: Hola {name}, su código es {code_digits}.",
            ),
            "read_code_callback: text: unknown placeholder {name}; allowed: code_digits",
        ),
        (
            ("  callback_no_key:", "  callback_no_key: Hola {first_name}."),
            "callback_no_key: text: is read with no call facts: no placeholders",
        ),
        (
            ("  error_apology: >\n", "  error_apology: >\n    {first_name},\n"),
            "error_apology: text: is read with no call facts: no placeholders",
        ),
    ],
)
def test_prompt_problems_are_explained(
    prompt_dir: Path, edit: tuple[str, str], expected: str
) -> None:
    spanish = prompt_dir / "es-US.yaml"
    text = spanish.read_text()
    assert edit[0] in text
    spanish.write_text(text.replace(edit[0], edit[1], 1))
    _, problems = check_definitions(FLOWS, prompt_dir, "US")
    assert any(expected in str(p) for p in problems), "\n".join(map(str, problems))


def test_flows_validate_cli_lists_every_problem_and_fails(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from ivr.versions.cli import flows

    path = broken_copy(tmp_path)
    result = CliRunner().invoke(flows, ["validate", str(path), "--prompts", str(PROMPTS)])
    assert result.exit_code == 1
    assert f"{path}:" in result.output
    assert "last4: ok: goes to 'menuu'" in result.output
    assert "problem(s) in 1 flow file(s)" in result.output


def test_flows_validate_cli_accepts_the_shipped_flows() -> None:
    from click.testing import CliRunner

    from ivr.versions.cli import flows

    result = CliRunner().invoke(flows, ["validate", str(FLOWS), "--prompts", str(PROMPTS)])
    assert result.exit_code == 0, result.output
    assert "support.yaml: ok" in result.output


def test_transfer_targets_are_resolved_once_at_load(tmp_path: Path) -> None:
    """A node's own `target` is parsed when the flow loads, and the engine dials it."""
    from ivr.flow.engine import Engine
    from ivr.flow.instructions import Transfer
    from ivr.flow.model import TransferNode, TransferTarget

    path = write_flow(
        tmp_path,
        "nodes:\n  hello:\n    type: transfer\n    reason: caller_request\n"
        "    target: (415) 555-0199\n    unanswered: bye\n  bye:\n    type: hangup\n",
    )
    definitions, problems = check_definitions(tmp_path, PROMPTS, "US", only=[path])
    assert problems == [] and definitions is not None
    flow = definitions.flows["tiny"]
    node = flow.nodes["hello"]
    assert isinstance(node, TransferNode)
    assert node.destination == TransferTarget("number", "+14155550199")

    default = TransferTarget("queue", "support")
    turn = Engine(flow, definitions.catalog, None, default, "US").start(
        "CA" + "9" * 32, "anonymous"
    )  # type: ignore[arg-type]
    assert [i for i in turn.instructions if isinstance(i, Transfer)] == [
        Transfer(TransferTarget("number", "+14155550199"), turn.state.step)
    ]


def test_several_numbers_resolve_to_one_target_ringing_them_all(tmp_path: Path) -> None:
    """A comma-separated target is parsed at load into every number, in order."""
    from ivr.flow.model import TransferNode, TransferTarget

    path = write_flow(
        tmp_path,
        "nodes:\n  hello:\n    type: transfer\n    reason: caller_request\n"
        '    target: "(415) 555-0199, +1 415 555 0198"\n    unanswered: bye\n'
        "  bye:\n    type: hangup\n",
    )
    definitions, problems = check_definitions(tmp_path, PROMPTS, "US", only=[path])
    assert problems == [] and definitions is not None
    node = definitions.flows["tiny"].nodes["hello"]
    assert isinstance(node, TransferNode)
    assert node.destination == TransferTarget("number", "+14155550199", also_ring=("+14155550198",))
    assert node.destination.numbers == ("+14155550199", "+14155550198")
