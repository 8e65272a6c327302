"""Transfer targets: every kind parsed once at load, rendered as schema-valid TwiML,
and every way a transfer can fail leading to the node's `unanswered` exit.

Kinds: one phone number, several ringing at once (comma-separated, at most 10),
`sip:`, `client:`, `queue:` (with hold prompt, music and a maximum wait through the
Enqueue waitUrl) and `workflow:` (TaskRouter, with `<Task>` attributes JSON of at most
1024 characters). Webhooks are posted signed, the way Twilio posts them, into an app
whose only flow starts at a transfer node (`IVR_FLOWS_DIR` in tmp_path); journeys go
through the simulator on a copy of the default flow.
"""

from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from caller import Phone
from flask import Flask
from kit import (
    DIGITS_AND_SMS,
    JANE_PHONE,
    add_account,
    call_form,
    caller_documents,
    checked_logs,
    dial_of,
    new_sid,
    post,
    says,
    state_of,
    text,
    twiml,
    verified_whisper,
)
from twiml_schema import assert_valid_twiml

from ivr.agent.api import context_signer
from ivr.config_line import DEFAULT_HOLD_MUSIC
from ivr.flow.instructions import Leave, Pause, Play, Say, Transfer
from ivr.flow.loader import check_definitions, load_catalog
from ivr.flow.model import TransferNode, TransferTarget, parse_target
from ivr.voice import twiml as render
from ivr.voice import webhook

ROOT = Path(__file__).resolve().parent.parent
FLOWS = ROOT / "flows"
PROMPTS = ROOT / "prompts"

WORKFLOW = "WW" + "0123456789abcdef" * 2
MUSIC = "https://media.example.test/hold/classical.mp3"
AGENT_A, AGENT_B = "+14155550142", "+14155550143"
CLOSED_REDIS = "redis://127.0.0.1:1/0"

# The caller's entries that reach an agent from the main menu, fully verified.
TO_AN_AGENT = ["1", "4321", "@code", "2"]


# --- helpers -----------------------------------------------------------------------------


def transfer_flow(directory: Path, target: str, extra: str = "") -> Path:
    """A flow whose first node transfers to `target` (YAML text); `unanswered` says sorry."""
    directory.mkdir(exist_ok=True)
    path = directory / "transfer.yaml"
    path.write_text(
        "name: transfer\nstart: agent\nlanguages: [en-US, es-US]\nnodes:\n"
        "  agent:\n    type: transfer\n    reason: caller_request\n"
        f"    target: {target}\n{extra}    unanswered: sorry\n"
        "  sorry:\n    type: hangup\n    prompt: agents_busy\n"
    )
    return path


def transfer_app(make_app: Any, tmp_path: Path, target: str, extra: str = "", **env: str) -> Flask:
    """An app whose calls start at the transfer node of `transfer_flow`."""
    flows = tmp_path / "flows"
    transfer_flow(flows, target, extra)
    app: Flask = make_app(
        IVR_FLOWS_DIR=str(flows), IVR_PROMPTS_DIR=str(PROMPTS), IVR_FLOW="transfer", **env
    )
    return app


def links() -> render.Links:
    """The links the voice views build, with the step in each URL."""
    return render.Links(
        input=lambda step: f"/voice/input?s={step}",
        dial=lambda step: f"/voice/dial?s={step}",
        whisper=lambda step: f"/voice/whisper?s={step}",
        wait=lambda step: f"/voice/queue/wait?s={step}",
    )


def step_of(url: str | None) -> int:
    """The ?s=N a webhook URL carries."""
    return int(parse_qs(urlsplit(url or "").query)["s"][0])


def assert_leave(body: str) -> None:
    """A document that only takes the caller out of the queue.

    Twilio's XSD rejects `<Leave>` (tests/twilio/README.md, "Known gaps"), so
    this one document's structure is asserted instead of validating it.
    """
    root = ET.fromstring(body)
    assert root.tag == "Response"
    assert [(child.tag, dict(child.attrib), (child.text or "").strip()) for child in root] == [
        ("Leave", {}, "")
    ]


def wait_form(call_sid: str, queue_time: int) -> dict[str, str]:
    """What Twilio posts to an Enqueue waitUrl."""
    return call_form(
        call_sid,
        QueueSid="QU" + "1" * 32,
        QueueTime=str(queue_time),
        QueuePosition="1",
        AvgQueueTime="30",
        CurrentQueueSize="1",
        MaxQueueSize="100",
    )


def action_of(doc: ET.Element, tag: str) -> str:
    """The action URL of the document's one `tag` (Dial or Enqueue)."""
    element = doc.find(tag)
    assert element is not None, ET.tostring(doc, encoding="unicode")
    return element.get("action") or ""


def start(app: Flask) -> tuple[str, ET.Element]:
    """A new call into the app; its CallSid and the first document."""
    call_sid = new_sid()
    return call_sid, twiml(post(app, "/voice/incoming", call_form(call_sid)))


# --- parsing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("(415) 555-0142", TransferTarget("number", AGENT_A)),
        (
            f"{AGENT_A}, 415 555 0143",
            TransferTarget("number", AGENT_A, also_ring=(AGENT_B,)),
        ),
        ("sip:agent@pbx.example.com", TransferTarget("sip", "sip:agent@pbx.example.com")),
        ("client:alice", TransferTarget("client", "alice")),
        ("queue:support", TransferTarget("queue", "support")),
        (f"workflow:{WORKFLOW}", TransferTarget("workflow", WORKFLOW)),
    ],
)
def test_every_target_kind_parses(written: str, expected: TransferTarget) -> None:
    target = parse_target(written, "US")

    assert target == expected
    assert parse_target(target.label, "US") == target  # the label reads back the same


def test_ten_numbers_ring_at_once() -> None:
    written = ", ".join(f"+1415555{n:04d}" for n in range(100, 110))

    target = parse_target(written, "US")

    assert target.numbers == tuple(f"+1415555{n:04d}" for n in range(100, 110))
    assert target.rings_a_person and not target.has_hold_settings


@pytest.mark.parametrize(
    ("written", "message"),
    [
        (", ".join(f"+1415555{n:04d}" for n in range(100, 111)), "Twilio rings at most 10"),
        (f"{AGENT_A}, 555", "entry 2 ('555') is not a phone number"),
        (f"{AGENT_A}, sip:agent@pbx.example.com", "only phone numbers can be listed"),
        (f"{AGENT_A}, (415) 555-0142", "entry 2 ('(415) 555-0142') repeats"),
        (f"{AGENT_A},,{AGENT_B}", "empty entry"),
        ("workflow:WW123", "not a TaskRouter Workflow SID"),
        ("workflow:WX" + "0" * 32, "not a TaskRouter Workflow SID"),
        ("workflow:WW" + "g" * 32, "not a TaskRouter Workflow SID"),
        ("sip:agent @pbx.example.com", "no spaces"),
        ("sip:pbx.example.com", "needs user@host"),
        ("queue:" + "q" * 65, "needs a name of 1 to 64"),
        ("client:", "needs a name"),
    ],
)
def test_bad_targets_are_explained(written: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_target(written, "US")


# --- validation at load: file, line, node and field ----------------------------------------


@pytest.mark.parametrize(
    ("target", "extra", "field", "words"),
    [
        (f'["{AGENT_A}", "{AGENT_B}"]', "", "target", "in one string separated by commas"),
        (AGENT_A, "", "target", 'a number in quotes ("+14155550100")'),  # YAML read an int
        (
            '"' + ", ".join(f"+1415555{n:04d}" for n in range(100, 111)) + '"',
            "",
            "target",
            "Twilio rings at most 10",
        ),
        (f'"{AGENT_A}, 415 555"', "", "target", "entry 2 ('415 555') is not a phone number"),
        ("workflow:WW1234", "", "target", "not a TaskRouter Workflow SID"),
        ("queue:support", "    queue_max_wait: -5\n", "queue_max_wait", "must be from 30 to 3600"),
        ("queue:support", "    queue_max_wait: 86400\n", "queue_max_wait", "from 30 to 3600"),
        ("queue:support", "    queue_max_wait: 5m\n", "queue_max_wait", "whole number"),
        (
            "queue:support",
            "    hold_music: http://media.example.test/hold.mp3\n",
            "hold_music",
            "must be an https:// URL",
        ),
        ("queue:support", "    hold_music: hold.mp3\n", "hold_music", "must be an https:// URL"),
        (
            "queue:support",
            "    hold_music: https://media.example.test/my hold.mp3\n",
            "hold_music",
            "without spaces",
        ),
        ("queue:support", "    hold_prompt: on_hold_v2\n", "hold_prompt", "missing in: en-US"),
        (f'"{AGENT_A}"', "    queue_max_wait: 300\n", "queue_max_wait", "not a number"),
        ("client:alice", f"    hold_music: {MUSIC}\n", "hold_music", "not a client"),
    ],
)
def test_bad_transfer_settings_are_located(
    tmp_path: Path, target: str, extra: str, field: str, words: str
) -> None:
    path = transfer_flow(tmp_path, target, extra)

    definitions, problems = check_definitions(tmp_path, PROMPTS, "US", only=[path])

    assert definitions is None
    matching = [p for p in problems if p.where == "agent" and p.field == field]
    assert matching, "\n".join(map(str, problems))
    assert any(words in p.message for p in matching), "\n".join(map(str, matching))
    lines = path.read_text().splitlines()
    for problem in matching:
        assert problem.file == str(path)
        assert problem.line is not None
        assert lines[problem.line - 1].strip().startswith(f"{field}:")


def test_hold_settings_need_the_nodes_own_target(tmp_path: Path) -> None:
    """The configured agent target may ring a person: hold settings need a queue here."""
    path = tmp_path / "transfer.yaml"
    path.write_text(
        "name: transfer\nstart: agent\nlanguages: [en-US]\nnodes:\n"
        "  agent:\n    type: transfer\n    reason: caller_request\n"
        f"    hold_music: {MUSIC}\n    unanswered: sorry\n"
        "  sorry:\n    type: hangup\n"
    )

    _, problems = check_definitions(tmp_path, PROMPTS, "US", only=[path])

    assert [(p.where, p.field, p.line) for p in problems] == [("agent", "hold_music", 8)]
    assert "needs the node's own queue: or workflow: target" in problems[0].message


def test_a_hold_prompt_may_use_only_the_hold_placeholders(tmp_path: Path) -> None:
    """Hold prompts repeat while the caller waits, with no call facts to fill them: only
    what Twilio tells the waitUrl ({position}, {minutes})."""
    catalog, _ = load_catalog(PROMPTS)
    with_name = next(k for k, t in catalog.languages["en-US"].texts.items() if "{first_name}" in t)
    path = transfer_flow(tmp_path, "queue:support", f"    hold_prompt: {with_name}\n")

    _, problems = check_definitions(tmp_path, PROMPTS, "US", only=[path])

    assert [(p.where, p.field) for p in problems] == [("agent", "hold_prompt")]
    assert "uses {first_name} (en-US)" in problems[0].message
    assert "may use only {minutes}, {position}" in problems[0].message


def test_targets_and_hold_settings_resolve_once_at_load(tmp_path: Path) -> None:
    path = transfer_flow(
        tmp_path,
        f"workflow:{WORKFLOW}",
        f"    hold_prompt: connecting\n    hold_music: {MUSIC}\n    queue_max_wait: 300\n"
        "    announce_every: 90\n",
    )

    definitions, problems = check_definitions(tmp_path, PROMPTS, "US", only=[path])

    assert problems == [] and definitions is not None
    node = definitions.flows["transfer"].nodes["agent"]
    assert isinstance(node, TransferNode)
    assert node.destination == TransferTarget(
        "workflow",
        WORKFLOW,
        hold_prompt="connecting",
        hold_music=MUSIC,
        max_wait=300,
        announce_every=90,
    )


# --- TwiML of every kind, against Twilio's schema ------------------------------------------


@pytest.mark.parametrize(
    ("written", "tags"),
    [
        (AGENT_A, ["Number"]),
        (f"{AGENT_A}, {AGENT_B}", ["Number", "Number"]),
        (", ".join(f"+1415555{n:04d}" for n in range(100, 110)), ["Number"] * 10),
        ("sip:agent@pbx.example.com", ["Sip"]),
        ("client:alice", ["Client"]),
    ],
)
def test_dial_targets_render_valid_twiml_with_a_whisper_on_every_leg(
    written: str, tags: list[str]
) -> None:
    document = render.render([Transfer(parse_target(written, "US"), step=7)], links())

    assert_valid_twiml(document)
    (dial,) = ET.fromstring(document)
    assert dial.tag == "Dial" and dial.get("action") == "/voice/dial?s=7"
    assert [leg.tag for leg in dial] == tags
    for leg in dial:
        assert leg.get("url") == "/voice/whisper?s=7"
        assert leg.get("method") == "POST"


@pytest.mark.parametrize("kind", ["queue", "workflow"])
@pytest.mark.parametrize("holds", [True, False], ids=["hold-settings", "hold-defaults"])
def test_queue_and_workflow_targets_render_valid_twiml(kind: str, holds: bool) -> None:
    """Every holding target gets our waitUrl, with or without its own hold settings."""
    target = parse_target("queue:support" if kind == "queue" else f"workflow:{WORKFLOW}", "US")
    if holds:
        target = TransferTarget(kind, target.address, hold_music=MUSIC, max_wait=120)
    attributes = render.task_attributes({"call_sid": "CA" + "1" * 32, "flow": "support"})

    document = render.render([Transfer(target, step=3, task_attributes=attributes)], links())

    assert_valid_twiml(document)
    (enqueue,) = ET.fromstring(document)
    assert enqueue.tag == "Enqueue" and enqueue.get("action") == "/voice/dial?s=3"
    assert enqueue.get("waitUrl") == "/voice/queue/wait?s=3"
    if kind == "queue":
        assert enqueue.text == "support" and list(enqueue) == []
    else:
        assert enqueue.get("workflowSid") == WORKFLOW
        (task,) = list(enqueue)
        assert task.tag == "Task" and json.loads(task.text or "") == {
            "call_sid": "CA" + "1" * 32,
            "flow": "support",
        }


def test_hold_documents_are_valid_twiml() -> None:
    """What the wait endpoint answers while the caller holds (all but <Leave>)."""
    hold = Say("Thank you for holding.", "en-US", "Polly.Joanna")
    for document in (render.document(hold, Play(MUSIC)), render.document(hold, Pause(20))):
        assert_valid_twiml(document)
    assert_leave(render.document(Leave()))


# --- Task attributes: at most 1024 characters, always valid JSON ----------------------------


def test_task_attributes_fit_as_they_are() -> None:
    attributes = {"call_sid": "CA" + "2" * 32, "verification": "code", "flow": "support"}

    encoded = render.task_attributes(attributes)

    assert json.loads(encoded) == attributes
    assert " " not in encoded  # compact


def test_task_attributes_leave_out_whole_keys_that_do_not_fit() -> None:
    """A key too big is left out whole; later keys that still fit are kept, in order."""
    attributes = {
        "call_sid": "CA" + "3" * 32,
        "context": "x" * 5000,
        "verification": "code",
        "flow": "support",
    }

    encoded = render.task_attributes(attributes)

    assert json.loads(encoded) == {
        "call_sid": attributes["call_sid"],
        "verification": "code",
        "flow": "support",
    }


@pytest.mark.parametrize("size", range(930, 1010, 7))
def test_task_attributes_never_pass_the_limit_or_break_json(size: int) -> None:
    """Around the limit: never over 1024 characters, never cut, and each key left out
    would not have fitted beside the more important keys kept before it."""
    attributes = {
        "call_sid": "CA" + "3" * 32,
        "context": "x" * size,
        "verification": "code",
        "transfer_reason": "caller_request",
        "flow": "support",
    }

    encoded = render.task_attributes(attributes)

    assert len(encoded) <= render.TASK_ATTRIBUTES_LIMIT
    decoded = json.loads(encoded)
    assert decoded == {key: attributes[key] for key in decoded}
    assert list(decoded) == [key for key in attributes if key in decoded]
    assert "call_sid" in decoded
    for key in attributes:
        if key in decoded:
            continue
        before = {k: attributes[k] for k in attributes if k in decoded or k == key}
        assert len(json.dumps(before, separators=(",", ":"))) > render.TASK_ATTRIBUTES_LIMIT


def test_task_attributes_count_escaped_characters() -> None:
    """Non-ASCII is escaped (6 characters each), so the limit holds in bytes too."""
    encoded = render.task_attributes({"call_sid": "CA" + "4" * 32, "name": "é" * 200})

    assert len(encoded.encode()) == len(encoded) <= render.TASK_ATTRIBUTES_LIMIT
    assert "name" not in json.loads(encoded)


def test_task_attributes_refuse_required_keys_that_cannot_fit() -> None:
    with pytest.raises(ValueError, match="only the required keys"):
        render.task_attributes({"call_sid": "C" * 2000})


def test_workflow_transfer_carries_the_task_attributes(make_app: Any, tmp_path: Path) -> None:
    """Through the webhook: `<Enqueue workflowSid>` with the call's facts as the Task."""
    app = transfer_app(make_app, tmp_path, f"workflow:{WORKFLOW}")

    call_sid, doc = start(app)

    enqueue = doc.find("Enqueue")
    assert enqueue is not None and enqueue.get("workflowSid") == WORKFLOW
    task = enqueue.findtext("Task") or ""
    assert len(task) <= render.TASK_ATTRIBUTES_LIMIT
    attributes = json.loads(task)
    token = attributes.pop("ivr_context")
    assert attributes == {
        "call_sid": call_sid,
        "verification": "none",
        "transfer_reason": "caller_request",
        "flow": "transfer",
    }
    with app.app_context():  # the signed context of this call, for agent desktops
        assert context_signer().load(token)["call_sid"] == call_sid


def test_oversized_task_attributes_are_trimmed_not_broken(
    make_app: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the hook returns more than fits (the signed context to come), the Task stays
    valid JSON within the limit, with the CallSid."""
    from ivr.voice import handover

    def big(state: Any, token: str | None) -> dict[str, object]:
        return {"call_sid": state.call_sid, "context": "t" * 1100, "flow": state.flow}

    monkeypatch.setattr(handover, "task_attributes", big)
    app = transfer_app(make_app, tmp_path, f"workflow:{WORKFLOW}")

    call_sid, doc = start(app)

    task = doc.findtext("Enqueue/Task") or ""
    assert len(task) <= render.TASK_ATTRIBUTES_LIMIT
    assert json.loads(task) == {"call_sid": call_sid, "flow": "transfer"}


def test_fallback_to_a_workflow_target_carries_a_task(make_app: Any) -> None:
    """The fallback has no state: the Task says which call it is, unverified."""
    app = make_app(IVR_AGENT_TARGET=f"workflow:{WORKFLOW}")
    call_sid = new_sid()

    doc = twiml(post(app, "/voice/fallback", call_form(call_sid, ErrorCode="11200")))

    enqueue = doc.find("Enqueue")
    assert enqueue is not None and enqueue.get("action") == "/voice/fallback/dial"
    assert json.loads(enqueue.findtext("Task") or "") == {
        "call_sid": call_sid,
        "verification": "none",
        "transfer_reason": "error",
    }


# --- how transfers end: never silence ---------------------------------------------------------

UNANSWERED_DIAL = ["busy", "no-answer", "failed", "canceled", ""]
UNANSWERED_QUEUE = ["leave", "queue-full", "error", "system-error", "hangup", "redirected", ""]


@pytest.mark.parametrize(
    "target",
    [f'"{AGENT_A}"', f'"{AGENT_A}, {AGENT_B}"', "sip:agent@pbx.example.com", "client:alice"],
    ids=["number", "numbers", "sip", "client"],
)
def test_unanswered_dials_take_the_unanswered_exit(
    make_app: Any, tmp_path: Path, target: str
) -> None:
    app = transfer_app(make_app, tmp_path, target)
    for status in UNANSWERED_DIAL:
        call_sid, doc = start(app)
        after = twiml(post(app, action_of(doc, "Dial"), call_form(call_sid, DialCallStatus=status)))

        assert says(after) == [text(app, "agents_busy")], status
        assert [child.tag for child in after] == ["Say", "Hangup"], status
    for status in ["completed", "answered"]:
        call_sid, doc = start(app)
        after = twiml(post(app, action_of(doc, "Dial"), call_form(call_sid, DialCallStatus=status)))

        assert [child.tag for child in after] == ["Hangup"], status


@pytest.mark.parametrize("target", ["queue:support", f"workflow:{WORKFLOW}"])
def test_queue_results_other_than_bridged_take_the_unanswered_exit(
    make_app: Any, tmp_path: Path, target: str
) -> None:
    app = transfer_app(make_app, tmp_path, target)
    for result in UNANSWERED_QUEUE:
        call_sid, doc = start(app)
        form = call_form(call_sid, QueueTime="42")
        if result:
            form["QueueResult"] = result

        after = twiml(post(app, action_of(doc, "Enqueue"), form))

        assert says(after) == [text(app, "agents_busy")], result
    call_sid, doc = start(app)
    form = call_form(call_sid, QueueResult="bridged", QueueTime="9")

    after = twiml(post(app, action_of(doc, "Enqueue"), form))

    assert [child.tag for child in after] == ["Hangup"]


@pytest.mark.parametrize(
    ("form", "status"),
    [
        ({"DialCallStatus": "busy"}, "busy"),
        ({"QueueResult": "bridged"}, "completed"),
        ({"QueueResult": "leave"}, "no-answer"),
        ({"QueueResult": "hangup"}, "canceled"),
        ({"QueueResult": "queue-full"}, "failed"),
        ({"QueueResult": "something-new"}, "failed"),
        ({}, "failed"),
    ],
)
def test_dial_status_reads_both_verbs(form: dict[str, str], status: str) -> None:
    assert webhook.dial_status(form) == status


# --- holding in a queue: the wait endpoint ----------------------------------------------------


def held_call(app: Flask) -> tuple[str, str]:
    """Start a call that is enqueued with a waitUrl; its CallSid and that waitUrl."""
    call_sid, doc = start(app)
    enqueue = doc.find("Enqueue")
    assert enqueue is not None
    wait_url = enqueue.get("waitUrl") or ""
    assert urlsplit(wait_url).path == "/voice/queue/wait"
    assert step_of(wait_url) == step_of(enqueue.get("action"))
    return call_sid, wait_url


@pytest.mark.parametrize("kind", ["queue:support", f"workflow:{WORKFLOW}"])
def test_hold_prompt_and_music_until_the_maximum_wait_then_leave(
    make_app: Any, tmp_path: Path, kind: str
) -> None:
    app = transfer_app(
        make_app, tmp_path, kind, f"    hold_music: {MUSIC}\n    queue_max_wait: 60\n"
    )
    call_sid, wait_url = held_call(app)
    # A plain queue says the caller's place; a workflow's queue order is not TaskRouter's.
    place = [text(app, "queue_position_next")] if kind.startswith("queue") else []

    first = twiml(post(app, wait_url, wait_form(call_sid, 0)))
    assert says(first) == [text(app, "queue_hold"), *place]
    # Each answer ends with a Redirect back to the waitUrl (carrying the hold's cadence).
    assert [child.tag for child in first] == ["Say"] * (1 + len(place)) + ["Play", "Redirect"]
    assert first.findtext("Play") == MUSIC
    for waited in (30, 59):  # no announcement due yet (every 60 s by default): music only
        doc = twiml(post(app, wait_url, wait_form(call_sid, waited)))
        assert [child.tag for child in doc] == ["Play", "Redirect"]
        assert doc.findtext("Play") == MUSIC

    response = post(app, wait_url, wait_form(call_sid, 60))
    assert response.status_code == 200 and response.mimetype == "text/xml"
    assert_leave(response.get_data(as_text=True))

    # Twilio then posts the Enqueue action: QueueResult=leave, the unanswered exit.
    action = wait_url.replace("/voice/queue/wait", "/voice/dial")
    after = twiml(post(app, action, call_form(call_sid, QueueResult="leave", QueueTime="61")))
    assert says(after) == [text(app, "agents_busy")]
    state = state_of(app, call_sid)
    assert state is not None and state["ended"] is True


def test_hold_without_music_pauses_no_longer_than_the_wait_left(
    make_app: Any, tmp_path: Path
) -> None:
    app = transfer_app(
        make_app,
        tmp_path,
        "queue:support",
        "    hold_prompt: connecting\n    queue_max_wait: 45\n",
        IVR_HOLD_MUSIC_URL="none",  # silence between announcements, not Twilio's music
    )
    call_sid, wait_url = held_call(app)

    first = twiml(post(app, wait_url, wait_form(call_sid, 0)))
    later = twiml(post(app, wait_url, wait_form(call_sid, 40)))

    assert says(first) == [text(app, "connecting"), text(app, "queue_position_next")]
    # The next announcement would fall due at 60 s; the maximum wait (45 s) comes first.
    assert [(c.tag, c.get("length")) for c in first][2:] == [("Pause", "45"), ("Redirect", None)]
    assert [(c.tag, c.get("length")) for c in later] == [("Pause", "5"), ("Redirect", None)]


def test_hold_prompt_speaks_the_callers_language(make_app: Any, tmp_path: Path) -> None:
    app = transfer_app(make_app, tmp_path, "queue:support", "    queue_max_wait: 300\n")
    call_sid, wait_url = held_call(app)
    with app.app_context():
        from ivr.calls import store

        state = store.load(call_sid)
        assert state is not None
        state.language = "es-US"
        store.save(state)

    doc = twiml(post(app, wait_url, wait_form(call_sid, 0)))

    assert says(doc) == [
        text(app, "queue_hold", "es-US"),
        text(app, "queue_position_next", "es-US"),
    ]
    assert [say.get("language") for say in doc.iter("Say")] == ["es-US", "es-US"]


def test_queue_without_hold_settings_holds_with_the_defaults(make_app: Any, tmp_path: Path) -> None:
    """No hold fields: our waitUrl still, with the `queue_hold` prompt, the place and
    Twilio's classical track (IVR_HOLD_MUSIC_URL's default), never dead air."""
    app = transfer_app(make_app, tmp_path, "queue:support")

    call_sid, wait_url = held_call(app)
    doc = twiml(post(app, wait_url, wait_form(call_sid, 0)))

    assert says(doc) == [text(app, "queue_hold"), text(app, "queue_position_next")]
    assert doc.findtext("Play") == DEFAULT_HOLD_MUSIC and doc.find("Pause") is None


@pytest.mark.parametrize(
    "how",
    ["stale-step", "lost-state", "malformed-sid"],
)
def test_hold_request_for_no_such_transfer_leaves_the_queue(
    make_app: Any, tmp_path: Path, how: str
) -> None:
    """Never a <Dial> from inside a queue: out of it, and the action moves the call on."""
    app = transfer_app(make_app, tmp_path, "queue:support", "    queue_max_wait: 300\n")
    call_sid, wait_url = held_call(app)
    if how == "stale-step":
        wait_url = wait_url.split("?")[0] + f"?s={step_of(wait_url) + 5}"
    elif how == "lost-state":
        call_sid = new_sid()
    else:
        call_sid = "CA-not-a-sid"

    response = post(app, wait_url, wait_form(call_sid, 10))

    assert response.status_code == 200
    assert_leave(response.get_data(as_text=True))


def test_hold_with_redis_down_keeps_the_caller_holding(make_app: Any, tmp_path: Path) -> None:
    """A storage blip must not lose the caller's place: pause, and Twilio asks again."""
    transfer_app(make_app, tmp_path, "queue:support", "    queue_max_wait: 300\n")
    app = make_app(
        IVR_FLOWS_DIR=str(tmp_path / "flows"),
        IVR_PROMPTS_DIR=str(PROMPTS),
        IVR_FLOW="transfer",
        REDIS_URL=CLOSED_REDIS,
        IVR_STORAGE_TIMEOUT="0.5",
    )

    doc = twiml(post(app, "/voice/queue/wait?s=1", wait_form(new_sid(), 10)))

    assert [(child.tag, child.get("length")) for child in doc] == [("Pause", "20")]
    # …but not forever: past the longest wait allowed, out of the queue.
    late = post(app, "/voice/queue/wait?s=1", wait_form(new_sid(), 3600))
    assert_leave(late.get_data(as_text=True))


def test_hold_requests_must_be_signed(make_app: Any, tmp_path: Path) -> None:
    app = transfer_app(make_app, tmp_path, "queue:support", "    queue_max_wait: 300\n")
    call_sid, wait_url = held_call(app)

    response = post(app, wait_url, wait_form(call_sid, 10), token="another-auth-token")

    assert response.status_code == 403


# --- journeys through the simulator -------------------------------------------------------


@pytest.fixture
def logs_checked(caplog: pytest.LogCaptureFixture, outbox_path: Path) -> Iterator[None]:
    """Fails the test if any log record carries a code, keys pressed or a full number."""
    yield from checked_logs(caplog, outbox_path)


def support_copy(tmp_path: Path, agent_node_extra: str) -> tuple[Path, Path]:
    """flows/ and prompts/ copied, with lines added to the `agent_verified` node."""
    flows, prompts = tmp_path / "flows", tmp_path / "prompts"
    shutil.copytree(FLOWS, flows)
    shutil.copytree(PROMPTS, prompts)
    path = flows / "support.yaml"
    original = "  agent_verified:\n    type: transfer\n"
    body = path.read_text()
    assert original in body, "the default flow changed; update this test"
    if "queue:" not in agent_node_extra and "workflow:" not in agent_node_extra:
        # The call-back offer sits only on a target that holds callers.
        body = body.replace("    offer_callback_after: 120\n", "", 1)
    path.write_text(body.replace(original, original + agent_node_extra, 1))
    return flows, prompts


def test_two_numbers_ring_at_once_and_nobody_answers(
    make_app: Any, tmp_path: Path, logs_checked: None
) -> None:
    """One <Dial> rings both agents, each leg with the whisper; nobody answers, so the
    node's unanswered exit speaks — never silence."""
    flows, prompts = support_copy(tmp_path, f'    target: "{AGENT_A}, {AGENT_B}"\n')
    app = make_app(IVR_FLOWS_DIR=str(flows), IVR_PROMPTS_DIR=str(prompts))
    add_account(app, "Jane Doe", JANE_PHONE, "10004321")

    result = Phone(app).call(JANE_PHONE, TO_AN_AGENT, agent="no-answer")

    dial = dial_of(result)
    step = step_of(dial.get("action"))
    assert [(leg.tag, (leg.text or "").strip()) for leg in dial] == [
        ("Number", AGENT_A),
        ("Number", AGENT_B),
    ]
    assert {leg.get("url") for leg in dial} == {f"/voice/whisper?s={step}"}
    assert result.transfers == [f"dial number {AGENT_A}", f"dial number {AGENT_B}"]
    assert result.heard("caller")[-3:] == [
        text(app, "connecting"),
        text(app, "agents_busy"),
        text(app, "voicemail_prompt"),  # then the beep: a message, never a bare goodbye
    ]
    _, last = caller_documents(result)[-1]
    assert [child.tag for child in last] == ["Say", "Say", "Record", "Redirect"]


def test_two_numbers_the_first_to_answer_hears_the_whisper(
    make_app: Any, tmp_path: Path, logs_checked: None
) -> None:
    flows, prompts = support_copy(tmp_path, f'    target: "{AGENT_A}, {AGENT_B}"\n')
    app = make_app(IVR_FLOWS_DIR=str(flows), IVR_PROMPTS_DIR=str(prompts))
    add_account(app, "Jane Doe", JANE_PHONE, "10004321")

    result = Phone(app).call(JANE_PHONE, TO_AN_AGENT, agent="accept")

    assert result.heard("agent")[0] == verified_whisper(
        app, "Jane Doe", "4321", DIGITS_AND_SMS, "caller_request"
    )
    assert any(e.text == f"agent at {AGENT_A} accepted; caller connected" for e in result.events)


def test_full_queue_takes_the_unanswered_exit(
    make_app: Any, tmp_path: Path, logs_checked: None
) -> None:
    """A queue that cannot take the caller (QueueResult queue-full) is not the end."""
    flows, prompts = support_copy(
        tmp_path, f"    target: queue:support\n    hold_music: {MUSIC}\n    queue_max_wait: 300\n"
    )
    app = make_app(IVR_FLOWS_DIR=str(flows), IVR_PROMPTS_DIR=str(prompts))
    add_account(app, "Jane Doe", JANE_PHONE, "10004321")

    result = Phone(app).call(JANE_PHONE, TO_AN_AGENT, agent="busy")

    assert result.transfers == ["enqueue support"]
    enqueue = next(e for _, doc in caller_documents(result) for e in doc.iter("Enqueue"))
    assert (enqueue.get("waitUrl") or "").startswith("/voice/queue/wait?s=")
    assert result.heard("caller")[-2:] == [text(app, "agents_busy"), text(app, "voicemail_prompt")]
