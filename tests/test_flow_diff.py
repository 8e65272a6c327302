"""The semantic flow diff and the outline, on real variants of the default flow.

Each variant is a copy of `flows/` and `prompts/` with its YAML text edited, loaded
by the real loader, so the diff sees exactly what the service would run.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path

import pytest

from ivr.flow.diff import FieldChange, FlowDiff, diff_flows, render_text
from ivr.flow.loader import load_definitions
from ivr.flow.model import Catalog, Flow
from ivr.flow.outline import node_order, outline, outline_rows

ROOT = Path(__file__).resolve().parent.parent

Version = tuple[Flow, Catalog]
Edit = tuple[str, str, str]  # (file under the copy, text to replace, replacement)

FLOW = "flows/support.yaml"
EN = "prompts/en-US.yaml"
ES = "prompts/es-US.yaml"

WELCOME_EN = "Thank you for calling Example support."
WELCOME_ES = "Gracias por llamar al servicio de asistencia de Example."

# A menu node reached from the main menu's key 4, speaking a prompt of its own.
CALLBACK_OFFER = [
    (
        FLOW,
        "      3: goodbye\n      9: menu\n",
        "      3: goodbye\n      4: callback_offer\n      9: menu\n",
    ),
    (
        FLOW,
        "  goodbye:\n",
        "  callback_offer:\n    type: menu\n    prompt: callback_offer\n    options:\n"
        "      1: start_callback\n    no_input: menu\n    invalid: callback_offer\n"
        "    too_many_tries: menu\n\n  goodbye:\n",
    ),
    (EN, "  goodbye: ", "  callback_offer: To have us call you back, press 1.\n  goodbye: "),
    (ES, "  goodbye: ", "  callback_offer: Para que le llamemos, oprima 1.\n  goodbye: "),
]


def load_variant(base: Path, edits: Iterable[Edit] = ()) -> Version:
    """The default flow and prompts copied under `base`, edited, and loaded."""
    shutil.copytree(ROOT / "flows", base / "flows")
    shutil.copytree(ROOT / "prompts", base / "prompts")
    for file, old, new in edits:
        path = base / file
        text = path.read_text(encoding="utf-8")
        assert text.count(old) == 1, f"{old!r} must occur once in {file}"
        path.write_text(text.replace(old, new), encoding="utf-8")
    definitions = load_definitions(base / "flows", base / "prompts", "US")
    return definitions.flows["support"], definitions.catalog


@pytest.fixture
def default(tmp_path: Path) -> Version:
    return load_variant(tmp_path / "default")


def diff_with(tmp_path: Path, default: Version, edits: Iterable[Edit]) -> FlowDiff:
    return diff_flows(default, load_variant(tmp_path / "edited", edits))


def test_identical_content_has_no_differences(tmp_path: Path, default: Version) -> None:
    copy = load_variant(tmp_path / "copy")
    assert copy[0].file != default[0].file  # another folder: paths are not compared

    diff = diff_flows(default, copy)

    assert diff.is_empty
    assert render_text(diff, "main", "copy") == "flow support: main → copy\n  no differences\n"


def test_a_changed_prompt_shows_old_and_new_text_per_language(
    tmp_path: Path, default: Version
) -> None:
    diff = diff_with(
        tmp_path,
        default,
        [
            (EN, f"welcome: {WELCOME_EN}", "welcome: Thanks for calling Example support."),
            (ES, f"welcome: {WELCOME_ES}", "welcome: Gracias por llamar a Example."),
        ],
    )

    changes = [(p.language, p.key, p.old, p.new, p.used_by) for p in diff.prompts_changed]
    assert changes == [
        ("en-US", "welcome", WELCOME_EN, "Thanks for calling Example support.", ["welcome"]),
        ("es-US", "welcome", WELCOME_ES, "Gracias por llamar a Example.", ["welcome"]),
    ]
    assert not (diff.nodes_changed or diff.nodes_added or diff.flow_changes)
    text = render_text(diff, "v1", "working files")
    assert (
        "  ~ prompt en-US welcome (used by welcome):\n"
        f'      - "{WELCOME_EN}"\n'
        '      + "Thanks for calling Example support."\n'
    ) in text
    assert f'      - "{WELCOME_ES}"\n      + "Gracias por llamar a Example."\n' in text


def test_a_changed_system_prompt_is_reported(tmp_path: Path, default: Version) -> None:
    diff = diff_with(
        tmp_path, default, [(EN, "whisper_accept: Press 1", "whisper_accept: Press one")]
    )

    [change] = diff.prompts_changed
    assert (change.key, change.system, change.used_by) == ("whisper_accept", True, [])
    assert "  ~ prompt en-US whisper_accept (system prompt):\n" in render_text(diff)


def test_a_prompt_no_node_uses_is_not_reported(tmp_path: Path, default: Version) -> None:
    spare = [
        (lang, "  goodbye: ", f"  spare_note: Spare {lang}.\n  goodbye: ") for lang in (EN, ES)
    ]
    old = load_variant(tmp_path / "old", spare)
    new = load_variant(
        tmp_path / "new",
        [
            (file, old_text, new_text.replace("Spare", "Changed"))
            for file, old_text, new_text in spare
        ],
    )
    assert old[1].text("en-US", "spare_note") != new[1].text("en-US", "spare_note")

    assert diff_flows(old, new).is_empty


def test_an_added_node_and_its_prompts_and_the_same_node_removed(
    tmp_path: Path, default: Version
) -> None:
    edited = load_variant(tmp_path / "edited", CALLBACK_OFFER)

    added = diff_flows(default, edited)
    [entry] = added.nodes_added
    assert (entry.node, entry.type) == ("callback_offer", "menu")
    assert entry.fields["options.1"] == "start_callback"
    assert [(n.node, n.fields) for n in added.nodes_changed] == [
        ("menu", [FieldChange("options.4", None, "callback_offer", "node")])
    ]
    assert [(p.language, p.key, p.old, p.new) for p in added.prompts_changed] == [
        ("en-US", "callback_offer", None, "To have us call you back, press 1."),
        ("es-US", "callback_offer", None, "Para que le llamemos, oprima 1."),
    ]
    text = render_text(added, "main", "working files")
    assert "  + node callback_offer (menu)\n      prompt: callback_offer\n" in text
    assert "  ~ node menu: options.4: (none) → callback_offer\n" in text

    removed = diff_flows(edited, default)
    assert [(e.node, e.type) for e in removed.nodes_removed] == [("callback_offer", "menu")]
    assert not removed.nodes_added
    assert "  - node callback_offer (menu)\n" in render_text(removed)
    assert [p.new for p in removed.prompts_changed] == [None, None]


@pytest.mark.parametrize(
    ("old_edits", "new_edits", "node", "field", "old", "new"),
    [
        (  # a menu key that leads elsewhere
            [],
            [(FLOW, "      4: agent_unverified\n", "      4: agent_menu_failed\n")],
            "code_trouble",
            "options.4",
            "agent_unverified",
            "agent_menu_failed",
        ),
        (  # a transfer target (the target the loader parsed from it is not compared twice;
            # the call-back offer only sits on a target that holds callers)
            [
                (
                    FLOW,
                    "    reason: caller_request\n",
                    '    reason: caller_request\n    target: "+14155550100"\n',
                ),
                (FLOW, "    offer_callback_after: 120\n", ""),
            ],
            [
                (
                    FLOW,
                    "    reason: caller_request\n",
                    '    reason: caller_request\n    target: "sip:agent@pbx.example"\n',
                ),
                (FLOW, "    offer_callback_after: 120\n", ""),
            ],
            "agent_verified",
            "target",
            "+14155550100",
            "sip:agent@pbx.example",
        ),
        (  # a limit
            [],
            [(FLOW, "    timeout: 15\n", "    timeout: 25\n")],
            "new_number",
            "timeout",
            15,
            25,
        ),
    ],
)
def test_a_changed_field_shows_its_path_and_both_values(
    tmp_path: Path,
    old_edits: list[Edit],
    new_edits: list[Edit],
    node: str,
    field: str,
    old: object,
    new: object,
) -> None:
    diff = diff_flows(
        load_variant(tmp_path / "old", old_edits), load_variant(tmp_path / "new", new_edits)
    )

    assert [(n.node, [(f.field, f.old, f.new) for f in n.fields]) for n in diff.nodes_changed] == [
        (node, [(field, old, new)])
    ]
    assert f"  ~ node {node}: {field}: {old} → {new}\n" in render_text(diff)


def test_a_changed_node_type_compares_the_fields_of_both_kinds(
    tmp_path: Path, default: Version
) -> None:
    diff = diff_with(
        tmp_path,
        default,
        [
            (
                FLOW,
                "  no_email:\n    type: say\n    prompt: no_email_on_file\n    next: code_trouble\n",
                "  no_email:\n    type: hangup\n    prompt: no_email_on_file\n",
            )
        ],
    )

    [change] = diff.nodes_changed
    assert (change.node, change.type) == ("no_email", "hangup")
    assert change.fields == [
        FieldChange("type", "say", "hangup"),
        FieldChange("next", "code_trouble", None, "node"),
    ]
    assert "  ~ node no_email:\n      type: say → hangup\n      next: code_trouble → (none)\n" in (
        render_text(diff)
    )


def test_the_json_form_round_trips(tmp_path: Path, default: Version) -> None:
    diff = diff_with(
        tmp_path,
        default,
        [
            *CALLBACK_OFFER,
            (FLOW, "max_inputs: 40\n", "max_inputs: 30\n"),
            (FLOW, "      4: agent_unverified\n", "      4: agent_menu_failed\n"),
            (EN, "voice: Polly.Joanna", "voice: Polly.Salli"),
            (EN, f"welcome: {WELCOME_EN}", "welcome: Hello."),
        ],
    )

    data = diff.to_json()

    assert json.loads(json.dumps(data)) == data
    assert data["is_empty"] is False
    assert data["flow_changes"] == [{"field": "max_inputs", "old": 40, "new": 30, "ref": None}]
    assert data["voices_changed"] == [
        {"language": "en-US", "old": "Polly.Joanna", "new": "Polly.Salli"}
    ]
    assert [n["node"] for n in data["nodes_changed"]] == ["code_trouble", "menu"]
    assert {(p["language"], p["key"]) for p in data["prompts_changed"]} == {
        ("en-US", "callback_offer"),
        ("es-US", "callback_offer"),
        ("en-US", "welcome"),
    }
    text = render_text(diff)
    assert "  ~ max_inputs: 40 → 30\n" in text
    assert "  ~ voice en-US: Polly.Joanna → Polly.Salli\n" in text


def test_the_outline_lists_every_node_once_start_first(default: Version) -> None:
    flow, catalog = default

    text = outline(flow, catalog)

    header, body = text.split("\n\n", 1)
    assert "languages: en-US, es-US  start: hours  max_inputs: 40" in header
    node_lines = [line for line in body.splitlines() if line and not line.startswith(" ")]
    ids = [line.split()[0] for line in node_lines]
    assert sorted(ids) == sorted(flow.nodes)
    assert len(ids) == len(set(ids))
    assert ids[0] == flow.start
    assert ids == node_order(flow)
    # Breadth-first: the caller meets the language choice before any account check.
    assert ids.index("language") < ids.index("identify") < ids.index("last4")
    menu = body.splitlines()[body.splitlines().index(node_lines[ids.index("menu")]) :]
    assert menu[0].endswith(
        "no_input → agent_no_response, invalid → menu, too_many_tries → agent_menu_failed"
    )
    assert menu[1:5] == [
        "    1 → change_number",
        "    2 → agent_verified",
        "    3 → goodbye",
        "    9 → menu",
    ]


def test_the_outline_shows_prompt_texts_in_one_language(default: Version) -> None:
    flow, catalog = default

    text = outline(flow, catalog, "es-US")

    assert f'    prompt (welcome): "{WELCOME_ES}"\n' in text
    assert WELCOME_EN not in text
    assert WELCOME_ES not in outline(flow, catalog)
    rows = {row.node: row for row in outline_rows(flow, catalog, "es-US")}
    assert rows["agent_verified"].transfer == "the configured agent target"
    assert rows["send_voice"].settings == {"channel": "voice"}
    with pytest.raises(ValueError, match="does not offer 'fr-FR'; it offers en-US, es-US"):
        outline(flow, catalog, "fr-FR")
