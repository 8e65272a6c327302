"""Hold that informs: the `<Enqueue>` waitUrl says the caller's place and an estimated
wait, in their language, every `announce_every` seconds, between hold music or pauses.

Webhooks are posted signed, as Twilio posts them (QueueTime, QueuePosition,
CurrentQueueSize, AvgQueueTime, QueueSid), into an app whose only flow starts at a
transfer node; the estimate and its rounding are checked on their own too.
"""

from __future__ import annotations

import itertools
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from caller import Phone, SchemaCheckingTransport
from conftest import AUTH_TOKEN, PUBLIC_URL
from flask import Flask
from kit import JANE_PHONE, add_account, call_form, new_sid, post, says, text, twiml
from twiml_schema import assert_valid_twiml

from ivr.config_line import DEFAULT_HOLD_MUSIC
from ivr.flow.instructions import Leave, Pause, Play, Say
from ivr.flow.loader import check_definitions, load_catalog, load_definitions
from ivr.flow.model import TransferTarget
from ivr.flow.model.transfer import DEFAULT_ANNOUNCE_EVERY
from ivr.flow.proofs import NON_ACCOUNT_PLACEHOLDERS
from ivr.simulator.player import Scripted, Simulator
from ivr.simulator.transport import InProcess, Reply
from ivr.voice import hold

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = ROOT / "prompts"
WORKFLOW = "WW" + "0123456789abcdef" * 2
MUSIC = "https://media.example.test/hold/classical.mp3"
CLOSED_REDIS = "redis://127.0.0.1:1/0"


# --- helpers -----------------------------------------------------------------------------


def hold_flow(directory: Path, target: str | None, extra: str = "") -> Path:
    """A flow whose first node transfers (to `target`, or the configured target)."""
    directory.mkdir(exist_ok=True)
    path = directory / "transfer.yaml"
    own = f"    target: {target}\n" if target else ""
    path.write_text(
        "name: transfer\nstart: agent\nlanguages: [en-US, es-US]\nnodes:\n"
        "  agent:\n    type: transfer\n    reason: caller_request\n"
        f"{own}{extra}    unanswered: sorry\n"
        "  sorry:\n    type: hangup\n    prompt: agents_busy\n"
    )
    return path


def hold_app(
    make_app: Any,
    tmp_path: Path,
    target: str | None = "queue:support",
    extra: str = "",
    prompts: Path = PROMPTS,
    **env: str,
) -> Flask:
    hold_flow(tmp_path / "flows", target, extra)
    app: Flask = make_app(
        IVR_FLOWS_DIR=str(tmp_path / "flows"),
        IVR_PROMPTS_DIR=str(prompts),
        IVR_FLOW="transfer",
        **env,
    )
    return app


def held(app: Flask, language: str = "en-US") -> tuple[str, str, ET.Element]:
    """A new call, enqueued: its CallSid, the waitUrl and the Enqueue element."""
    call_sid = new_sid()
    doc = twiml(post(app, "/voice/incoming", call_form(call_sid)))
    enqueue = doc.find("Enqueue")
    assert enqueue is not None, ET.tostring(doc, encoding="unicode")
    wait_url = enqueue.get("waitUrl") or ""
    assert urlsplit(wait_url).path == "/voice/queue/wait"
    assert enqueue.get("waitUrlMethod") == "POST"
    step = parse_qs(urlsplit(wait_url).query)["s"]
    assert step == parse_qs(urlsplit(enqueue.get("action") or "").query)["s"]
    if language != "en-US":
        with app.app_context():
            from ivr.calls import store

            state = store.load(call_sid)
            assert state is not None
            state.language = language
            store.save(state)
    return call_sid, wait_url, enqueue


def wait_form(
    call_sid: str,
    waited: int,
    position: int | None = 1,
    size: int | None = 1,
    average: int | None = 0,
) -> dict[str, str]:
    """What Twilio posts to an Enqueue waitUrl (a field given as None is left out)."""
    fields = {"QueueSid": "QU" + "1" * 32, "QueueTime": str(waited), "MaxQueueSize": "100"}
    for name, value in (
        ("QueuePosition", position),
        ("CurrentQueueSize", size),
        ("AvgQueueTime", average),
    ):
        if value is not None:
            fields[name] = str(value)
    return call_form(call_sid, **fields)


def wait(app: Flask, url: str, call_sid: str, waited: int, **facts: int | None) -> ET.Element:
    return twiml(post(app, url, wait_form(call_sid, waited, **facts)))


def assert_leave(body: str) -> None:
    """Only `<Leave/>` (Twilio's XSD rejects `<Leave>`: tests/twilio/README.md, "Known
    gaps"; so this document's structure is asserted instead)."""
    root = ET.fromstring(body)
    assert root.tag == "Response"
    assert [(child.tag, dict(child.attrib), (child.text or "").strip()) for child in root] == [
        ("Leave", {}, "")
    ]


def again(doc: ET.Element) -> str:
    """Where the document's closing `<Redirect>` sends Twilio next (the waitUrl with a=)."""
    assert doc[-1].tag == "Redirect" and doc[-1].get("method") == "POST", list(doc)
    url = (doc[-1].text or "").strip()
    assert urlsplit(url).path == "/voice/queue/wait"
    return url


def last_of(doc: ET.Element) -> int:
    """The QueueTime of the latest announcement the redirect carries."""
    return int(parse_qs(urlsplit(again(doc)).query)["a"][0])


def pause_of(doc: ET.Element) -> int:
    (pause,) = doc.findall("Pause")
    return int(pause.get("length") or "0")


# --- the estimate ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("position", "size", "average", "expected"),
    [
        (3, 5, None, None),  # Twilio has no average yet
        (1, 1, 40, None),  # alone in the queue: no rate to go by
        (None, 5, 40, None),  # no place (a workflow)
        (2, 3, 20, 40),  # one caller every 20 s: 2 places ahead
        (3, 5, 120, 180),
        (4, 5, 300, 600),
        (2, None, 30, 120),  # no size: at least as many as the place
    ],
)
def test_the_estimate_follows_the_queues_pace(
    position: int | None, size: int | None, average: int | None, expected: int | None
) -> None:
    facts = hold.QueueFacts(waited=0, position=position, size=size, average=average)

    assert hold.estimated_wait(facts) == expected


@pytest.mark.parametrize(
    ("seconds", "minutes"),
    [(0, 0), (59, 0), (60, 1), (89, 1), (90, 2), (599, 10), (629, 10), (690, 10), (780, 15)],
)
def test_the_estimate_is_rounded_to_what_is_worth_saying(seconds: int, minutes: int) -> None:
    assert hold.wait_minutes(seconds) == minutes


@pytest.mark.parametrize(
    ("form", "facts"),
    [
        ({"QueueTime": "12"}, hold.QueueFacts(12, None, None, None)),
        (
            {"QueueTime": "5", "QueuePosition": "2", "CurrentQueueSize": "4", "AvgQueueTime": "30"},
            hold.QueueFacts(5, 2, 4, 30),
        ),
        (  # garbled or zero: as if not sent
            {"QueueTime": "²", "QueuePosition": "0", "CurrentQueueSize": "-1", "AvgQueueTime": "x"},
            hold.QueueFacts(0, None, None, None),
        ),
    ],
)
def test_queue_facts_read_only_clean_numbers(form: dict[str, str], facts: hold.QueueFacts) -> None:
    assert hold.QueueFacts.of(form) == facts


def test_the_callers_place_reveals_nothing_about_the_account() -> None:
    """The proofs let {position} and {minutes} be said before verification."""
    assert {"position", "minutes"} <= NON_ACCOUNT_PLACEHOLDERS


# --- what the caller hears -----------------------------------------------------------------


def test_the_default_configuration_holds_with_our_wait_url(make_app: Any, tmp_path: Path) -> None:
    """IVR_AGENT_TARGET=queue:support and a node without a target: the caller still hears
    the hold prompt and their place (no Twilio music, no silence)."""
    app = hold_app(make_app, tmp_path, target=None, IVR_AGENT_TARGET="queue:support")
    call_sid, url, enqueue = held(app)

    doc = wait(app, url, call_sid, 0)

    assert (enqueue.text or "").strip() == "support"
    assert says(doc) == [text(app, "queue_hold"), text(app, "queue_position_next")]
    # No hold_music on the node: Twilio's classical track, never dead air.
    assert [child.tag for child in doc] == ["Say", "Say", "Play", "Redirect"]
    assert doc.findtext("Play") == DEFAULT_HOLD_MUSIC


def test_a_configured_workflow_holds_with_our_wait_url_too(make_app: Any, tmp_path: Path) -> None:
    app = hold_app(make_app, tmp_path, target=None, IVR_AGENT_TARGET=f"workflow:{WORKFLOW}")
    call_sid, url, enqueue = held(app)

    doc = wait(app, url, call_sid, 0, position=3, size=5, average=120)

    assert enqueue.get("workflowSid") == WORKFLOW
    # TaskRouter does not serve the voice queue in order: no place, no estimate.
    assert says(doc) == [text(app, "queue_hold")]


def test_first_request_says_the_hold_prompt_the_place_and_the_wait(
    make_app: Any, tmp_path: Path
) -> None:
    app = hold_app(
        make_app, tmp_path, extra="    hold_prompt: connecting\n", IVR_HOLD_MUSIC_URL="none"
    )
    call_sid, url, _ = held(app)

    doc = wait(app, url, call_sid, 0, position=1, size=3, average=60)

    # Next in line, one caller taken every 60 s: about a minute.
    assert says(doc) == [
        text(app, "connecting"),
        text(app, "queue_position_next"),
        text(app, "queue_wait_one_minute"),
    ]
    spoken = hold.Announcement(tuple(says(doc))).seconds
    # Silence until the next announcement falls due (default every 60 s).
    assert pause_of(doc) == DEFAULT_ANNOUNCE_EVERY - spoken


@pytest.mark.parametrize(
    ("size", "average", "key", "minutes"),
    [
        (1, None, None, None),  # no average yet: nothing about the wait
        (3, 0, None, None),  # Twilio's average is 0 before anyone waited
        (3, 20, "queue_wait_under_minute", None),
        (3, 60, "queue_wait_one_minute", None),
        (2, 150, "queue_wait_minutes", "5"),
        (3, 900, "queue_wait_minutes", "15"),
    ],
)
def test_the_estimated_wait_is_said_only_when_twilio_gives_an_average(
    make_app: Any, tmp_path: Path, size: int, average: int | None, key: str | None, minutes: str
) -> None:
    app = hold_app(make_app, tmp_path)
    call_sid, url, _ = held(app)

    doc = wait(app, url, call_sid, 0, position=1, size=size, average=average)

    wait_said = [text(app, key, minutes=minutes) if minutes else text(app, key)] if key else []
    assert says(doc) == [text(app, "queue_hold"), text(app, "queue_position_next"), *wait_said]


def test_announcements_come_every_announce_every_seconds(make_app: Any, tmp_path: Path) -> None:
    """Silence between announcements (IVR_HOLD_MUSIC_URL=none): each answer redirects back
    with the QueueTime of the latest announcement; a repeat says the place and wait again
    (not the hold prompt) once `announce_every` seconds have passed since it."""
    app = hold_app(make_app, tmp_path, extra="    announce_every: 120\n", IVR_HOLD_MUSIC_URL="none")
    call_sid, url, _ = held(app)
    repeat = [text(app, "queue_position_next"), text(app, "queue_wait_under_minute")]
    facts: dict[str, int | None] = {"position": 1, "size": 3, "average": 20}

    first = wait(app, url, call_sid, 0, **facts)
    assert says(first) == [text(app, "queue_hold"), *repeat]
    assert pause_of(first) == 120 - hold.Announcement(tuple(says(first))).seconds
    assert last_of(first) == 0

    # Twilio follows the redirect when the pause ends; a little early is not yet due.
    early = wait(app, again(first), call_sid, 117, **facts)
    assert says(early) == [] and pause_of(early) == 3 and last_of(early) == 0
    late = wait(app, again(early), call_sid, 131, **facts)
    assert says(late) == repeat and last_of(late) == 131
    assert pause_of(late) == 120 - hold.Announcement(tuple(repeat)).seconds
    # The next one is due 120 s after that one, not at the next multiple of 120.
    assert says(wait(app, again(late), call_sid, 240, **facts)) == []
    assert says(wait(app, again(late), call_sid, 251, **facts)) == repeat


def test_with_hold_music_announcements_keep_their_cadence(make_app: Any, tmp_path: Path) -> None:
    """A 45 s track and every=60: Twilio asks again at the end of each track. The
    announcement comes on the first request at least 60 s after the last one (0, 90, 180,
    270…), never drifting away as QueueTime % every did (0, 189, 240, 426…)."""
    app = hold_app(make_app, tmp_path, extra=f"    hold_music: {MUSIC}\n    announce_every: 60\n")
    call_sid, url, _ = held(app)

    announced, next_url, waited = [], url, 0
    while waited <= 450:
        doc = wait(app, next_url, call_sid, waited)
        assert [c.tag for c in doc][-2:] == ["Play", "Redirect"] and doc.findtext("Play") == MUSIC
        if says(doc):
            announced.append(waited)
        next_url = again(doc)
        waited += 45 + 2 * len(says(doc))  # the track, the sentences, Twilio's delay

    assert announced == [0, 94, 186, 278, 370]
    gaps = [b - a for a, b in itertools.pairwise(announced)]
    assert all(60 <= gap < 60 + 45 + 5 for gap in gaps)


def test_hold_music_plays_between_announcements(make_app: Any, tmp_path: Path) -> None:
    app = hold_app(make_app, tmp_path, extra=f"    hold_music: {MUSIC}\n    announce_every: 30\n")
    call_sid, url, _ = held(app)

    first = wait(app, url, call_sid, 0)
    between = wait(app, again(first), call_sid, 20)
    repeat = wait(app, again(between), call_sid, 33)

    assert [c.tag for c in first] == ["Say", "Say", "Play", "Redirect"]
    assert first.findtext("Play") == MUSIC
    assert [(c.tag, c.text) for c in between][:1] == [("Play", MUSIC)] and len(between) == 2
    assert says(repeat) == [text(app, "queue_position_next")]
    assert [c.tag for c in repeat] == ["Say", "Play", "Redirect"]


def test_the_hold_music_setting(make_app: Any, tmp_path: Path) -> None:
    """IVR_HOLD_MUSIC_URL replaces Twilio's track for targets with no hold_music."""
    own = "https://media.example.test/hold/jazz.mp3"
    app = hold_app(make_app, tmp_path, IVR_HOLD_MUSIC_URL=own)
    call_sid, url, _ = held(app)

    assert wait(app, url, call_sid, 0).findtext("Play") == own


@pytest.mark.parametrize(
    "value", ["http://media.example.test/hold.mp3", "hold.mp3", "https://x.test/a b.mp3"]
)
def test_a_bad_hold_music_setting_is_refused(value: str) -> None:
    from ivr.config_line import read

    problems: list[str] = []
    settings = read({"IVR_HOLD_MUSIC_URL": value}.get, "US", problems)

    assert [p.split(" must")[0] for p in problems] == ["IVR_HOLD_MUSIC_URL"]
    assert settings.hold_music == DEFAULT_HOLD_MUSIC


def test_the_announcements_speak_the_callers_language(make_app: Any, tmp_path: Path) -> None:
    app = hold_app(make_app, tmp_path)
    call_sid, url, _ = held(app, language="es-US")

    doc = wait(app, url, call_sid, 0, position=1, size=2, average=200)

    assert says(doc) == [
        text(app, "queue_hold", "es-US"),
        text(app, "queue_position_next", "es-US"),
        text(app, "queue_wait_minutes", "es-US", minutes="7"),
    ]
    assert {say.get("language") for say in doc.iter("Say")} == {"es-US"}
    assert "minutos" in says(doc)[-1]


def hold_prompts(tmp_path: Path, *, en: str, es: str) -> Path:
    """The prompt files copied, with a flow prompt `hold_minutes` in both languages."""
    prompts = tmp_path / "prompts"
    shutil.copytree(PROMPTS, prompts)
    for language, line in (("en-US", en), ("es-US", es)):
        path = prompts / f"{language}.yaml"
        path.write_text(path.read_text() + f"  hold_minutes: {line}\n")
    return prompts


def test_a_hold_prompt_may_say_the_wait_itself(make_app: Any, tmp_path: Path) -> None:
    """A hold prompt with {minutes} says it (no second sentence); without an estimate it
    gives way to `queue_hold`, so no blank is ever spoken."""
    prompts = hold_prompts(
        tmp_path,
        en="Thanks for holding. About {minutes} minutes to go.",
        es="Gracias por esperar. Faltan unos {minutes} minutos.",
    )
    app = hold_app(make_app, tmp_path, extra="    hold_prompt: hold_minutes\n", prompts=prompts)
    call_sid, url, _ = held(app)

    with_estimate = wait(app, url, call_sid, 0, position=1, size=2, average=240)
    without = wait(app, url, call_sid, 0, position=1, size=2, average=None)
    repeat = wait(app, url, call_sid, 60, position=1, size=2, average=240)

    filled = "Thanks for holding. About 8 minutes to go."
    assert says(with_estimate) == [filled, text(app, "queue_position_next")]
    assert says(without) == [text(app, "queue_hold"), text(app, "queue_position_next")]
    assert says(repeat) == [filled, text(app, "queue_position_next")]


# --- the maximum wait and failures ---------------------------------------------------------


def test_the_maximum_wait_takes_the_caller_out_of_the_queue(make_app: Any, tmp_path: Path) -> None:
    app = hold_app(
        make_app,
        tmp_path,
        extra="    queue_max_wait: 90\n    announce_every: 60\n",
        IVR_HOLD_MUSIC_URL="none",
    )
    call_sid, url, _ = held(app)

    near_the_end = wait(app, url, call_sid, 80)
    response = post(app, url, wait_form(call_sid, 90))

    assert pause_of(near_the_end) == 10  # never past the maximum wait
    assert response.status_code == 200 and response.mimetype == "text/xml"
    assert_leave(response.get_data(as_text=True))
    after = twiml(
        post(
            app,
            url.replace("/voice/queue/wait", "/voice/dial"),
            call_form(call_sid, QueueResult="leave", QueueTime="91"),
        )
    )
    assert says(after) == [text(app, "agents_busy")]


def test_storage_trouble_keeps_the_caller_holding(make_app: Any, tmp_path: Path) -> None:
    hold_app(make_app, tmp_path)  # the first app empties storage; this one cannot reach it
    app = make_app(
        IVR_FLOWS_DIR=str(tmp_path / "flows"),
        IVR_PROMPTS_DIR=str(PROMPTS),
        IVR_FLOW="transfer",
        REDIS_URL=CLOSED_REDIS,
        IVR_STORAGE_TIMEOUT="0.5",
    )

    doc = wait(app, "/voice/queue/wait?s=1", new_sid(), 10)
    late = post(app, "/voice/queue/wait?s=1", wait_form(new_sid(), 3600))

    assert [(child.tag, child.get("length")) for child in doc] == [("Pause", "20")]
    assert_leave(late.get_data(as_text=True))


def test_a_caller_at_the_input_limit_holds_on_the_configured_target(
    make_app: Any, tmp_path: Path
) -> None:
    """The input limit's safe-default transfer enqueues on the configured target with our
    waitUrl: the caller holds there (prompt, place, music), not `<Leave/>` at once."""
    from ivr.calls import store
    from ivr.flow.engine import LIMIT_TRANSFER

    app = hold_app(make_app, tmp_path, target=None, IVR_AGENT_TARGET="queue:support")
    call_sid, url, _ = held(app)
    with app.app_context():
        state = store.load(call_sid)
        assert state is not None
        state.node = LIMIT_TRANSFER  # where engine.core._limit_transfer leaves the call
        store.save(state)

    doc = wait(app, url, call_sid, 0)

    assert says(doc) == [text(app, "queue_hold"), text(app, "queue_position_next")]
    assert [child.tag for child in doc] == ["Say", "Say", "Play", "Redirect"]


def test_a_hold_request_for_no_transfer_leaves(make_app: Any, tmp_path: Path) -> None:
    app = hold_app(make_app, tmp_path)
    call_sid, url, _ = held(app)

    stale = post(app, url.split("?")[0] + "?s=99", wait_form(call_sid, 10))
    unsigned = post(app, url, wait_form(call_sid, 10), signed=False)

    assert_leave(stale.get_data(as_text=True))
    assert unsigned.status_code == 403


def test_the_wait_document_is_built_from_instructions() -> None:
    """The document as instructions: say, then music or a pause; Leave at the limit."""
    catalog = load_definitions(ROOT / "flows", PROMPTS, "US").catalog
    target = TransferTarget("queue", "support", hold_music=MUSIC, max_wait=60)

    first = hold.hold_document(catalog, "en-US", target, hold.QueueFacts(0, 1, 1, None))
    last = hold.hold_document(catalog, "en-US", target, hold.QueueFacts(60, 1, 1, None), last=0)

    assert [type(item) for item in first.instructions] == [Say, Say, Play]
    assert first.last == 0
    assert last == hold.Hold([Leave()], None)
    plain = TransferTarget("queue", "support")
    quiet = hold.hold_document(catalog, "en-US", plain, hold.QueueFacts(30, 1, 1, None), last=0)
    assert quiet == hold.Hold([Pause(DEFAULT_ANNOUNCE_EVERY - 30)], 0)
    music = hold.hold_document(
        catalog, "en-US", plain, hold.QueueFacts(30, 1, 1, None), last=0, music=MUSIC
    )
    assert music == hold.Hold([Play(MUSIC)], 0)


# --- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "extra", "message"),
    [
        ("queue:support", "    announce_every: 29\n", "must be from 30 to 600"),
        ("queue:support", "    announce_every: 601\n", "from 30 to 600"),
        ("queue:support", "    announce_every: 1m\n", "whole number"),
        (None, "    announce_every: 60\n", "needs the node's own queue: or workflow: target"),
        ('"+14155550142"', "    announce_every: 60\n", "not a number"),
    ],
)
def test_announce_every_is_checked_like_the_other_hold_fields(
    tmp_path: Path, target: str | None, extra: str, message: str
) -> None:
    path = hold_flow(tmp_path, target, extra)

    _, problems = check_definitions(tmp_path, PROMPTS, "US", only=[path])

    assert [(p.where, p.field) for p in problems] == [("agent", "announce_every")]
    assert message in problems[0].message


def test_a_hold_prompt_may_use_the_hold_placeholders(tmp_path: Path) -> None:
    prompts = hold_prompts(
        tmp_path / "p",
        en="Thanks for holding. About {minutes} minutes to go.",
        es="Gracias por esperar. Faltan unos {minutes} minutos.",
    )
    path = hold_flow(tmp_path / "f", "queue:support", "    hold_prompt: hold_minutes\n")

    _, problems = check_definitions(tmp_path / "f", prompts, "US", only=[path])

    assert problems == []


# --- the caller's place as a number ---------


@pytest.mark.parametrize(
    ("language", "minutes"), [("en-US", "about 6 minutes"), ("es-US", "aproximadamente 6")]
)
def test_the_place_and_the_wait_in_the_callers_language(
    make_app: Any, tmp_path: Path, language: str, minutes: str
) -> None:
    app = hold_app(make_app, tmp_path)
    call_sid, url, _ = held(app, language=language)

    doc = wait(app, url, call_sid, 0, position=3, size=5, average=240)

    # 5 queued, waiting 240 s on average: one taken every 120 s; 3rd in line: 6 minutes.
    assert says(doc) == [
        text(app, "queue_hold", language),
        text(app, "queue_position", language, position="3"),
        text(app, "queue_wait_minutes", language, minutes="6"),
    ]
    assert "3" in says(doc)[1] and minutes in says(doc)[2]


def test_a_hold_prompt_may_say_the_place_itself(make_app: Any, tmp_path: Path) -> None:
    prompts = hold_prompts(
        tmp_path,
        en="Thanks for holding. You are number {position} in line.",
        es="Gracias por esperar. Usted es la persona número {position} en la fila.",
    )
    app = hold_app(make_app, tmp_path, extra="    hold_prompt: hold_minutes\n", prompts=prompts)
    call_sid, url, _ = held(app)

    doc = wait(app, url, call_sid, 0, position=4, size=4, average=None)

    assert says(doc) == ["Thanks for holding. You are number 4 in line."]


def test_the_hold_prompts_take_only_the_hold_placeholders(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts"
    shutil.copytree(PROMPTS, prompts)
    path = prompts / "en-US.yaml"
    said = "queue_position_next: You are next in line."
    assert said in path.read_text()
    path.write_text(
        path.read_text().replace(said, "queue_position_next: You're next, {first_name}.")
    )

    problems = load_catalog(prompts)[1]

    assert [(p.where, p.field) for p in problems] == [("queue_position_next", "text")]


# --- a journey through the simulator ------------------------------------------------------


def test_a_verified_caller_of_the_default_flow_holds_informed_then_an_agent_answers(
    make_app: Any,
) -> None:
    """The default flow and configuration (IVR_AGENT_TARGET=queue:support): Jane is
    enqueued and holds in the simulator's queue (3 callers, one taken a minute), hearing
    her place and the estimated wait at least `announce_every` (60 s) apart between
    Twilio's hold music, until her turn comes and an agent takes the call."""
    app: Flask = make_app(IVR_AGENT_TARGET="queue:support")  # (call-backs: test_queue_callback)
    add_account(app, "Jane Doe", JANE_PHONE, "10004321")

    result = Phone(app).call(JANE_PHONE, ["1", "4321", "@code", "2"])

    heard = result.heard("caller")
    holding = heard[heard.index(text(app, "connecting")) + 1 :]
    assert holding == [
        text(app, "queue_hold"),
        text(app, "queue_position", position="3"),
        text(app, "queue_wait_minutes", minutes="3"),
        text(app, "queue_position", position="2"),
        text(app, "queue_wait_minutes", minutes="2"),
        text(app, "queue_position_next"),
        text(app, "queue_wait_one_minute"),
        # Held past offer_callback_after (120 s): the call-back offer; she presses nothing.
        text(app, "queue_callback_offer"),
    ]
    waits = [(url, ET.fromstring(doc)) for url, doc in result.documents if "/queue/wait" in url]
    announced = [parse_qs(urlsplit(again(doc)).query)["a"][0] for _, doc in waits if says(doc)]
    assert announced == ["0", "69", "135"]  # 60 s apart at least, at the end of a track
    assert all(doc.findtext("Play") == DEFAULT_HOLD_MUSIC for _, doc in waits)
    assert result.transfers == ["enqueue support"]
    assert any(e.kind == "agent" and "took the call" in e.text for e in result.events)
    dial = [url for url, _ in result.documents if "/voice/dial?s=" in url]
    assert len(dial) == 1 and result.ended_by == "ivr"


class HoldCheckingTransport(SchemaCheckingTransport):
    """Schema-checks every answer but a lone `<Leave/>` (Twilio's XSD lacks it: see
    assert_leave), whose structure is asserted instead."""

    def post(self, url: str, form: dict[str, str]) -> Reply:
        reply = InProcess.post(self, url, form)
        if reply.status == 200 and "<Leave" in reply.body:
            assert_leave(reply.body)
        elif reply.status == 200:
            assert_valid_twiml(reply.body)
        return reply


@pytest.mark.parametrize("agent", ["accept", "no-answer"])
def test_the_simulated_hold_ends_at_the_maximum_wait_or_the_callers_turn(
    make_app: Any, tmp_path: Path, agent: str
) -> None:
    """QueueTime grows by what each hold document played: a 60 s maximum wait ends the
    hold (`<Leave/>`) before the turn comes (180 s); without one, at the caller's turn
    nobody answers (no-answer) and the caller leaves the queue."""
    extra = "    queue_max_wait: 60\n" if agent == "accept" else ""
    app = hold_app(make_app, tmp_path, extra=extra)
    simulator = Simulator(HoldCheckingTransport(app, AUTH_TOKEN), PUBLIC_URL, agent=agent)

    result = simulator.call(JANE_PHONE, Scripted([]))

    waits = [ET.fromstring(doc) for url, doc in result.documents if "/queue/wait" in url]
    tags = [[child.tag for child in doc] for doc in waits]
    if agent == "accept":
        assert tags[-1] == ["Leave"] and len(waits) == 3  # at 0, 39 and 69 s
    else:
        assert all(tag[-2:] == ["Play", "Redirect"] for tag in tags) and len(waits) == 6
    assert result.heard("caller")[-1] == text(app, "agents_busy")
    assert not any(e.kind == "agent" for e in result.events)
