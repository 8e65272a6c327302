"""Flow versions: the working files are drafts until `ivr flows publish`; new calls hear
the live version within seconds, running calls keep theirs; rollback, history, diff,
export; a refused publish changes nothing."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from caller import Phone
from flask import Flask
from kit import Clock, call_form, caller_documents, gather_step, new_sid, post, says, text, twiml
from sqlalchemy import func, select

from ivr.calls import store
from ivr.calls.runtime import REFRESH_SECONDS
from ivr.storage import db
from ivr.storage.models import AuditEvent, FlowVersion

ROOT = Path(__file__).resolve().parent.parent
OLD_WELCOME = "Thank you for calling Example support."
NEW_WELCOME = "Welcome to Example support, now with versions."
OLD_ASK = "Please enter your account number, then press the pound key."
NEW_ASK = "Key in your account number and the pound key."


def later(clock: Clock) -> None:
    """Move the runtime's clock past its refresh interval."""
    clock.ahead += REFRESH_SECONDS + 0.1


def heard(result: Any) -> list[str]:
    """Everything the caller heard on a simulated call, in order."""
    return [text for _, doc in caller_documents(result) for text in says(doc)]


@pytest.fixture
def ops_app(make_app: Any, working: Path) -> Flask:
    app: Flask = make_app(
        IVR_FLOWS_DIR=str(working / "flows"), IVR_PROMPTS_DIR=str(working / "prompts")
    )
    return app


def edit(working: Path, old: str, new: str, file: str = "prompts/en-US.yaml") -> None:
    path = working / file
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


def flows(app: Flask, *args: str) -> Any:
    result = app.test_cli_runner().invoke(args=["flows", *args])
    return result


def start(app: Flask, call_sid: str) -> ET.Element:
    return twiml(post(app, "/voice/incoming", call_form(call_sid, From="anonymous")))


def press(app: Flask, call_sid: str, step: int, digits: str) -> ET.Element:
    form = call_form(call_sid, From="anonymous", Digits=digits)
    return twiml(post(app, f"/voice/input?s={step}", form))


def stored_versions(app: Flask) -> int:
    with app.app_context():
        return db.session().scalar(select(func.count()).select_from(FlowVersion)) or 0


def test_publish_reaches_new_calls_while_a_running_call_keeps_its_version(
    ops_app: Flask, make_app: Any, working: Path
) -> None:
    clock = Clock()
    ops_app.extensions["ivr.runtime"].clock = clock
    running = new_sid()
    first = start(ops_app, running)  # the first call publishes the working files
    assert OLD_WELCOME in says(first)
    edit(working, OLD_WELCOME, NEW_WELCOME)
    edit(working, OLD_ASK, NEW_ASK)

    later(clock)
    assert OLD_WELCOME in says(start(ops_app, new_sid()))  # a draft changes nothing

    published = flows(ops_app, "publish", "-m", "friendlier greeting", "--json")
    assert published.exit_code == 0, published.output
    version = json.loads(published.output)
    assert version["flow"] == "support" and version["status"] == "published"

    # Another worker (its own app, the same database and Redis) and this one both
    # serve new calls on the new version once their refresh interval has passed.
    other = make_app(IVR_FLOWS_DIR=str(working / "flows"), IVR_PROMPTS_DIR=str(working / "prompts"))
    later(clock)
    assert NEW_WELCOME in says(start(ops_app, new_sid()))
    assert NEW_WELCOME in says(start(other, new_sid()))
    # The call that started before the publish finishes on its own version.
    asked = press(ops_app, running, gather_step(first), "1")
    assert OLD_ASK in says(asked) and NEW_ASK not in says(asked)
    fresh = new_sid()
    asked_fresh = press(ops_app, fresh, gather_step(start(ops_app, fresh)), "1")
    assert NEW_ASK in says(asked_fresh)


def test_a_publish_mid_call_through_the_simulator(
    ops_app: Flask, make_app: Any, working: Path
) -> None:
    """The call in progress keeps its version; calls placed meanwhile, on this app and on
    another instance sharing its storage, hear the new one."""
    clock = Clock()
    ops_app.extensions["ivr.runtime"].clock = clock
    other = make_app(IVR_FLOWS_DIR=str(working / "flows"), IVR_PROMPTS_DIR=str(working / "prompts"))
    meanwhile: dict[str, Any] = {}

    def publish_then_press_1() -> str:
        edit(working, OLD_WELCOME, NEW_WELCOME)
        edit(working, OLD_ASK, NEW_ASK)
        assert flows(ops_app, "publish", "-m", "mid-call").exit_code == 0
        later(clock)
        meanwhile["here"] = Phone(ops_app).call("anonymous", ["1"])
        meanwhile["there"] = Phone(other).call("anonymous", ["1"])
        return "1"

    running = Phone(ops_app).call("anonymous", [publish_then_press_1])

    assert OLD_WELCOME in heard(running) and OLD_ASK in heard(running)
    assert NEW_ASK not in heard(running)
    for result in meanwhile.values():
        assert NEW_WELCOME in heard(result) and NEW_ASK in heard(result)


def test_the_agent_hears_the_whisper_of_the_callers_version(ops_app: Flask, working: Path) -> None:
    clock = Clock()
    ops_app.extensions["ivr.runtime"].clock = clock
    old_whisper = ops_app.extensions["ivr.runtime"].working.catalog.text(
        "en-US", "whisper_unverified"
    )

    def publish_then_silence() -> str:
        edit(working, old_whisper.split(".")[0], "Heads up, caller not verified")
        assert flows(ops_app, "publish").exit_code == 0
        later(clock)
        Phone(ops_app).call("anonymous", [])  # a new call: this worker now knows the new version
        return ""

    result = Phone(ops_app).call("anonymous", [publish_then_silence, "", "", "", ""])

    agent_heard = [
        text
        for url, body in result.documents
        if "/voice/whisper" in url
        for text in says(ET.fromstring(body))
    ]
    assert agent_heard, "the call never reached an agent"
    assert any(old_whisper.split(".")[0] in text for text in agent_heard)
    assert not any("Heads up" in text for text in agent_heard)


def test_a_call_whose_version_is_gone_goes_to_an_agent(ops_app: Flask) -> None:
    call_sid = new_sid()
    first = start(ops_app, call_sid)
    with ops_app.app_context():
        state = store.load(call_sid)
        assert state is not None
        store.save(replace(state, version="0123456789ab"))  # never published

    doc = press(ops_app, call_sid, gather_step(first), "1")

    assert [child.tag for child in doc] == ["Say", "Dial"]
    assert says(doc) == [text(ops_app, "error_apology")]


def test_rollback_history_and_audit(ops_app: Flask, working: Path) -> None:
    clock = Clock()
    ops_app.extensions["ivr.runtime"].clock = clock
    assert flows(ops_app, "publish", "-m", "first").exit_code == 0
    edit(working, OLD_WELCOME, NEW_WELCOME)
    second = json.loads(flows(ops_app, "publish", "-m", "second", "--json").output)

    history = json.loads(flows(ops_app, "history", "--json").output)
    assert [item["message"] for item in history] == ["second", "first"]
    assert [item["live"] for item in history] == [True, False]
    assert all(item["by"] and item["published_at"] for item in history)

    rolled = flows(ops_app, "rollback")
    assert rolled.exit_code == 0, rolled.output
    assert f"is live again (was {second['version']})" in rolled.output
    later(clock)
    assert OLD_WELCOME in says(start(ops_app, new_sid()))
    history = json.loads(flows(ops_app, "history", "--json").output)
    assert [item["live"] for item in history] == [False, True]

    back = flows(ops_app, "rollback", "--to", second["version"][:6])
    assert back.exit_code == 0, back.output
    later(clock)
    assert NEW_WELCOME in says(start(ops_app, new_sid()))
    with ops_app.app_context():
        actions = (
            db.session()
            .scalars(
                select(AuditEvent.action)
                .where(AuditEvent.action.like("flow.%"))
                .order_by(AuditEvent.id)
            )
            .all()
        )
    assert actions == ["flow.published", "flow.published", "flow.rolled_back", "flow.rolled_back"]


def test_publishing_the_live_content_again_stores_nothing(ops_app: Flask) -> None:
    assert flows(ops_app, "publish").exit_code == 0
    again = flows(ops_app, "publish")
    assert again.exit_code == 0
    assert "nothing new stored" in again.output
    assert stored_versions(ops_app) == 1


def test_a_refused_publish_names_the_problem_and_changes_nothing(
    ops_app: Flask, working: Path
) -> None:
    assert flows(ops_app, "publish").exit_code == 0
    edit(working, "start: hours", "start: nowhere", "flows/support.yaml")

    refused = flows(ops_app, "publish")

    assert refused.exit_code == 1
    assert "support.yaml" in refused.output and "nowhere" in refused.output
    assert "nothing was published" in refused.output
    assert stored_versions(ops_app) == 1


LOOP = (
    "  loop_a:\n    type: menu\n    prompt: main_menu_retry\n    options:\n      1: loop_b\n"
    "    no_input: loop_b\n    invalid: loop_a\n    too_many_tries: loop_b\n"
    "  loop_b:\n    type: menu\n    prompt: change_trouble\n    options:\n      1: loop_a\n"
    "    no_input: loop_a\n    invalid: loop_b\n    too_many_tries: loop_a\n"
)
PROOF_BREAKERS = {
    # The code-trouble menu's agent key rewired to the new number: unverified callers get there.
    "bypass": [("      4: agent_unverified\n", "      4: new_number\n")],
    # The digits lead straight to the menu that greets by first name: a leak before the code.
    "leak": [
        (
            "    ok: send_sms\n    ambiguous: account_number",
            "    ok: menu\n    ambiguous: account_number",
        )
    ],
    # Two menus that lead only to each other, reachable from the main menu.
    "trap": [
        ("      9: menu\n", "      8: loop_a\n      9: menu\n"),
        ("  menu:\n", LOOP + "  menu:\n"),
    ],
}


@pytest.mark.parametrize(
    ("kind", "named", "why"),
    [
        ("bypass", "new_number", "reachable without passing both"),
        ("leak", "menu", "reveals account data"),
        ("trap", "loop_a", "a trap: these nodes only lead to each other"),
    ],
)
def test_a_publish_refused_by_a_proof_changes_nothing(
    ops_app: Flask, working: Path, kind: str, named: str, why: str
) -> None:
    first = json.loads(flows(ops_app, "publish", "--json").output)
    for old, new in PROOF_BREAKERS[kind]:
        edit(working, old, new, "flows/support.yaml")

    refused = flows(ops_app, "publish")

    assert refused.exit_code == 1
    assert "support.yaml" in refused.output and f": {named}: " in refused.output
    assert why in refused.output
    assert " → " in refused.output  # the offending path is named
    assert stored_versions(ops_app) == 1
    history = json.loads(flows(ops_app, "history", "--json").output)
    assert [(item["version"], item["live"]) for item in history] == [(first["version"], True)]


def test_a_prompt_only_another_flow_uses_does_not_make_a_new_version(
    ops_app: Flask, working: Path
) -> None:
    """Prompt files are shared by flows: a version counts only the prompts its flow speaks."""
    edit(working, "prompts:\n", "prompts:\n  other_flow_greeting: Hello from another flow.\n")
    first = json.loads(flows(ops_app, "publish", "--json").output)
    edit(working, "Hello from another flow.", "Hi from the other flow.")

    again = json.loads(flows(ops_app, "publish", "--json").output)

    assert again["status"] == "unchanged" and again["version"] == first["version"]
    assert stored_versions(ops_app) == 1
    edit(working, OLD_WELCOME, NEW_WELCOME)  # a prompt this flow speaks does
    assert json.loads(flows(ops_app, "publish", "--json").output)["status"] == "published"


def test_rollback_with_nothing_before_says_so(ops_app: Flask) -> None:
    assert flows(ops_app, "publish").exit_code == 0
    result = flows(ops_app, "rollback")
    assert result.exit_code == 1
    assert "is the oldest" in result.output


def test_export_writes_the_published_files_byte_for_byte(
    ops_app: Flask, working: Path, tmp_path: Path
) -> None:
    published = json.loads(flows(ops_app, "publish", "--json").output)
    edit(working, OLD_WELCOME, NEW_WELCOME)  # the working files move on; the version does not

    out = tmp_path / "export"
    result = flows(ops_app, "export", published["version"], str(out))

    assert result.exit_code == 0, result.output
    for name in ("flows/support.yaml", "prompts/es-US.yaml"):
        assert (out / name).read_bytes() == (ROOT / name).read_bytes()
    assert (out / "prompts/en-US.yaml").read_bytes() == (ROOT / "prompts/en-US.yaml").read_bytes()


def test_diff_against_the_working_files_shows_the_prompt_change(
    ops_app: Flask, working: Path
) -> None:
    assert flows(ops_app, "publish").exit_code == 0
    edit(working, OLD_WELCOME, NEW_WELCOME)

    result = flows(ops_app, "diff", "live", "working")

    assert result.exit_code == 0, result.output
    assert f'- "{OLD_WELCOME}"' in result.output and f'+ "{NEW_WELCOME}"' in result.output
    shown = flows(ops_app, "show")
    assert shown.exit_code == 0 and "welcome" in shown.output
