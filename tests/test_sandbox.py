"""The simulator's sandbox: scripts are checked strictly, a replay of the same script
hears the same words and gets the same codes, and answers that no longer fit the call
are refused with a reason."""

from __future__ import annotations

import json
import logging
import re

import pytest
from flask import Flask

from ivr.app import create_app
from ivr.calls import runtime
from ivr.simulator.sandbox import (
    MAX_ANSWERS,
    MAX_SCRIPT_CHARS,
    Answer,
    Replay,
    Sandbox,
    Script,
    ScriptError,
    SeededCodes,
    sandbox_for,
)
from ivr.simulator.sandbox.service import LOG_PREFIX, SandboxLogName
from ivr.versions.store import LoadedFlow

SEED = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def sandbox(app: Flask) -> Sandbox:
    return sandbox_for(app.config["IVR_SETTINGS"], create_app)


@pytest.fixture
def working(app: Flask) -> LoadedFlow:
    with app.app_context():
        return runtime.get().working


def script(*answers: Answer, caller: str = "customer:0", language: str = "en-US") -> Script:
    return Script("support", "draft", caller, language, SEED, tuple(answers))


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
    other = Script("support", "draft", "customer:0", "en-US", "f" * 32, (caller("4321"),))
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
    one, two = Script.new("support", "draft", "withheld"), Script.new("support", "draft", "unknown")
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
        (_raw(v=2), "v=1"),
        (_raw(seed="xyz"), "seed must be 32 hexadecimal digits"),
        (_raw(caller="customer:99"), "unknown caller"),
        (_raw(flow="../etc"), "flow name"),
        (_raw(version="x"), "neither 'draft' nor a version id"),
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


def test_one_sandbox_per_process_and_settings(app: Flask) -> None:
    settings = app.config["IVR_SETTINGS"]
    assert sandbox_for(settings, create_app) is sandbox_for(settings, create_app)
    sandbox = sandbox_for(settings, create_app)
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
