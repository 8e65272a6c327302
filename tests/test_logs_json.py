"""IVR_LOG_FORMAT=json: one JSON object per line, with the CallSid on every line logged
while a webhook of that call is handled; text lines as before by default."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import AUTH_TOKEN, PUBLIC_URL, app_environ
from flask import Flask
from kit import JANE_PHONE, call_form, new_sid, post

from ivr.metrics import logs

ROOT = Path(__file__).resolve().parent.parent


def as_json(record: logging.LogRecord) -> dict[str, object]:
    line = logs.JsonFormatter().format(record)
    assert "\n" not in line
    parsed: dict[str, object] = json.loads(line)
    return parsed


def test_lines_logged_during_a_webhook_carry_its_call_sid(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    call_sid = new_sid()
    assert post(app, "/voice/incoming", call_form(call_sid)).status_code == 200
    started = [r for r in caplog.records if "started on" in r.getMessage()]
    assert started, [r.getMessage() for r in caplog.records]
    for record in caplog.records:
        assert record.call_sid == call_sid  # type: ignore[attr-defined]
    line = as_json(started[0])
    assert line["call_sid"] == call_sid
    assert line["level"] == "INFO"
    assert line["logger"] == "ivr.voice.views"
    assert JANE_PHONE not in str(line["message"])  # masked, as in text lines
    assert "•" in str(line["message"])
    # The time is ISO 8601, in UTC.
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", str(line["time"]))

    # After the request, lines carry no CallSid any more.
    caplog.clear()
    logging.getLogger("ivr.test").warning("between calls")
    (after,) = caplog.records
    assert after.call_sid is None  # type: ignore[attr-defined]
    assert "call_sid" not in as_json(after)


@pytest.mark.parametrize(
    "call_sid",
    ["CA" + "0" * 31, "CA" + "G" * 32, "+14155550100", "CA" + "a" * 32 + "\n", ""],
)
def test_a_call_sid_of_the_wrong_shape_is_not_attached(
    app: Flask, caplog: pytest.LogCaptureFixture, call_sid: str
) -> None:
    caplog.set_level(logging.INFO)
    post(app, "/voice/incoming", call_form(call_sid))
    assert caplog.records  # the refusal (or the call) was logged
    assert all(record.call_sid is None for record in caplog.records)  # type: ignore[attr-defined]


@pytest.mark.parametrize("refusal", ["unsigned", "bad signature", "another account"])
def test_a_refused_request_puts_no_call_sid_on_any_line(
    app: Flask, caplog: pytest.LogCaptureFixture, refusal: str
) -> None:
    """Only a request that passed Twilio's signature check tags lines: an unsigned one
    cannot put a CallSid of its choosing (a real call's, say) on our log lines."""
    caplog.set_level(logging.INFO)
    call_sid = new_sid()
    form = call_form(call_sid)
    if refusal == "another account":
        form["AccountSid"] = "AC" + "f" * 32  # validly signed, but not our account
    response = post(
        app,
        "/voice/incoming",
        form,
        signed=refusal != "unsigned",
        header="not-a-signature" if refusal == "bad signature" else None,
    )
    assert response.status_code == 403
    rejected = [r for r in caplog.records if r.getMessage().startswith("rejected")]
    assert len(rejected) == 1, [r.getMessage() for r in caplog.records]
    assert all(record.call_sid is None for record in caplog.records)  # type: ignore[attr-defined]
    assert "call_sid" not in as_json(rejected[0])


def test_a_bound_call_sid_tags_lines_only_while_its_check_says_so() -> None:
    verified = False
    token = logs.bind_call_sid("CA" + "a" * 32, trusted=lambda: verified)
    try:
        logger = logging.getLogger("ivr.test")
        before = logger.makeRecord("ivr.test", logging.INFO, __file__, 1, "before", (), None)
        verified = True
        after = logger.makeRecord("ivr.test", logging.INFO, __file__, 1, "after", (), None)
    finally:
        logs.unbind_call_sid(token)
    assert before.call_sid is None  # type: ignore[attr-defined]
    assert after.call_sid == "CA" + "a" * 32  # type: ignore[attr-defined]
    assert logs.current_call_sid() is None


def test_an_exception_is_kept_in_its_line() -> None:
    logger = logging.getLogger("ivr.test")
    try:
        raise ValueError("boom")
    except ValueError:
        record = logger.makeRecord(
            "ivr.test", logging.ERROR, __file__, 1, "failed %s", ("x",), sys.exc_info()
        )
    line = as_json(record)
    assert line["message"] == "failed x"
    assert "ValueError: boom" in str(line["exc_info"])


SCRIPT = textwrap.dedent(
    """
    import json, logging, sys
    from twilio.request_validator import RequestValidator
    from ivr.app import create_app

    environ, call_sid, public_url, token = json.loads(sys.argv[1])
    app = create_app(environ)
    form = {{
        "AccountSid": "AC" + "0" * 32, "CallSid": call_sid, "From": "{phone}",
        "To": "+15005550006", "CallStatus": "ringing", "Direction": "inbound",
    }}
    signature = RequestValidator(token).compute_signature(public_url + "/voice/incoming", form)
    response = app.test_client().post(
        "/voice/incoming", data=form, headers={{"X-Twilio-Signature": signature}}
    )
    assert response.status_code == 200, response.status_code
    logging.getLogger("ivr.test").info("after the call")
    """
).format(phone=JANE_PHONE)


def run_app(database_url: str, tmp_path: Path, call_sid: str, **overrides: str) -> list[str]:
    """Build an app in a process of its own (no pytest handler on its root logger),
    post one webhook, and return its stderr lines."""
    environ = app_environ(database_url, IVR_OUTBOX_PATH=str(tmp_path / "outbox.jsonl"), **overrides)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps([environ, call_sid, PUBLIC_URL, AUTH_TOKEN])],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return [line for line in done.stderr.splitlines() if line.strip()]


def test_json_format_writes_one_object_per_line(database_url: str, tmp_path: Path) -> None:
    call_sid = new_sid()
    lines = run_app(database_url, tmp_path, call_sid, IVR_LOG_FORMAT="json")
    parsed = [json.loads(line) for line in lines]  # every line is JSON
    assert all({"time", "level", "logger", "message"} <= set(line) for line in parsed)
    started = [line for line in parsed if "started on" in line["message"]]
    assert len(started) == 1 and started[0]["call_sid"] == call_sid
    (after,) = [line for line in parsed if line["message"] == "after the call"]
    assert "call_sid" not in after
    assert JANE_PHONE not in "\n".join(lines)


def test_text_format_is_unchanged_by_default(database_url: str, tmp_path: Path) -> None:
    lines = run_app(database_url, tmp_path, new_sid())
    text_line = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ [\w.]+ .*")
    assert lines and all(text_line.match(line) for line in lines), lines
    assert any(line.endswith("INFO ivr.test after the call") for line in lines)
