"""The `voicemail` node: loading and validation, the engine's step, the `<Record>`
TwiML, and journeys through the simulator that leave a message (stored once, whatever
order and however often Twilio's two webhooks come)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
from caller import Phone
from flask import Flask
from kit import JANE_PHONE, add_account, call_form, new_sid, post, says, twiml
from sqlalchemy import select
from twiml_schema import assert_valid_twiml

from ivr.flow.instructions import Record
from ivr.flow.loader import check_definitions
from ivr.flow.model import VoicemailNode
from ivr.flow.timeline import caller_key
from ivr.phone import mask
from ivr.simulator.recording import spoken
from ivr.storage import db
from ivr.storage.models import CallRecord, CallStep, Voicemail
from ivr.voice import twiml as render

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = ROOT / "prompts"
SECRET = "test-secret-key"

VOICEMAIL_NODE = """\
  voicemail:
    type: voicemail
    prompt: voicemail_prompt
    max_length: 60
    finish_on_key: "#"
    timeout: 5
    done_prompt: voicemail_thanks
    empty_prompt: voicemail_nothing
"""

FLOW = (
    "name: vm\nstart: menu\nlanguages: [en-US, es-US]\nnodes:\n"
    "  menu:\n    type: menu\n    prompt: main_menu_retry\n    options:\n      1: voicemail\n"
    "    no_input: voicemail\n    invalid: menu\n    too_many_tries: bye\n"
    + VOICEMAIL_NODE
    + "  bye:\n    type: hangup\n    prompt: goodbye\n"
)


def write_flow(directory: Path, text: str = FLOW) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vm.yaml").write_text(text)
    return directory


def problems_of(tmp_path: Path, node: str) -> list[tuple[str, str, str]]:
    """The problems of FLOW with its voicemail node replaced by `node`."""
    flows = write_flow(tmp_path / "flows", FLOW.replace(VOICEMAIL_NODE, node))
    _, found = check_definitions(flows, PROMPTS, "US")
    return [(p.where, p.field, p.message) for p in found]


@pytest.fixture
def vm_app(make_app: Any, tmp_path: Path) -> Flask:
    flows = write_flow(tmp_path / "flows")
    app: Flask = make_app(IVR_FLOWS_DIR=str(flows), IVR_PROMPTS_DIR=str(PROMPTS), IVR_FLOW="vm")
    return app


def voicemails(app: Flask) -> list[Voicemail]:
    with app.app_context():
        session = db.session()
        session.expire_all()
        rows = list(session.scalars(select(Voicemail).order_by(Voicemail.id)))
        session.expunge_all()
        return rows


def text(app: Flask, key: str, language: str = "en-US") -> str:
    from ivr.calls import runtime

    with app.app_context():
        return " ".join(runtime.get().catalog.text(language, key).split())


# --- loading and validation ---------------------------------------------------------------


def test_a_voicemail_node_loads_with_its_fields(tmp_path: Path) -> None:
    definitions, found = check_definitions(write_flow(tmp_path / "flows"), PROMPTS, "US")
    assert found == []
    assert definitions is not None
    node = definitions.flows["vm"].nodes["voicemail"]
    assert isinstance(node, VoicemailNode)
    assert (node.max_length, node.finish_on_key, node.timeout) == (60, "#", 5)
    assert (node.done_prompt, node.empty_prompt) == ("voicemail_thanks", "voicemail_nothing")


def test_defaults_apply_when_only_the_prompts_are_given(tmp_path: Path) -> None:
    minimal = (
        "  voicemail:\n    type: voicemail\n    prompt: voicemail_prompt\n"
        "    done_prompt: voicemail_thanks\n"
    )
    flows = write_flow(tmp_path / "flows", FLOW.replace(VOICEMAIL_NODE, minimal))
    definitions, found = check_definitions(flows, PROMPTS, "US")
    assert found == [] and definitions is not None
    node = definitions.flows["vm"].nodes["voicemail"]
    assert isinstance(node, VoicemailNode)
    assert (node.max_length, node.finish_on_key, node.timeout, node.empty_prompt) == (
        120,
        "#",
        5,
        None,
    )


@pytest.mark.parametrize(
    ("old", "new", "field", "words"),
    [
        ("    max_length: 60\n", "    max_length: 4\n", "max_length", "must be from 5 to 600"),
        ("    max_length: 60\n", "    max_length: 601\n", "max_length", "must be from 5 to 600"),
        ("    max_length: 60\n", "    max_length: '60'\n", "max_length", "whole number"),
        ('    finish_on_key: "#"\n', "    finish_on_key: #\n", "finish_on_key", "in quotes"),
        ('    finish_on_key: "#"\n', '    finish_on_key: "##"\n', "finish_on_key", "not one of"),
        ('    finish_on_key: "#"\n', "    finish_on_key: 5\n", "finish_on_key", "in quotes"),
        ("    timeout: 5\n", "    timeout: 0\n", "timeout", "must be from 1 to 60"),
        ("    timeout: 5\n", "    timeout: 60\n", "timeout", "shorter than max_length"),
        ("    done_prompt: voicemail_thanks\n", "", "done_prompt", "needs done_prompt"),
        ("    prompt: voicemail_prompt\n", "    prompt: no_such\n", "prompt", "missing in"),
        ("    timeout: 5\n", "    timeout: 5\n    next: bye\n", "next", "unknown key"),
        (
            "    empty_prompt: voicemail_nothing\n",
            "    empty_prompt: voicemail_prompt\n",
            "empty_prompt",
            "must differ from prompt",
        ),
    ],
)
def test_bad_fields_are_refused_by_name(
    tmp_path: Path, old: str, new: str, field: str, words: str
) -> None:
    assert old in VOICEMAIL_NODE
    found = problems_of(tmp_path, VOICEMAIL_NODE.replace(old, new))
    assert [(n, f) for n, f, m in found if words in m] == [("voicemail", field)], found


def test_the_node_ends_the_call_so_it_needs_no_exit(tmp_path: Path) -> None:
    """A flow whose every path ends in voicemail passes the proofs (it is terminal)."""
    only = "name: vm\nstart: voicemail\nlanguages: [en-US, es-US]\nnodes:\n" + VOICEMAIL_NODE
    _, found = check_definitions(write_flow(tmp_path / "flows", only), PROMPTS, "US")
    assert found == []


# --- TwiML ------------------------------------------------------------------------------------


def links() -> render.Links:
    return render.Links(
        input=lambda step: f"/voice/input?s={step}",
        dial=lambda step: f"/voice/dial?s={step}",
        whisper=None,
        recorded=lambda step: f"/voice/voicemail/recorded?s={step}",
        recording_status=lambda step: f"/voice/voicemail/status?s={step}",
    )


def test_record_renders_schema_valid_with_its_callbacks_and_a_redirect_for_silence() -> None:
    body = render.render([Record(step=3, max_length=60, finish_on_key="*", timeout=7)], links())
    assert_valid_twiml(body)
    root = ET.fromstring(body)
    record = root.find("Record")
    assert record is not None
    assert record.attrib == {
        "action": "/voice/voicemail/recorded?s=3",
        "method": "POST",
        "maxLength": "60",
        "finishOnKey": "*",
        "timeout": "7",
        "playBeep": "true",
        "recordingStatusCallback": "/voice/voicemail/status?s=3",
        "recordingStatusCallbackMethod": "POST",
        "recordingStatusCallbackEvent": "completed",
    }
    # Twilio skips the action for an empty recording and runs the next verb.
    assert [child.tag for child in root] == ["Record", "Redirect"]
    assert root[1].text == "/voice/voicemail/recorded?s=3"


# --- journeys through the simulator ----------------------------------------------------------


def record_of(documents: list[tuple[str, str]]) -> ET.Element:
    for _, body in documents:
        found = ET.fromstring(body).find("Record")
        if found is not None:
            return found
    raise AssertionError("no <Record> in the call")


def test_a_caller_leaves_a_message_that_is_stored_masked_and_hashed(
    vm_app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    phone = Phone(vm_app)
    result = phone.call(JANE_PHONE, ["1", "record:12#"])
    assert result.ended_by == "ivr", result.transcript
    heard = result.heard()
    assert heard[-2:] == [text(vm_app, "voicemail_prompt"), text(vm_app, "voicemail_thanks")]
    assert ("record", "beep") in [(e.kind, e.text) for e in result.events]
    record = record_of(result.documents)
    assert (record.get("maxLength"), record.get("finishOnKey")) == ("60", "#")
    [row] = voicemails(vm_app)
    assert row.call_sid == result.call_sid
    assert row.recording_sid.startswith("RE") and len(row.recording_sid) == 34
    assert row.recording_url.endswith(f"/Recordings/{row.recording_sid}")
    assert (row.duration, row.status) == (12, "ready")
    assert row.caller == mask(JANE_PHONE) and JANE_PHONE not in row.caller
    assert row.caller_key == caller_key(JANE_PHONE, SECRET)
    assert (row.account_id, row.verification, row.methods) == (None, "none", [])
    assert (row.language, row.flow) == ("en-US", "vm")
    assert row.handled_at is None
    # The call's timeline says a message was left, and how long; the call ended.
    with vm_app.app_context():
        steps = db.session().scalars(
            select(CallStep).where(CallStep.call_sid == result.call_sid).order_by(CallStep.seq)
        )
        events = [(s.event, s.node, s.detail.get("result"), s.detail.get("seconds")) for s in steps]
        call = db.session().get(CallRecord, result.call_sid)
        assert call is not None and call.outcome == "ended"
    assert ("voicemail", "voicemail", "recorded", 12) in events
    for record_ in caplog.records:
        assert JANE_PHONE not in record_.getMessage()


def test_silence_records_nothing_and_the_caller_hears_the_empty_prompt(vm_app: Flask) -> None:
    result = Phone(vm_app).call(JANE_PHONE, ["1", ""])
    assert result.ended_by == "ivr", result.transcript
    assert result.heard()[-1] == text(vm_app, "voicemail_nothing")
    assert voicemails(vm_app) == []


def test_a_message_past_the_maximum_length_is_cut_there(vm_app: Flask) -> None:
    result = Phone(vm_app).call(JANE_PHONE, ["1", "record:300"])
    assert result.heard()[-1] == text(vm_app, "voicemail_thanks")
    [row] = voicemails(vm_app)
    assert row.duration == 60


def test_a_verified_caller_is_stored_with_the_account_and_the_method(
    make_app: Any, working: Path
) -> None:
    """The default flow's own voicemail node, reached from its menu (key 4, added in a
    working copy) after the caller verified with the account digits and a code."""
    flow = working / "flows" / "support.yaml"
    content = flow.read_text()
    assert "      9: menu\n" in content
    assert "  voicemail:\n    type: voicemail\n" in content  # the default flow's own node
    content = content.replace("      9: menu\n", "      9: menu\n      4: voicemail\n", 1)
    flow.write_text(content)
    app: Flask = make_app(
        IVR_FLOWS_DIR=str(working / "flows"), IVR_PROMPTS_DIR=str(working / "prompts")
    )
    account_id = add_account(app, "Jane Doe", JANE_PHONE, "10004321", "jane@example.com")
    result = Phone(app).call(JANE_PHONE, ["1", "4321", "@code", "4", "record:20"])
    assert result.heard()[-1] == text(app, "voicemail_thanks"), result.transcript
    [row] = voicemails(app)
    assert (row.account_id, row.verification, row.duration) == (account_id, "code", 20)
    assert row.methods and any(m.startswith("code") for m in row.methods)


# --- the two webhooks, in any order, repeated -------------------------------------------------


def start_to_record(app: Flask) -> tuple[str, int]:
    """A call at the voicemail node: its CallSid and the step its <Record> carries."""
    sid = new_sid()
    doc = twiml(post(app, "/voice/incoming", call_form(sid)))
    action = doc.find("Gather")
    assert action is not None
    step = int(parse_qs(urlsplit(action.get("action") or "").query)["s"][0])
    doc = twiml(post(app, f"/voice/input?s={step}", call_form(sid, Digits="1")))
    record = doc.find("Record")
    assert record is not None
    return sid, int(parse_qs(urlsplit(record.get("action") or "").query)["s"][0])


def recording(sid: str, recording_sid: str, **extra: str) -> dict[str, str]:
    return call_form(
        sid,
        RecordingSid=recording_sid,
        RecordingUrl=f"https://api.twilio.com/2010-04-01/Accounts/{'AC' + '0' * 32}"
        f"/Recordings/{recording_sid}",
        **extra,
    )


def status_form(
    sid: str, recording_sid: str, status: str = "completed", seconds: str = "9"
) -> dict[str, str]:
    form = recording(sid, recording_sid, RecordingStatus=status, RecordingDuration=seconds)
    form.pop("From")  # the status callback does not say who called
    form.pop("Caller")
    return form


@pytest.mark.parametrize("callback_first", [True, False])
def test_either_order_and_repeats_store_one_complete_row(
    vm_app: Flask, callback_first: bool
) -> None:
    sid, step = start_to_record(vm_app)
    recording_sid = "RE" + "ab" * 16
    action = recording(sid, recording_sid, RecordingDuration="9", Digits="#")
    path = f"/voice/voicemail/recorded?s={step}"

    def callback() -> None:
        response = post(
            vm_app, f"/voice/voicemail/status?s={step}", status_form(sid, recording_sid)
        )
        assert len(twiml(response)) == 0  # an empty document

    if callback_first:
        callback()
    first = twiml(post(vm_app, path, action))
    assert says(first) == [text(vm_app, "voicemail_thanks")]
    assert first[-1].tag == "Hangup"
    again = twiml(post(vm_app, path, action))  # Twilio's retry: the same answer, nothing new
    assert ET.tostring(again) == ET.tostring(first)
    if not callback_first:
        callback()
    callback()  # a repeat of the status callback
    [row] = voicemails(vm_app)
    assert (row.call_sid, row.recording_sid, row.status, row.duration) == (
        sid,
        recording_sid,
        "ready",
        9,
    )
    assert (row.caller, row.flow, row.language) == (mask(JANE_PHONE), "vm", "en-US")


def test_a_failed_recording_is_marked_failed(vm_app: Flask) -> None:
    sid, step = start_to_record(vm_app)
    recording_sid = "RE" + "cd" * 16
    twiml(
        post(
            vm_app,
            f"/voice/voicemail/recorded?s={step}",
            recording(sid, recording_sid, RecordingDuration="4"),
        )
    )
    post(
        vm_app, f"/voice/voicemail/status?s={step}", status_form(sid, recording_sid, "failed", "0")
    )
    post(vm_app, f"/voice/voicemail/status?s={step}", status_form(sid, recording_sid, "completed"))
    [row] = voicemails(vm_app)
    assert row.status == "failed"  # Twilio said so first; a later word does not undo it


def test_a_message_whose_call_state_is_gone_is_still_stored_masked(vm_app: Flask) -> None:
    """The state expired (or Redis lost it): the row keeps what the form says, masked;
    the caller still hears a goodbye, never Twilio's application error."""
    sid = new_sid()
    recording_sid = "RE" + "ef" * 16
    doc = twiml(
        post(
            vm_app,
            "/voice/voicemail/recorded?s=2",
            recording(sid, recording_sid, RecordingDuration="5"),
        )
    )
    assert says(doc) == [text(vm_app, "voicemail_thanks")]
    assert doc[-1].tag == "Hangup"
    [row] = voicemails(vm_app)
    assert (row.caller, row.caller_key) == (mask(JANE_PHONE), caller_key(JANE_PHONE, SECRET))
    assert (row.account_id, row.flow, row.status) == (None, "", "recording")


def test_unsigned_recording_webhooks_are_refused(vm_app: Flask) -> None:
    sid = new_sid()
    form = recording(sid, "RE" + "01" * 16, RecordingDuration="5")
    assert post(vm_app, "/voice/voicemail/recorded?s=2", form, signed=False).status_code == 403
    assert post(vm_app, "/voice/voicemail/status?s=2", form, signed=False).status_code == 403
    assert voicemails(vm_app) == []


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("record:12#", (12, "#")),
        ("record:7", (7, "")),
        ("", (0, "")),
        ("#", (0, "#")),
        ("record:0", (0, "")),
        ("record:12!", (12, "!")),
        ("record:0!", (0, "!")),
    ],
)
def test_the_script_token(entry: str, expected: tuple[int, str]) -> None:
    assert spoken(entry) == expected


def test_a_replayed_older_webhook_asks_for_the_message_again(vm_app: Flask) -> None:
    """A late copy of the menu's input (an older step): the prompt and the same <Record>
    again, nothing stored, the call still waiting on its message."""
    sid = new_sid()
    doc = twiml(post(vm_app, "/voice/incoming", call_form(sid)))
    gather = doc.find("Gather")
    assert gather is not None
    old = int(parse_qs(urlsplit(gather.get("action") or "").query)["s"][0])
    first = twiml(post(vm_app, f"/voice/input?s={old}", call_form(sid, Digits="1")))
    replayed = twiml(post(vm_app, f"/voice/input?s={old}", call_form(sid, Digits="2")))
    assert says(replayed) == [text(vm_app, "voicemail_prompt")]
    record, again = first.find("Record"), replayed.find("Record")
    assert record is not None and again is not None
    assert again.attrib == record.attrib
    assert voicemails(vm_app) == []


# --- issue 15's "done when", on the default flow ------------------------------------------------

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def exits_of(app: Flask, call_sid: str) -> list[tuple[str, str, str]]:
    """The call's exits as (node, exit, to), in order."""
    with app.app_context():
        steps = db.session().scalars(
            select(CallStep).where(CallStep.call_sid == call_sid).order_by(CallStep.seq)
        )
        return [(s.node, s.exit, s.detail.get("to")) for s in steps if s.event == "exit"]


def test_a_caller_outside_the_default_flows_hours_leaves_a_message(
    make_app: Any, working: Path
) -> None:
    """The default flow with its hours node open only on a day three days from today in
    New York (a working copy): the caller hears the closed prompt, then the voicemail
    prompt, leaves a message, and it is stored."""
    flow = working / "flows" / "support.yaml"
    content = flow.read_text()
    assert "    timezone: America/New_York\n" in content
    today = datetime.now(ZoneInfo("America/New_York")).weekday()
    open_day = DAYS[(today + 3) % 7]
    for day in DAYS:
        line = f"      {day}: 00:00-24:00\n"
        assert content.count(line) == 1, day
        content = content.replace(line, line if day == open_day else f"      {day}: closed\n")
    flow.write_text(content)
    app: Flask = make_app(
        IVR_FLOWS_DIR=str(working / "flows"), IVR_PROMPTS_DIR=str(working / "prompts")
    )

    result = Phone(app).call(JANE_PHONE, ["record:8#"])

    assert result.ended_by == "ivr", result.transcript
    assert result.heard() == [
        text(app, "closed_hours"),
        text(app, "voicemail_prompt"),
        text(app, "voicemail_thanks"),
    ]
    assert exits_of(app, result.call_sid)[:2] == [
        ("hours", "closed", "after_hours"),
        ("after_hours", "next", "voicemail"),
    ]
    [row] = voicemails(app)
    assert (row.call_sid, row.duration, row.status) == (result.call_sid, 8, "ready")
    assert (row.flow, row.language, row.account_id) == ("support", "en-US", None)
    assert row.caller == mask(JANE_PHONE)


def test_an_emergency_closure_sends_default_flow_callers_to_voicemail_until_reopened(
    app: Flask, runner: Any
) -> None:
    """`ivr hours close` on the unmodified default flow: the caller hears the closure's
    message, then leaves a message; `ivr hours open` brings back the welcome, and no
    version was published in between."""
    from ivr.calls import runtime

    with app.app_context():
        live_before = runtime.get().live().flow.version
    normal = Phone(app).call(JANE_PHONE, [])
    assert normal.heard()[0] == text(app, "welcome"), normal.transcript

    closed = runner.invoke(args=["hours", "close", "--message", "closed_emergency"])
    assert closed.exit_code == 0, closed.output
    result = Phone(app).call(JANE_PHONE, ["record:8#"])
    assert result.ended_by == "ivr", result.transcript
    assert result.heard() == [
        text(app, "closed_emergency"),
        text(app, "voicemail_prompt"),
        text(app, "voicemail_thanks"),
    ]
    assert exits_of(app, result.call_sid)[:1] == [("hours", "emergency", "voicemail")]
    [row] = voicemails(app)
    assert (row.call_sid, row.duration, row.status) == (result.call_sid, 8, "ready")
    assert row.flow == "support"

    opened = runner.invoke(args=["hours", "open"])
    assert opened.exit_code == 0, opened.output
    again = Phone(app).call(JANE_PHONE, [])
    heard = again.heard()
    assert heard[0] == text(app, "welcome"), again.transcript
    assert text(app, "closed_emergency") not in heard
    assert text(app, "voicemail_prompt") not in heard
    assert exits_of(app, again.call_sid)[:1] == [("hours", "open", "welcome")]
    assert len(voicemails(app)) == 1
    with app.app_context():
        assert runtime.get().live().flow.version == live_before  # nothing was published


# --- hanging up to end the message: the call ends before the action -----------------------------


def test_a_verified_caller_who_hangs_up_after_the_message_keeps_their_facts_and_the_step(
    app: Flask, runner: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The default flow: verified with the digits and a code, agents busy, voicemail; the
    caller speaks 12 seconds and hangs up. Twilio ends the call first (the status callback
    takes the call's state), then posts the action (Digits=hangup) and the recording
    status callback: the message still has the account, the verification, the language
    and the flow, and the call's record its voicemail step."""
    account_id = add_account(app, "Jane Doe", JANE_PHONE, "10004321", "jane@example.com")
    caplog.set_level("INFO", logger="ivr.voice.recordings")
    result = Phone(app).call(JANE_PHONE, ["1", "4321", "@code", "2", "record:12!"], agent="busy")

    assert result.ended_by == "caller-hangup", result.transcript
    late = f"call {result.call_sid}: the message's action came after the call ended"
    assert late in caplog.messages  # the status callback came first: no state at the action
    assert result.heard()[-2:] == [text(app, "agents_busy"), text(app, "voicemail_prompt")]
    assert text(app, "voicemail_thanks") not in result.heard()  # nobody on the line for it
    [row] = voicemails(app)
    assert row.call_sid == result.call_sid
    assert (row.duration, row.status) == (12, "ready")
    assert (row.account_id, row.verification) == (account_id, "code")
    assert "account_digits" in row.methods and any(m.startswith("code") for m in row.methods)
    assert (row.language, row.flow) == ("en-US", "support")
    assert (row.caller, row.caller_key) == (mask(JANE_PHONE), caller_key(JANE_PHONE, SECRET))

    with app.app_context():
        call = db.session().get(CallRecord, result.call_sid)
        assert call is not None
        assert (call.outcome, call.last_node, call.status) == ("ended", "voicemail", "completed")
        steps = [
            (s.event, s.node, s.detail.get("result"), s.detail.get("seconds")) for s in call.steps
        ]
        ats = [s.at_ms for s in call.steps]
    assert steps[-3:] == [
        ("voicemail", "voicemail", "recorded", 12),
        ("hangup", "voicemail", None, None),
        ("end", None, None, None),
    ]
    assert ats == sorted(ats)
    shown = runner.invoke(args=["calls", "show", result.call_sid])
    assert shown.exit_code == 0, shown.output
    assert "voicemail" in shown.output.split("timeline", 1)[1]
    assert "ended" in shown.output


def hold_jobs(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Jobs queued by requests stay queued (a worker that is behind); the real runner,
    to run them when the test says."""
    from ivr.jobs import runner as jobs_runner

    real = jobs_runner.run_burst
    monkeypatch.setattr(jobs_runner, "run_burst", lambda *args, **kwargs: False)
    return real


def test_an_action_that_comes_before_the_calls_record_waits_for_it(
    vm_app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The call ended and its record's job has not run yet when the action comes: the
    message is stored with the call's facts at once, its voicemail step waits, and the
    job that writes the record adds it; the recording status callback (and a repeat)
    never adds it twice."""
    sid, step = start_to_record(vm_app)
    real_run_burst = hold_jobs(monkeypatch)
    ended = call_form(sid, CallStatus="completed", CallDuration="30")
    assert post(vm_app, "/voice/status", ended).status_code == 200
    recording_sid = "RE" + "12" * 16
    action = recording(sid, recording_sid, RecordingDuration="9", Digits="hangup")
    action["CallStatus"] = "completed"
    answer = twiml(post(vm_app, f"/voice/voicemail/recorded?s={step}", action))
    assert says(answer) == [text(vm_app, "voicemail_thanks")] and answer[-1].tag == "Hangup"
    [row] = voicemails(vm_app)
    assert (row.flow, row.language, row.caller) == ("vm", "en-US", mask(JANE_PHONE))
    assert row.status == "recording"

    with vm_app.app_context():
        assert db.session().get(CallRecord, sid) is None  # not written yet
    real_run_burst(vm_app)  # the worker writes the call's record now, with the step
    with vm_app.app_context():
        call = db.session().get(CallRecord, sid)
        assert call is not None and call.outcome == "ended"
        assert [s.event for s in call.steps].count("voicemail") == 1

    for _ in range(2):  # the status callback, and a repeat of it: the step is added once
        form = status_form(sid, recording_sid)
        assert post(vm_app, f"/voice/voicemail/status?s={step}", form).status_code == 200
    with vm_app.app_context():
        session = db.session()
        session.expire_all()
        call = session.get(CallRecord, sid)
        assert call is not None
        events = [(s.seq, s.event, s.node) for s in call.steps]
        assert (call.outcome, call.last_node) == ("ended", "voicemail")
        assert call.steps[-1].detail["outcome"] == "ended"
    assert [event for _, event, _ in events][-3:] == ["voicemail", "hangup", "end"]
    assert [seq for seq, _, _ in events] == list(range(len(events)))
    [row] = voicemails(vm_app)
    assert (row.status, row.duration) == ("ready", 9)


def test_a_repeated_action_after_the_call_ended_adds_the_step_once(vm_app: Flask) -> None:
    sid, step = start_to_record(vm_app)
    post(vm_app, "/voice/status", call_form(sid, CallStatus="completed", CallDuration="20"))
    action = recording(sid, "RE" + "34" * 16, RecordingDuration="6", Digits="hangup")
    for _ in range(2):
        twiml(post(vm_app, f"/voice/voicemail/recorded?s={step}", action))
    with vm_app.app_context():
        call = db.session().get(CallRecord, sid)
        assert call is not None
        events = [s.event for s in call.steps]
    assert events.count("voicemail") == 1 and events[-3:] == ["voicemail", "hangup", "end"]
    [row] = voicemails(vm_app)
    assert (row.flow, row.duration) == ("vm", 6)
