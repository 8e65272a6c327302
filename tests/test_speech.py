"""Speech for menus (issue 15, item 6): words choose a menu option alongside keys.

Matching is pure text work (ivr.flow.engine.speech); the engine asks with
`input="dtmf speech"` only at a menu with `speech`, notes a spoken answer on the
timeline as `input: speech` with no words, and keeps digits, codes and phone numbers
keypad-only (the loader refuses `speech` there, and no Gather for them ever listens).
Journeys run the default flow with speech switched on, through the simulator's
`say:` token, every TwiML answer checked against Twilio's schema.
"""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from caller import Phone
from flask import Flask
from kit import AGENT, JANE_PHONE, add_account, caller_documents, greeting, text
from sqlalchemy import select
from twiml_schema import assert_valid_twiml

from ivr.flow.engine import Engine, Input, Turn
from ivr.flow.engine.speech import hints, match, words
from ivr.flow.instructions import Gather, Hangup, Transfer
from ivr.flow.loader import check_definitions, load_definitions
from ivr.flow.model import NODE_TYPES, InputNode, MenuNode, TransferTarget
from ivr.flow.model.menus import SPEECH_KINDS
from ivr.history import record
from ivr.simulator.keypads import spoken
from ivr.simulator.sandbox.script import Answer, Script, ScriptError
from ivr.storage import db
from ivr.storage.models import CallRecord
from ivr.voice import twiml

ROOT = Path(__file__).resolve().parent.parent
AGENTS = TransferTarget("number", "+15005550006")
SID = "CA" + "5" * 32

MENU_EN = {
    "1": "change my number, new number",
    "2": "agent, a person, talk to someone",
    "3": "goodbye, that's all",
}
MENU_ES = {
    "1": "cambiar mi número, número nuevo",
    "2": "agente, una persona",
    "3": "adiós, eso es todo",
}
YES_NO_EN = {"1": "yes, correct, that's right, right", "2": "no, wrong, not right"}
YES_NO_ES = {"1": "sí, correcto, es correcto", "2": "no, no es correcto, está mal"}
KEYS = ["1", "2", "3", "9"]


# --- matching -------------------------------------------------------------------------------


def test_words_drop_case_punctuation_and_accents() -> None:
    assert words("¿Sí? ¡NÚMERO nuevo, por favor!") == ["si", "numero", "nuevo", "por", "favor"]
    assert words("That's   right.") == ["that", "s", "right"]


@pytest.mark.parametrize(
    ("said", "options", "language", "key"),
    [
        ("I want to change my number", MENU_EN, "en-US", "1"),
        ("Agent.", MENU_EN, "en-US", "2"),
        ("can I talk to someone please", MENU_EN, "en-US", "2"),
        ("Goodbye!", MENU_EN, "en-US", "3"),
        ("quiero cambiar mi numero", MENU_ES, "es-US", "1"),  # no accent heard
        ("Un número nuevo, por favor", MENU_ES, "es-US", "1"),
        ("AGENTE", MENU_ES, "es-US", "2"),
        ("Adiós, eso es todo.", MENU_ES, "es-US", "3"),
        # A spoken digit chooses that key, as if pressed, in the call's language.
        ("two", MENU_EN, "en-US", "2"),
        ("option nine", MENU_EN, "en-US", "9"),
        ("dos", MENU_ES, "es-US", "2"),
        ("el nueve", MENU_ES, "es-US", "9"),
        ("3", MENU_EN, "en-US", "3"),
        # The same option twice is still one answer.
        ("change my number, a new number", MENU_EN, "en-US", "1"),
        ("one, change my number", MENU_EN, "en-US", "1"),
        # A phrase inside a longer phrase of another option does not count.
        ("that's not right", YES_NO_EN, "en-US", "2"),
        ("yes that's right", YES_NO_EN, "en-US", "1"),
        ("Sí, es correcto", YES_NO_ES, "es-US", "1"),
        ("no es correcto", YES_NO_ES, "es-US", "2"),
    ],
)
def test_one_option_matches(said: str, options: dict[str, str], language: str, key: str) -> None:
    assert match(said, options, KEYS, language) == key


@pytest.mark.parametrize(
    ("said", "options", "language"),
    [
        ("what is my balance", MENU_EN, "en-US"),  # nothing matches
        ("renumber", MENU_EN, "en-US"),  # only whole words count
        ("agent, no, change my number", MENU_EN, "en-US"),  # two options
        ("no, that's right", YES_NO_EN, "en-US"),  # yes and no
        ("cuatro", MENU_ES, "es-US"),  # a spoken digit that is no option
        ("five", MENU_EN, "en-US"),
        ("dos", MENU_EN, "en-US"),  # Spanish digits count only on a Spanish call
        ("uno o dos", MENU_ES, "es-US"),  # two digits
        ("", MENU_EN, "en-US"),
        ("?!", MENU_EN, "en-US"),
    ],
)
def test_no_match_or_two_matches_choose_nothing(
    said: str, options: dict[str, str], language: str
) -> None:
    assert match(said, options, KEYS, language) is None


def test_hints_list_every_phrase_once() -> None:
    too_long = "word " * 25  # over Twilio's 100 characters a hint: matched, not hinted
    assert hints(["agent, a person", "a person,  new   number", " , ", too_long]) == (
        "agent, a person, new number"
    )
    assert match(too_long, {"1": too_long}, [], "en-US") == "1"


# --- the engine ------------------------------------------------------------------------------

SPEECH_FLOW = """
name: speechy
start: language
languages: [en-US, es-US]
max_inputs: 20
nodes:
  language:
    type: choose_language
    prompt: language_option
    options: {1: en-US, 2: es-US}
    next: digits
    no_input: digits
    invalid: language
    too_many_tries: digits
  digits:
    type: collect_digits
    prompt: test_digits
    save_as: reference
    min_length: 1
    max_length: 8
    next: menu
    no_input: menu
    invalid: digits
    too_many_tries: menu
  menu:
    type: menu
    prompt: test_menu
    retry_prompt: test_menu_retry
    max_tries: 2
    options: {1: confirm, 2: agent, 3: goodbye, 9: menu}
    speech: {1: speech_change_number, 2: speech_agent, 3: speech_goodbye, 9: speech_repeat}
    no_input: agent
    invalid: menu
    too_many_tries: agent
  confirm:
    type: menu
    prompt: test_confirm
    options: {1: goodbye, 2: menu}
    speech: {1: speech_yes, 2: speech_no}
    no_input: menu
    invalid: confirm
    too_many_tries: menu
  agent:
    type: transfer
    reason: caller_request
    unanswered: goodbye
  goodbye:
    type: hangup
    prompt: goodbye
"""

TEST_PROMPTS = {
    "en-US": {
        "test_digits": "Enter your reference, then press pound.",
        "test_menu": "Press 1 or say change my number. Press 2 or say agent.",
        "test_menu_retry": "Sorry. Press 1 or say change my number. Press 2 or say agent.",
        "test_confirm": "Is that right? Press 1 or say yes, press 2 or say no.",
        "test_blank": " , ",
    },
    "es-US": {
        "test_digits": "Marque su referencia y después oprima numeral.",
        "test_menu": "Oprima 1 o diga cambiar mi número. Oprima 2 o diga agente.",
        "test_menu_retry": "Perdón. Oprima 1 o diga cambiar mi número. Oprima 2 o diga agente.",
        "test_confirm": "¿Es correcto? Oprima 1 o diga sí, oprima 2 o diga no.",
        "test_blank": " , ",
    },
}


def _definitions_dir(tmp_path: Path, flow: str) -> tuple[Path, Path]:
    """A flows dir holding `flow`, and a copy of the prompts with the test's own prompts."""
    prompts = tmp_path / "prompts"
    shutil.copytree(ROOT / "prompts", prompts)
    for language, texts in TEST_PROMPTS.items():
        path = prompts / f"{language}.yaml"
        extra = "".join(f"  {key}: {json.dumps(value)}\n" for key, value in texts.items())
        path.write_text(path.read_text(encoding="utf-8") + extra, encoding="utf-8")
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "speechy.yaml").write_text(flow, encoding="utf-8")
    return flows, prompts


@pytest.fixture
def speech_engine(tmp_path: Path) -> Engine:
    flows, prompts = _definitions_dir(tmp_path, SPEECH_FLOW)
    definitions = load_definitions(flows, prompts, "US")
    return Engine(
        definitions.flows["speechy"],
        definitions.catalog,
        None,  # type: ignore[arg-type]  # no node of this flow looks an account up
        AGENTS,
        "US",
        clock=lambda: 1000.0,
    )


def _at_menu(engine: Engine, language_key: str = "1") -> tuple[Engine, Turn]:
    turn = engine.start(SID, "+14155550100")
    turn = engine.handle(turn.state, Input(language_key, turn.state.step))
    turn = engine.handle(turn.state, Input("42", turn.state.step))
    assert turn.state.node == "menu"
    return engine, turn


def _gather(turn: Turn) -> Gather:
    gather = turn.instructions[-1]
    assert isinstance(gather, Gather)
    return gather


def test_a_menu_with_speech_listens_with_hints_in_the_call_language(
    speech_engine: Engine,
) -> None:
    _, turn = _at_menu(speech_engine)
    gather = _gather(turn)
    assert gather.speech_language == "en-US"
    assert gather.speech_hints is not None
    assert "change my number" in gather.speech_hints and "agent" in gather.speech_hints
    assert gather.num_digits == 1  # keys still end the Gather at once

    _, turn = _at_menu(speech_engine, "2")
    gather = _gather(turn)
    assert gather.speech_language == "es-US"
    assert gather.speech_hints is not None and "cambiar mi número" in gather.speech_hints


def test_words_choose_an_option_and_the_timeline_holds_no_words(speech_engine: Engine) -> None:
    engine, turn = _at_menu(speech_engine)
    said = "I'd like to talk to someone, my name is Jane Doe"
    turn = engine.handle(turn.state, Input(None, turn.state.step, said))

    assert isinstance(turn.instructions[-1], Transfer)
    assert turn.steps[0] == {
        "at": 0,
        "event": "input",
        "node": "menu",
        "input": "speech",
        "keys": 0,
        "result": "accepted",
    }
    assert turn.steps[1]["exit"] == "options.2"
    dumped = json.dumps(turn.steps) + turn.state.to_json()
    for word in ("talk", "someone", "Jane", "Doe"):
        assert word not in dumped


def test_spanish_words_choose_on_a_spanish_call(speech_engine: Engine) -> None:
    engine, turn = _at_menu(speech_engine, "2")
    turn = engine.handle(turn.state, Input(None, turn.state.step, "Quiero un número nuevo"))
    assert turn.state.node == "confirm"
    turn = engine.handle(turn.state, Input(None, turn.state.step, "Sí, es correcto."))
    assert isinstance(turn.instructions[-1], Hangup)
    assert [s["exit"] for s in turn.steps if s["event"] == "exit"] == ["options.1"]


def test_words_that_choose_nothing_are_an_invalid_answer(speech_engine: Engine) -> None:
    engine, turn = _at_menu(speech_engine)
    state = turn.state
    turn = engine.handle(state, Input(None, state.step, "what is my balance"))
    assert turn.state.node == "menu" and turn.state.tries == {"menu": 1}
    assert turn.steps[0]["input"] == "speech" and turn.steps[0]["result"] == "invalid"
    assert _gather(turn).prompts[0].text == TEST_PROMPTS["en-US"]["test_menu_retry"]

    # Two options at once is no answer either; this was the last try.
    turn = engine.handle(turn.state, Input(None, turn.state.step, "agent, no, goodbye"))
    assert turn.steps[0]["result"] == "too_many_tries"
    assert isinstance(turn.instructions[-1], Transfer)
    assert turn.state.failure == "too_many_tries"


def test_keys_and_star_still_work_at_a_menu_with_speech(speech_engine: Engine) -> None:
    engine, turn = _at_menu(speech_engine)
    state = turn.state
    repeated = engine.handle(state, Input("*", state.step))
    assert repeated.steps[0]["input"] == "repeat" and repeated.state.node == "menu"
    assert repeated.state.tries == {}
    pressed = engine.handle(repeated.state, Input("1", repeated.state.step))
    assert pressed.state.node == "confirm"
    assert pressed.steps[0]["input"] == "keys" and pressed.steps[0]["keys"] == 1
    # Keys win when Twilio sends both.
    both = engine.handle(repeated.state, Input("2", repeated.state.step, "goodbye"))
    assert isinstance(both.instructions[-1], Transfer)


def test_speech_where_nobody_listens_for_it_is_no_input(speech_engine: Engine) -> None:
    engine = speech_engine
    turn = engine.start(SID, "+14155550100")
    turn = engine.handle(turn.state, Input("1", turn.state.step))
    assert turn.state.node == "digits"
    gather = _gather(turn)
    assert gather.speech_hints is None and gather.speech_language is None

    turn = engine.handle(turn.state, Input(None, turn.state.step, "four two"))
    assert turn.steps[0]["input"] == "none" and turn.steps[0]["result"] == "reprompt"
    assert "reference" not in turn.state.slots
    # Blank words at a menu are no input too.
    turn = engine.handle(turn.state, Input("42", turn.state.step))
    turn = engine.handle(turn.state, Input(None, turn.state.step, "   "))
    assert turn.steps[0]["input"] == "none"


def test_the_gather_with_speech_renders_as_valid_twiml(speech_engine: Engine) -> None:
    _, turn = _at_menu(speech_engine, "2")
    links = twiml.Links(
        input=lambda step: f"/voice/input?s={step}", dial=lambda step: "/d", whisper=None
    )
    document = twiml.render(turn.instructions, links)
    assert_valid_twiml(document)
    gather = ET.fromstring(document).find("Gather")
    assert gather is not None
    assert gather.get("input") == "dtmf speech"
    assert gather.get("language") == "es-US"
    assert "agente" in (gather.get("hints") or "")


# --- keypad-only nodes -------------------------------------------------------------------------


def test_only_menus_have_speech() -> None:
    """The proof behind "keypad-only": no other input kind has a speech field, so no
    flow can make the engine listen for words where digits, codes or numbers go."""
    with_speech = {
        name
        for name, kind in NODE_TYPES.items()
        if issubclass(kind, InputNode) and "speech" in kind.__dataclass_fields__
    }
    assert with_speech == {"menu"}
    assert (MenuNode,) == SPEECH_KINDS


def test_no_keypad_only_node_of_the_default_flow_listens_for_speech() -> None:
    """The default flow listens for speech at its two menus only."""
    definitions = load_definitions(ROOT / "flows", ROOT / "prompts", "US")
    engine = Engine(definitions.flows["support"], definitions.catalog, None, AGENTS, "US")  # type: ignore[arg-type]
    listening = set()
    for node in definitions.flows["support"].nodes.values():
        if not isinstance(node, InputNode):
            continue
        turn = engine.start(SID, "+14155550100")
        turn.state.node = node.id
        gather = engine._gather(turn, node)
        if gather.speech_hints is not None:
            listening.add(node.id)
            assert isinstance(node, MenuNode)
    assert listening == {"menu", "confirm_new_number"}


KEYPAD_ONLY = [
    ("check_account_digits", "    mode: last4\n    ok: x\n    ambiguous: x\n"),
    ("check_code", "    ok: x\n    expired: x\n    locked: x\n"),
    ("collect_new_number", "    ok: x\n    taken: x\n    needs_code: x\n"),
    ("check_callback_code", None),
    ("collect_digits", "    save_as: ref\n    next: x\n"),
    ("choose_language", "    options: {1: en-US}\n    next: x\n"),
]


@pytest.mark.parametrize(("kind", "fields"), KEYPAD_ONLY)
def test_the_loader_refuses_speech_on_keypad_only_nodes(
    tmp_path: Path, kind: str, fields: str | None
) -> None:
    flows, prompts = _definitions_dir(tmp_path, SPEECH_FLOW)
    node = f"  asked:\n    type: {kind}\n    prompt: goodbye\n"
    node += fields or ""
    node += "    speech: {1: speech_yes}\n"
    node += "    no_input: x\n    invalid: x\n    too_many_tries: x\n"
    source = SPEECH_FLOW.replace("  goodbye:\n", node + "  goodbye:\n")
    (flows / "speechy.yaml").write_text(source, encoding="utf-8")
    line = source.splitlines().index("    speech: {1: speech_yes}") + 1

    _, problems = check_definitions(flows, prompts, "US")

    refused = [p for p in problems if p.where == "asked" and p.field == "speech"]
    assert len(refused) == 1, problems
    problem = refused[0]
    assert problem.file.endswith("speechy.yaml") and problem.line == line
    assert f"a {kind} node is keypad-only" in problem.message
    assert "only menu nodes accept speech" in problem.message
    assert "unknown key" not in problem.message
    if kind != "choose_language":
        assert "transcribed outside our control" in problem.message
    assert f"speechy.yaml:{line}" in str(problem)


def test_other_unknown_keys_are_still_reported_as_such(tmp_path: Path) -> None:
    flows, prompts = _definitions_dir(tmp_path, SPEECH_FLOW)
    source = SPEECH_FLOW.replace(
        "    save_as: reference\n",
        "    save_as: reference\n    speech: {1: speech_yes}\n    sped: 1\n",
    )
    (flows / "speechy.yaml").write_text(source, encoding="utf-8")
    _, problems = check_definitions(flows, prompts, "US")
    assert [(p.where, p.field) for p in problems] == [("digits", "sped"), ("digits", "speech")]
    assert "unknown key; allowed" in problems[0].message
    assert "speech" not in problems[0].message.split("allowed", 1)[1]


@pytest.mark.parametrize(
    ("old", "new", "field", "words_in_message"),
    [
        ("3: speech_goodbye,", "4: speech_goodbye,", "speech.4", "not one of the menu's options"),
        ("9: speech_repeat}", "9: speech_repaet}", "speech.9", "prompt 'speech_repaet' is missing"),
        (
            "{1: speech_yes, 2: speech_no}",
            "{1: speech_yes, 12: speech_no}",
            "speech",
            "keypad digits",
        ),
        ("{1: speech_yes, 2: speech_no}", "{}", "speech", "non-empty mapping"),
        # The same words for two options could never choose either.
        ("{1: speech_yes, 2: speech_no}", "{1: speech_yes, 2: speech_yes}", "speech.2", "keys 1"),
        # An option whose prompt lists no phrase could never be said.
        ("{1: speech_yes, 2: speech_no}", "{1: speech_yes, 2: test_blank}", "speech.2", "no phr"),
    ],
)
def test_menu_speech_is_validated(
    tmp_path: Path, old: str, new: str, field: str, words_in_message: str
) -> None:
    flows, prompts = _definitions_dir(tmp_path, SPEECH_FLOW)
    assert old in SPEECH_FLOW
    source = SPEECH_FLOW.replace(old, new)
    (flows / "speechy.yaml").write_text(source, encoding="utf-8")
    _, problems = check_definitions(flows, prompts, "US")
    assert [p.field for p in problems] == [field], problems
    assert words_in_message in problems[0].message
    assert problems[0].line is not None


# --- the simulator ---------------------------------------------------------------------------


@pytest.fixture
def speech_app(app: Flask) -> Flask:
    """The default flow: speech at its main menu and the new-number confirmation."""
    return app


def test_the_simulator_token_is_words() -> None:
    assert spoken("say:  change   my number ") == "change my number"
    assert spoken("say:") == ""
    assert spoken("12#") is None and spoken("@code") is None


def test_a_caller_asks_for_an_agent_by_voice(speech_app: Flask) -> None:
    add_account(speech_app, "Jane Doe", JANE_PHONE, "10004321")

    result = Phone(speech_app).call(
        JANE_PHONE, ["1", "say:four three two one", "4321", "@code", "say:An agent, please."]
    )

    assert result.heard("caller") == [
        *greeting(speech_app),
        text(speech_app, "enter_last4"),
        text(speech_app, "enter_last4"),  # words at a keypad-only prompt: silence, asked again
        text(speech_app, "code_sent_sms"),
        text(speech_app, "enter_code"),
        text(speech_app, "main_menu", first_name="Jane"),
        text(speech_app, "connecting"),
    ]
    assert result.transfers == [f"dial number {AGENT}"]
    documents = [doc for _, doc in caller_documents(result)]
    listening = [g for doc in documents for g in doc.iter("Gather") if g.get("input") != "dtmf"]
    assert len(listening) == 1  # the main menu only; never the digits or the code
    assert listening[0].get("input") == "dtmf speech"
    assert listening[0].get("language") == "en-US"
    assert "change my number" in (listening[0].get("hints") or "")

    # The stored timeline says the caller spoke at the menu; never what they said.
    with speech_app.app_context():
        row = db.session().scalar(select(CallRecord).where(CallRecord.call_sid == result.call_sid))
        assert row is not None
        steps = record.stored_steps(row)
    inputs = [
        (s["node"], s["input"], s["keys"], s["result"]) for s in steps if s["event"] == "input"
    ]
    assert inputs[-1] == ("menu", "speech", 0, "accepted")
    assert ("last4", "none", 0, "reprompt") in inputs  # the words at the digits prompt
    assert "please" not in json.dumps(steps).lower() and "four" not in json.dumps(steps)


def test_a_spanish_caller_confirms_a_new_number_by_voice(speech_app: Flask) -> None:
    add_account(speech_app, "Jane Doe", JANE_PHONE, "10004321")

    result = Phone(speech_app).call(
        JANE_PHONE,
        ["2", "4321", "@code", "say:Quiero cambiar mi número", "4155550199", "say:¿eh?", "say:no"],
    )

    heard = result.heard("caller")
    confirm = [line for line in heard if line.startswith("Usted marcó")]
    assert len(confirm) == 1 and heard[-1] == text(speech_app, "enter_new_number", "es-US")
    retry = [line for line in heard if line.startswith("Lo sentimos, no le entendimos. Usted")]
    assert len(retry) == 1
    listening = [
        g
        for _, doc in caller_documents(result)
        for g in doc.iter("Gather")
        if g.get("input") == "dtmf speech"
    ]
    assert {g.get("language") for g in listening} == {"es-US"}
    assert "sí" in (listening[-1].get("hints") or "")


# --- the web simulator's script ------------------------------------------------------------


def test_a_script_answer_may_speak() -> None:
    script = Script.new("support", "live", "abcd1234", "customer:0")
    spoken_answer = script.with_answer(Answer("caller", "keys", "say:¿Sí, por favor!"))
    again = Script.from_json(spoken_answer.to_json())
    assert again.answers[-1].keys == "say:¿Sí, por favor!"
    for bad in ("say:", "say:<script>", "say:" + "a" * 201, "say me"):
        with pytest.raises(ScriptError):
            script.with_answer(Answer("caller", "keys", bad))
