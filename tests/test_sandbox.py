"""The simulator's sandbox: scripts are checked strictly, a replay of the same script
hears the same words and gets the same codes, and answers that no longer fit the call
are refused with a reason; the sandbox boots from its own files, waits a bounded time
for another replay and bounds each replay's work."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from ivr.app import create_app
from ivr.calls import runtime
from ivr.errors import ConfigError
from ivr.simulator.sandbox import (
    MAX_ANSWERS,
    MAX_SCRIPT_CHARS,
    Answer,
    Replay,
    ReplayTooLong,
    Sandbox,
    SandboxBusy,
    SandboxFailed,
    Script,
    ScriptError,
    SeededCodes,
    sandbox_for,
    service,
)
from ivr.simulator.sandbox.service import (
    LOG_PREFIX,
    MAX_REPLAY_REQUESTS,
    Budgeted,
    SandboxLogName,
)
from ivr.versions import store
from ivr.versions.store import Draft, LoadedFlow

SEED = "0123456789abcdef0123456789abcdef"
VERSION = "0123456789ab"  # what a replay is pinned to (the sandbox plays what it is given)


@pytest.fixture
def served(app: Flask) -> Draft:
    settings = app.config["IVR_SETTINGS"]
    return store.read_draft(
        settings.flows_dir, settings.prompts_dir, "support", settings.default_region
    )


@pytest.fixture
def sandbox(app: Flask, served: Draft) -> Sandbox:
    return sandbox_for(app.config["IVR_SETTINGS"], create_app, served)


@pytest.fixture
def working(app: Flask) -> LoadedFlow:
    with app.app_context():
        return runtime.get().working


def script(*answers: Answer, caller: str = "customer:0", language: str = "en-US") -> Script:
    return Script("support", "live", VERSION, caller, language, SEED, tuple(answers))


def caller(keys: str) -> Answer:
    return Answer("caller", "keys", keys)


def heard(replay: Replay, who: str = "caller") -> list[str]:
    return [e.text for e in replay.events if e.kind == "say" and e.who == who]


def test_a_new_call_stops_at_the_first_question_after_the_language_menu(
    sandbox: Sandbox, working: LoadedFlow
) -> None:
    replay = sandbox.replay(working, script())
    assert replay.turn is not None and replay.turn.who == "caller"
    assert replay.turn.kind == "keys"
    assert replay.node == "last4"
    keys = [e.text for e in replay.events if e.kind == "keys"]
    assert keys == ["1"]  # the language menu, answered for English by the sandbox
    assert heard(replay)[-1].startswith("To confirm it's you")


def test_a_chosen_language_answers_the_flow_s_own_menu(
    sandbox: Sandbox, working: LoadedFlow
) -> None:
    replay = sandbox.replay(working, script(language="es-US"))
    assert [e.text for e in replay.events if e.kind == "keys"] == ["2"]
    assert heard(replay)[-1] == working.catalog.text("es-US", "enter_last4")


def test_without_a_language_the_caller_answers_the_menu(
    sandbox: Sandbox, working: LoadedFlow
) -> None:
    replay = sandbox.replay(working, script(language=""))
    assert replay.node == "language"
    assert replay.events[-1].language == "es-US"  # the menu's last option, in Spanish


def test_the_same_script_hears_the_same_words_and_gets_the_same_codes(
    sandbox: Sandbox, working: LoadedFlow
) -> None:
    first = sandbox.replay(working, script(caller("4321")))
    assert first.node == "enter_code"
    assert len(first.codes) == 1 and first.sent[0].channel == "sms"
    assert first.sent[0].to == "+1415•••0100"
    again = sandbox.replay(working, script(caller("4321")))
    assert again.events == first.events
    assert again.codes == first.codes
    # ...so the code read there is still right when keyed in on the next replay.
    on = sandbox.replay(working, script(caller("4321"), caller(first.codes[0])))
    assert on.node == "menu"
    assert heard(on)[-1].startswith("Thank you, Jane.")


def test_another_seed_gives_other_codes(sandbox: Sandbox, working: LoadedFlow) -> None:
    mine = sandbox.replay(working, script(caller("4321")))
    other = Script("support", "draft", VERSION, "customer:0", "en-US", "f" * 32, (caller("4321"),))
    theirs = sandbox.replay(working, other)
    assert mine.codes != theirs.codes


def test_seeded_codes_have_the_length_asked_and_follow_the_count() -> None:
    codes = SeededCodes(SEED)
    first, second = codes(6), codes(8)
    assert len(first) == 6 and len(second) == 8 and first.isdigit() and second.isdigit()
    replayed = SeededCodes(SEED)
    assert (replayed(6), replayed(8)) == (first, second)


def test_an_answer_that_no_longer_fits_the_call_is_refused(
    sandbox: Sandbox, working: LoadedFlow
) -> None:
    with pytest.raises(
        ScriptError, match=re.escape("answer 1 (callee: answer) does not fit the call")
    ):
        sandbox.replay(working, script(Answer("callee", "answer")))


def test_a_hang_up_ends_the_call(sandbox: Sandbox, working: LoadedFlow) -> None:
    replay = sandbox.replay(working, script(Answer("caller", "hangup")))
    assert replay.turn is None and replay.ended_by == "caller-hangup"


def test_answers_left_over_are_counted(sandbox: Sandbox, working: LoadedFlow) -> None:
    replay = sandbox.replay(working, script(Answer("caller", "hangup"), caller("1")))
    assert replay.unused == 1


def test_a_script_survives_its_json() -> None:
    original = script(caller("4321"), Answer("caller", "silence"), Answer("callee", "ignore"))
    assert Script.from_json(original.to_json()) == original


def test_a_new_script_has_a_fresh_seed() -> None:
    one = Script.new("support", "draft", VERSION, "withheld")
    two = Script.new("support", "draft", VERSION, "unknown")
    assert one.seed != two.seed and len(one.seed) == 32


def _raw(**changes: object) -> str:
    data: dict[str, object] = json.loads(script().to_json())
    data.update(changes)
    return json.dumps(data)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "must be a JSON object"),
        (_raw(extra=1), "unknown fields: extra"),
        (_raw(v=1), "v=2"),
        (_raw(seed="xyz"), "seed must be 32 hexadecimal digits"),
        (_raw(caller="customer:99"), "unknown caller"),
        (_raw(flow="../etc"), "flow name"),
        (_raw(chosen="x"), "neither live, draft nor a version id"),
        (_raw(version="draft"), "not a version id"),
        (_raw(version="x"), "not a version id"),
        (_raw(language="english!"), "not a language tag"),
        (_raw(answers={}), "answers must be a list"),
        (_raw(answers=[{"who": "caller", "do": "keys", "keys": "12a"}]), "keys must be 1 to"),
        (_raw(answers=[{"who": "caller", "do": "keys"}]), "keys must be 1 to"),
        (_raw(answers=[{"who": "caller", "do": "dance"}]), "do must be one of"),
        (_raw(answers=[{"who": "agent", "do": "silence"}]), "who must be one of"),
        (_raw(answers=[{"who": "caller", "do": "answer"}]), "only the phone called back"),
        (_raw(answers=[{"who": "caller", "do": "silence", "keys": "1"}]), "only do=keys"),
        (_raw(answers=[{"who": "caller", "do": "silence", "at": 1}]), "unknown fields: at"),
        (_raw(answers=[{"who": "caller", "do": "silence"}] * (MAX_ANSWERS + 1)), "at most"),
        ("{" + " " * MAX_SCRIPT_CHARS + "}", "longer than"),
    ],
)
def test_a_bad_script_is_refused_with_the_reason(raw: str, message: str) -> None:
    with pytest.raises(ScriptError, match=message):
        Script.from_json(raw)


def test_one_sandbox_per_process_and_settings(app: Flask, served: Draft) -> None:
    settings = app.config["IVR_SETTINGS"]
    sandbox = sandbox_for(settings, create_app, served)
    assert sandbox_for(settings, create_app, served) is sandbox
    assert sandbox.settings.delivery == "outbox" and sandbox.settings.redis_url is None
    assert sandbox.settings.database_url != settings.database_url
    assert sandbox.settings.outbox_path != settings.outbox_path


def test_a_code_source_applies_only_inside_its_context() -> None:
    import fakeredis

    from ivr.verification.codes import CodePolicy, CodeService, Issued, codes_from

    service = CodeService(fakeredis.FakeRedis(), "secret", CodePolicy())
    with codes_from(lambda length: "7" * length):
        inside = service.issue(1, "verify", "CA1")
    outside = service.issue(2, "verify", "CA2")
    assert isinstance(inside, Issued) and inside.code == "777777"
    assert isinstance(outside, Issued) and outside.code != "777777"  # secrets again


def test_log_lines_of_a_replay_are_named_as_the_simulators(
    sandbox: Sandbox, working: LoadedFlow, caplog: pytest.LogCaptureFixture
) -> None:
    """A code "sent" in the sandbox must not read like the service's own send in the logs."""
    handler = logging.StreamHandler()
    logging.getLogger().addHandler(handler)
    try:
        with caplog.at_level(logging.INFO):
            sandbox.replay(working, script(caller("4321")))
        assert any(isinstance(f, SandboxLogName) for f in handler.filters)
        renamed = {r.name for r in caplog.records if r.name.startswith(LOG_PREFIX)}
        assert "simulator.ivr.delivery.outbox" in renamed
        assert not [r for r in caplog.records if r.name.startswith("ivr.delivery")]
    finally:
        logging.getLogger().removeHandler(handler)
    logging.getLogger("ivr.delivery.outbox").warning("the service's own line")
    assert caplog.records[-1].name == "ivr.delivery.outbox"


def test_a_replay_past_its_bound_of_work_stops_with_the_reason(
    sandbox: Sandbox, working: LoadedFlow
) -> None:
    assert isinstance(sandbox.transport, Budgeted)
    sandbox.transport.requests = 2
    try:
        with pytest.raises(ReplayTooLong, match="more than 2 webhook requests"):
            sandbox.replay(working, script(caller("4321")))
    finally:
        sandbox.transport.requests = MAX_REPLAY_REQUESTS
    assert sandbox.replay(working, script()).node == "last4"  # nothing left held


def test_a_sandbox_held_too_long_is_busy(
    sandbox: Sandbox, working: LoadedFlow, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "LOCK_WAIT", 0.05)
    ready, done = threading.Event(), threading.Event()

    def another_replay() -> None:
        with sandbox.lock:
            ready.set()
            done.wait(5)

    other = threading.Thread(target=another_replay)
    other.start()
    try:
        assert ready.wait(5)
        started = time.monotonic()
        with pytest.raises(SandboxBusy, match="try again in a moment"):
            sandbox.replay(working, script())
        assert time.monotonic() - started < 2
    finally:
        done.set()
        other.join()
    assert sandbox.replay(working, script()).node == "last4"


def test_the_sandbox_needs_none_of_the_service_s_working_files(
    app: Flask, served: Draft, tmp_path: Path
) -> None:
    """The working files are drafts on disk: broken ones must not stop simulated calls."""
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "support.yaml").write_text("name: support\nnodes: {oops\n")
    settings = replace(app.config["IVR_SETTINGS"], flows_dir=flows, prompts_dir=tmp_path)
    sandbox = Sandbox(settings, create_app, served)
    try:
        replay = sandbox.replay(served.loaded, script())
        assert replay.node == "last4"
        assert sandbox.settings.flows_dir != flows
    finally:
        sandbox.close()


@pytest.mark.parametrize(
    "failure", [ConfigError("IVR_CODE_TTL must be a number"), OSError("No space left on device")]
)
def test_a_sandbox_that_cannot_start_says_so_and_leaves_nothing(
    app: Flask, served: Draft, monkeypatch: pytest.MonkeyPatch, failure: Exception
) -> None:
    monkeypatch.setattr(service, "_sandboxes", {})
    folders: list[str] = []
    real_mkdtemp = service.tempfile.mkdtemp

    def mkdtemp(**kwargs: Any) -> str:
        folders.append(real_mkdtemp(**kwargs))
        return folders[-1]

    monkeypatch.setattr(service.tempfile, "mkdtemp", mkdtemp)

    def refused(environ: Mapping[str, str]) -> Flask:
        raise failure

    with pytest.raises(SandboxFailed, match=f"could not start: {failure}"):
        sandbox_for(app.config["IVR_SETTINGS"], refused, served)
    assert len(folders) == 1 and not Path(folders[0]).exists()
