"""Hold that informs: the `<Enqueue>` waitUrl says the caller's place and an estimated
wait, in their language, every `announce_every` seconds, between hold music or pauses.

Webhooks are posted signed, as Twilio posts them (QueueTime, QueuePosition,
CurrentQueueSize, AvgQueueTime, QueueSid), into an app whose only flow starts at a
transfer node; the estimate and its rounding are checked on their own too.
"""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from kit import call_form, new_sid, post, says, text, twiml

from ivr.flow.instructions import Leave, Pause, Play, Say
from ivr.flow.loader import check_definitions, load_catalog, load_definitions
from ivr.flow.model import TransferTarget
from ivr.flow.model.transfer import DEFAULT_ANNOUNCE_EVERY
from ivr.flow.proofs import NON_ACCOUNT_PLACEHOLDERS
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
    assert [child.tag for child in doc] == ["Say", "Say", "Pause"]


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
    app = hold_app(make_app, tmp_path, extra="    hold_prompt: connecting\n")
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
    """Stateless: QueueTime alone says whether an announcement is due; a repeat says the
    place and wait again (not the hold prompt), with silence sized to the next one."""
    app = hold_app(make_app, tmp_path, extra="    announce_every: 120\n")
    call_sid, url, _ = held(app)
    again = [text(app, "queue_position_next"), text(app, "queue_wait_under_minute")]
    facts: dict[str, int | None] = {"position": 1, "size": 3, "average": 20}

    first = wait(app, url, call_sid, 0, **facts)
    assert says(first) == [text(app, "queue_hold"), *again]
    assert pause_of(first) == 120 - hold.Announcement(tuple(says(first))).seconds

    # Twilio asks again when the pause ends; a little late is still on time.
    for waited, announced in ((116, False), (120, True), (134, True), (135, False), (200, False)):
        doc = wait(app, url, call_sid, waited, **facts)
        assert says(doc) == (again if announced else []), waited
        if announced:
            assert pause_of(doc) == 240 - waited - hold.Announcement(tuple(again)).seconds
        else:  # silence until the next announcement falls due
            assert pause_of(doc) == (240 if waited > 120 else 120) - waited


def test_hold_music_plays_between_announcements(make_app: Any, tmp_path: Path) -> None:
    app = hold_app(make_app, tmp_path, extra=f"    hold_music: {MUSIC}\n    announce_every: 30\n")
    call_sid, url, _ = held(app)

    first = wait(app, url, call_sid, 0)
    between = wait(app, url, call_sid, 20)
    again = wait(app, url, call_sid, 33)

    assert [c.tag for c in first] == ["Say", "Say", "Play"] and first.findtext("Play") == MUSIC
    assert [(c.tag, c.text) for c in between] == [("Play", MUSIC)]
    assert says(again) == [text(app, "queue_position_next")]
    assert [c.tag for c in again] == ["Say", "Play"]


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
    app = hold_app(make_app, tmp_path, extra="    queue_max_wait: 90\n    announce_every: 60\n")
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
    last = hold.hold_document(catalog, "en-US", target, hold.QueueFacts(60, 1, 1, None))

    assert [type(item) for item in first] == [Say, Say, Play]
    assert last == [Leave()]
    plain = TransferTarget("queue", "support")
    quiet = hold.hold_document(catalog, "en-US", plain, hold.QueueFacts(30, 1, 1, None))
    assert quiet == [Pause(DEFAULT_ANNOUNCE_EVERY - 30)]


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
