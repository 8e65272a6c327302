"""The console's node editor on the node kinds issue 15 added: a schedule's hours and
holidays, a split's exits and shares, a menu's speech. Each is a key → value mapping
the editor shows as rows, saves back unchanged, and checks row by row as the loader
would, marking the bad row."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from test_ops_drafts import _FormValues, draft_row, signed_in, start_draft

from ivr.flow import yamlread
from ivr.versions import draft_reading

DRAFT = "/ops/flows/support/draft"
HOURS = f"{DRAFT}/nodes/hours"
TRIAL = f"{DRAFT}/nodes/trial"


@pytest.fixture
def console(make_app: Any, working: Path) -> Flask:
    """The default flow with holidays and a split after the hours check, published."""
    flow = working / "flows" / "support.yaml"
    text = flow.read_text(encoding="utf-8")
    old = "    open: welcome\n"
    assert old in text
    text = text.replace(
        old,
        "    holidays:\n      2026-12-25: Christmas Day\n      2027-01-01: New Year\n"
        "    open: trial\n",
    ).replace(
        "  after_hours:\n",
        "  trial:\n    type: split\n    exits:\n      old: welcome\n      new: language\n"
        "    shares:\n      old: 50\n      new: 50\n\n  after_hours:\n",
    )
    flow.write_text(text, encoding="utf-8")
    app: Flask = make_app(
        IVR_FLOWS_DIR=str(working / "flows"), IVR_PROMPTS_DIR=str(working / "prompts")
    )
    result = app.test_cli_runner().invoke(args=["flows", "publish", "-m", "first"])
    assert result.exit_code == 0, result.output
    return app


@pytest.fixture
def ops(console: Flask) -> FlaskClient:
    return signed_in(console, "olga", "ops")


def form_of(client: FlaskClient, path: str) -> dict[str, str]:
    parser = _FormValues()
    parser.feed(client.get(path).get_data(as_text=True))
    return parser.values


def row_named(values: dict[str, str], field: str, key: str) -> str:
    """The prefix (`hours-0`) of the row of `field` whose key is `key`."""
    for name, value in values.items():
        found = re.fullmatch(rf"({field}-\d+)-key", name)
        if found and value == key:
            return found.group(1)
    raise AssertionError(f"no row {key!r} in {field}: {values}")


def test_the_new_kinds_save_back_unchanged(console: Flask, ops: FlaskClient) -> None:
    start_draft(ops)
    before = draft_row(console)
    with console.app_context():
        nodes = list(draft_reading.raw_nodes(before))
    assert {"hours", "trial", "voicemail", "menu"} <= set(nodes)
    for node in ("hours", "trial", "voicemail", "menu", "confirm_new_number"):
        values = form_of(ops, f"{DRAFT}/nodes/{node}")
        answer = ops.post(f"{DRAFT}/nodes/{node}", data=values)
        assert answer.status_code == 303, (node, answer.get_data(as_text=True)[-3000:])
    hours = form_of(ops, HOURS)
    assert hours[f"{row_named(hours, 'hours', 'sat')}-value"] == "00:00-24:00"
    assert hours[f"{row_named(hours, 'holidays', '2026-12-25')}-value"] == "Christmas Day"
    trial = form_of(ops, TRIAL)
    assert trial[f"{row_named(trial, 'shares', 'new')}-value"] == "50"
    menu = form_of(ops, f"{DRAFT}/nodes/menu")
    assert menu[f"{row_named(menu, 'speech', '9')}-value"] == "speech_repeat"
    assert draft_row(console).files == before.files


def test_hours_and_a_holiday_are_edited_in_place(console: Flask, ops: FlaskClient) -> None:
    start_draft(ops)
    values = form_of(ops, HOURS)
    values[f"{row_named(values, 'hours', 'sun')}-value"] = "closed"
    values[f"{row_named(values, 'hours', 'sat')}-value"] = "13:00-17:00, 09:00-12:00"
    values[f"{row_named(values, 'holidays', '2027-01-01')}-key"] = "2027-07-04"
    values[f"{row_named(values, 'holidays', '2027-07-04')}-value"] = "Independence Day"
    answer = ops.post(HOURS, data=values)
    assert answer.status_code == 303, answer.get_data(as_text=True)[-3000:]
    text = draft_row(console).files["flows/support.yaml"]
    assert "      sun: closed\n" in text
    assert "      sat: 13:00-17:00, 09:00-12:00\n" in text
    assert yamlread.read(text)["nodes"]["hours"]["holidays"] == {
        "2026-12-25": "Christmas Day",
        "2027-07-04": "Independence Day",
    }
    assert 'data-testid="problems"' not in ops.get(HOURS).get_data(as_text=True)


@pytest.mark.parametrize(
    ("field", "key", "part", "bad", "message"),
    [
        ("hours", "mon", "value", "9-5", "is not a time of day"),
        ("hours", "tue", "value", "17:00-09:00", "ends before it starts"),
        ("hours", "wed", "key", "wednesday", "not one of: mon, tue, wed, thu, fri, sat, sun"),
        ("holidays", "2026-12-25", "key", "25/12/2026", "not a date; write it as YYYY-MM-DD"),
    ],
)
def test_a_bad_hours_row_is_marked_and_nothing_saved(
    console: Flask, ops: FlaskClient, field: str, key: str, part: str, bad: str, message: str
) -> None:
    start_draft(ops)
    before = draft_row(console)
    values = form_of(ops, HOURS)
    row = row_named(values, field, key)
    values[f"{row}-{part}"] = bad
    answer = ops.post(HOURS, data=values)
    assert answer.status_code == 422
    page = answer.get_data(as_text=True)
    assert message in page
    assert re.search(rf'id="{row}-{part}"[^>]*aria-invalid="true"', page) or re.search(
        rf'aria-invalid="true"[^>]*id="{row}-{part}"', page
    ), page
    assert draft_row(console).revision == before.revision


@pytest.mark.parametrize(
    ("share", "message"), [("fifty", "must be a whole number"), ("101", "must be from 0 to 100")]
)
def test_a_bad_share_is_marked_and_nothing_saved(
    console: Flask, ops: FlaskClient, share: str, message: str
) -> None:
    start_draft(ops)
    before = draft_row(console)
    values = form_of(ops, TRIAL)
    values[f"{row_named(values, 'shares', 'old')}-value"] = share
    answer = ops.post(TRIAL, data=values)
    assert answer.status_code == 422 and message in answer.get_data(as_text=True)
    assert draft_row(console).revision == before.revision


def test_shares_are_saved_as_numbers(console: Flask, ops: FlaskClient) -> None:
    start_draft(ops)
    values = form_of(ops, TRIAL)
    values[f"{row_named(values, 'shares', 'old')}-value"] = "70"
    values[f"{row_named(values, 'shares', 'new')}-value"] = "30"
    answer = ops.post(TRIAL, data=values)
    assert answer.status_code == 303, answer.get_data(as_text=True)[-3000:]
    text = draft_row(console).files["flows/support.yaml"]
    assert "      old: 70\n      new: 30\n" in text  # numbers, as the loader requires
    assert 'data-testid="problems"' not in ops.get(TRIAL).get_data(as_text=True)
