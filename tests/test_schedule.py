"""The `schedule` node: strict loading and validation (file, line and field named), and
its decision at the edges of the hours, across time zones and a DST change, on
holidays, and under an emergency closure (which wins over everything and is spoken)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ivr.errors import InvalidDefinition
from ivr.flow.engine import Engine
from ivr.flow.engine.schedule import by_the_clock
from ivr.flow.instructions import Gather, Hangup, Instruction, Say
from ivr.flow.loader import load_definitions
from ivr.flow.loader.definitions import Definitions
from ivr.flow.model import Catalog, ScheduleNode, parse_target
from ivr.flow.model.schedule import parse_ranges

ROOT = Path(__file__).resolve().parent.parent

# A line open on weekdays with a lunch break on Tuesdays, late on Fridays, a short
# Saturday and Sundays only in spring (to cross the DST change); Christmas off.
SCHEDULE = """\
name: hours
description: A line with opening hours.
start: opening_hours
languages: [en-US, es-US]
max_inputs: 10

nodes:
  opening_hours:
    type: schedule
    timezone: America/New_York
    hours:
      mon: 09:00-17:00
      tue: 09:00-12:00, 13:00-17:00
      wed: 09:00-17:00
      thu: 09:00-17:00
      fri: 09:00-17:00, 20:00-24:00
      sat: closed
      sun: 09:00-17:00
    holidays:
      2026-12-25: Christmas Day
    open: menu
    closed: closed_hours
    holiday: closed_holiday
    emergency: goodbye

  menu:
    type: menu
    prompt: language_option
    options:
      1: goodbye
    no_input: goodbye
    invalid: menu
    too_many_tries: goodbye

  closed_hours:
    type: say
    prompt: closed_hours
    next: goodbye

  closed_holiday:
    type: say
    prompt: closed_holiday
    next: goodbye

  goodbye:
    type: hangup
"""


def write_flow(root: Path, text: str) -> tuple[Path, Path]:
    """The flow as the only file of a flows folder, beside a copy of the prompts."""
    flows = root / "flows"
    flows.mkdir(exist_ok=True)
    (flows / "hours.yaml").write_text(text)
    prompts = root / "prompts"
    if not prompts.exists():
        shutil.copytree(ROOT / "prompts", prompts)
    return flows, prompts


def load(tmp_path: Path, text: str = SCHEDULE) -> Definitions:
    flows, prompts = write_flow(tmp_path, text)
    return load_definitions(flows, prompts, "US")


def problems_of(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(InvalidDefinition) as caught:
        load(tmp_path, text)
    return [str(problem) for problem in caught.value.problems]


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if line.strip().startswith(needle))


# ---------------------------------------------------------------- loading and validation


def test_the_schedule_loads_into_its_node(tmp_path: Path) -> None:
    node = load(tmp_path).flows["hours"].nodes["opening_hours"]
    assert isinstance(node, ScheduleNode)
    assert node.timezone == "America/New_York"
    assert node.ranges(1) == ((540, 720), (780, 1020))  # Tuesday
    assert node.ranges(4)[-1] == (1200, 1440)  # Friday until midnight ("24:00")
    assert node.ranges(5) == ()  # "closed"
    assert node.transitions() == {
        "open": "menu",
        "closed": "closed_hours",
        "holiday": "closed_holiday",
        "emergency": "goodbye",
    }
    assert node.emergency_prompt is None


# (text replaced, replacement, field, words in the message, line of the key named)
BROKEN = [
    ("America/New_York", "Mars/Olympus", "timezone", "'Mars/Olympus' is not a known IANA", None),
    ("America/New_York", "america/new_york", "timezone", "did you mean America/New_York?", None),
    ("mon: 09:00-17:00", "mon: 9-17", "hours.mon", "'9' is not a time of day", "hours:"),
    ("mon: 09:00-17:00", "mon: 09:00-25:00", "hours.mon", "'25:00' is not a time", "hours:"),
    ("mon: 09:00-17:00", "mon: 24:00-24:00", "hours.mon", "00:00 to 23:59", "hours:"),
    ("mon: 09:00-17:00", "mon: 17:00-09:00", "hours.mon", "ends before it starts", "hours:"),
    ("mon: 09:00-17:00", "mon: 09:00", "hours.mon", "'09:00' is not a range", "hours:"),
    (
        "tue: 09:00-12:00, 13:00-17:00",
        "tue: 09:00-13:30, 13:00-17:00",
        "hours.tue",
        "the ranges overlap",
        "hours:",
    ),
    ("mon: 09:00-17:00", "monday: 09:00-17:00", "hours.monday", "not a day; the days", "hours:"),
    ("2026-12-25: Christmas", "2026-13-25: Christmas", "holidays.2026-13-25", "not a date", None),
    ("2026-12-25: Christmas", "25/12/2026: Christmas", "holidays.25/12/2026", "YYYY-MM-DD", None),
    # A missing field: the node's own mapping, which starts at its first key.
    ("    emergency: goodbye\n", "", "emergency", "a schedule node needs emergency", "type:"),
    ("    open: menu\n", "    open: menu\n    shut: goodbye\n", "shut", "unknown key", None),
    (
        "    holiday: closed_holiday\n",
        "    holiday: nowhere\n",
        "holiday",
        "goes to 'nowhere'",
        None,
    ),
    (
        "    emergency: goodbye\n",
        "    emergency: goodbye\n    emergency_prompt: no_such_prompt\n",
        "emergency_prompt",
        "prompt 'no_such_prompt' is missing in: en-US, es-US",
        None,
    ),
    ("      sat: closed\n", "      sat: [09:00-12:00]\n", "hours", "non-empty word", None),
    ("      2026-12-25: Christmas Day\n", "      - 2026-12-25\n", "holidays", "mapping", None),
]


@pytest.mark.parametrize(("old", "new", "field", "words", "key_line"), BROKEN)
def test_a_broken_schedule_names_file_line_node_and_field(
    tmp_path: Path, old: str, new: str, field: str, words: str, key_line: str | None
) -> None:
    assert old in SCHEDULE
    text = SCHEDULE.replace(old, new, 1)
    found = [p for p in problems_of(tmp_path, text) if f": opening_hours: {field}: " in p]
    assert len(found) == 1, problems_of(tmp_path, text)
    assert words in found[0]
    where = key_line or field.split(".")[0] + ":"
    expected_line = line_of(text, where)
    assert found[0].startswith(f"{tmp_path / 'flows' / 'hours.yaml'}:{expected_line}: ")


def test_every_problem_of_a_schedule_is_reported_in_one_run(tmp_path: Path) -> None:
    text = (
        SCHEDULE.replace("America/New_York", "Nowhere/Town")
        .replace("mon: 09:00-17:00", "mon: 09:00-08:00")
        .replace("2026-12-25", "2026-02-30")
    )
    fields = {p.split(": ")[2] for p in problems_of(tmp_path, text)}
    assert fields == {"timezone", "hours.mon", "holidays.2026-02-30"}


@pytest.mark.parametrize(
    ("text", "ranges"),
    [
        ("closed", ()),
        ("Closed", ()),
        ("00:00-24:00", ((0, 1440),)),
        (" 13:00-17:00 ,09:00-12:00 ", ((540, 720), (780, 1020))),
        ("09:00-12:00, 12:00-13:00", ((540, 720), (720, 780))),  # touching is no overlap
        ("9:30-10:00", ((570, 600),)),
    ],
)
def test_ranges_as_ops_write_them(text: str, ranges: tuple[tuple[int, int], ...]) -> None:
    assert parse_ranges(text) == ranges


# ---------------------------------------------------------------- the decision


def epoch(utc: str) -> float:
    """Seconds since the epoch of a UTC time written as ISO 8601."""
    return datetime.fromisoformat(utc).replace(tzinfo=UTC).timestamp()


@pytest.fixture
def schedule(tmp_path: Path) -> ScheduleNode:
    node = load(tmp_path).flows["hours"].nodes["opening_hours"]
    assert isinstance(node, ScheduleNode)
    return node


# New York is UTC-5 in December (EST), UTC-4 from 8 March 2026 (EDT).
@pytest.mark.parametrize(
    ("utc", "exit_label"),
    [
        ("2026-12-07T13:59:59", "closed"),  # Monday 08:59:59
        ("2026-12-07T14:00:00", "open"),  # Monday 09:00 sharp
        ("2026-12-07T21:59:59", "open"),  # Monday 16:59:59
        ("2026-12-07T22:00:00", "closed"),  # Monday 17:00: the end is not open
        ("2026-12-08T16:59:00", "open"),  # Tuesday 11:59
        ("2026-12-08T17:00:00", "closed"),  # Tuesday 12:00: lunch
        ("2026-12-08T18:00:00", "open"),  # Tuesday 13:00
        ("2026-12-05T04:59:59", "open"),  # Friday 23:59:59 ("24:00")
        ("2026-12-05T05:00:00", "closed"),  # Saturday 00:00: closed all day
        ("2026-12-05T17:00:00", "closed"),  # Saturday noon
        ("2026-12-25T15:00:00", "holiday"),  # Christmas, a Friday, within the hours
    ],
)
def test_the_hours_at_their_edges(schedule: ScheduleNode, utc: str, exit_label: str) -> None:
    assert by_the_clock(schedule, epoch(utc)) == exit_label


def test_a_holiday_is_the_local_date_not_the_utc_one(schedule: ScheduleNode) -> None:
    # 25 December 03:00 UTC is still Thursday 24 December, 22:00, in New York: closed,
    # not a holiday; 26 December 03:00 UTC is Christmas evening there: the holiday.
    assert by_the_clock(schedule, epoch("2026-12-25T03:00:00")) == "closed"
    assert by_the_clock(schedule, epoch("2026-12-26T03:00:00")) == "holiday"


def test_a_holiday_beats_the_hours_even_on_a_closed_day(tmp_path: Path) -> None:
    text = SCHEDULE.replace("2026-12-25: Christmas Day", "2026-12-26: Boxing Day")
    node = load(tmp_path, text).flows["hours"].nodes["opening_hours"]
    assert isinstance(node, ScheduleNode)
    assert by_the_clock(node, epoch("2026-12-26T17:00:00")) == "holiday"  # a Saturday


def test_the_dst_change_day_follows_the_local_clock(schedule: ScheduleNode) -> None:
    # Sunday 8 March 2026 the clocks go from 02:00 EST to 03:00 EDT: 13:30 UTC is 09:30
    # there that day (open), where the Saturday before it was 08:30 (closed, and Saturday).
    assert by_the_clock(schedule, epoch("2026-03-08T13:30:00")) == "open"
    assert by_the_clock(schedule, epoch("2026-03-08T12:59:59")) == "closed"  # 08:59:59 EDT
    assert by_the_clock(schedule, epoch("2026-03-08T13:00:00")) == "open"  # 09:00 EDT
    # A fixed UTC-5 would call this 08:30, closed:
    assert by_the_clock(schedule, epoch("2026-03-09T13:30:00")) == "open"  # Monday 09:30 EDT


def test_the_same_moment_in_another_time_zone(tmp_path: Path) -> None:
    node = load(tmp_path, SCHEDULE.replace("America/New_York", "Europe/Madrid")).flows["hours"]
    schedule = node.nodes["opening_hours"]
    assert isinstance(schedule, ScheduleNode)
    # Monday 08:30 UTC: 09:30 in Madrid (open), 03:30 in New York (closed).
    assert by_the_clock(schedule, epoch("2026-12-07T08:30:00")) == "open"


class Closed:
    """A LineStatus whose closure is in force with `message` (None: open)."""

    def __init__(self, message: str | None):
        self.message = message
        self.asked = 0

    def emergency(self) -> str | None:
        self.asked += 1
        return self.message


def start(
    tmp_path: Path, utc: str, status: Closed | None, text: str = SCHEDULE
) -> tuple[list[str], list[Instruction], Catalog]:
    """A call's first turn at `utc`: the exits it took, what it answers, the prompts."""
    definitions = load(tmp_path, text)
    engine = Engine(
        definitions.flows["hours"],
        definitions.catalog,
        None,  # type: ignore[arg-type]  # the flow looks nobody up
        parse_target("+15005550006", "US"),
        "US",
        clock=lambda: epoch(utc),
        line_status=status,
    )
    turn = engine.start("CA" + "1" * 32, "+14155550100")
    exits = [step["exit"] for step in turn.steps if step["event"] == "exit"]
    return exits, turn.instructions, definitions.catalog


def test_an_emergency_closure_wins_and_is_spoken_first(tmp_path: Path) -> None:
    status = Closed("closed_emergency")
    exits, instructions, catalog = start(tmp_path, "2026-12-25T15:00:00", status)
    assert exits == ["emergency"]  # on Christmas, within the hours: the closure wins
    says = [item for item in instructions if isinstance(item, Say)]
    assert [say.text for say in says] == [catalog.text("en-US", "closed_emergency")]
    assert isinstance(instructions[-1], Hangup)
    assert status.asked == 1


@pytest.mark.parametrize(
    ("utc", "exit_label", "prompt"),
    [
        ("2026-12-07T15:00:00", "open", "language_option"),
        ("2026-12-07T23:00:00", "closed", "closed_hours"),
        ("2026-12-25T15:00:00", "holiday", "closed_holiday"),
    ],
)
def test_without_a_closure_the_clock_decides_and_the_timeline_says_how(
    tmp_path: Path, utc: str, exit_label: str, prompt: str
) -> None:
    exits, instructions, catalog = start(tmp_path, utc, Closed(None))
    assert exits[0] == exit_label
    spoken = [item.text for item in instructions if isinstance(item, Say)]
    spoken += [
        p.text
        for item in instructions
        if isinstance(item, Gather)
        for p in item.prompts
        if isinstance(p, Say)
    ]
    assert catalog.text("en-US", prompt) in spoken


def test_no_line_status_means_never_closed(tmp_path: Path) -> None:
    exits, _, _ = start(tmp_path, "2026-12-07T15:00:00", None)
    assert exits == ["open"]


def test_a_closure_message_missing_from_the_version_falls_back_to_the_node_prompt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = SCHEDULE.replace(
        "    emergency: goodbye\n",
        "    emergency: goodbye\n    emergency_prompt: closed_emergency\n",
    )
    exits, instructions, catalog = start(
        tmp_path, "2026-12-07T15:00:00", Closed("closed_for_the_storm"), text
    )
    assert exits == ["emergency"]
    spoken = [item.text for item in instructions if isinstance(item, Say)]
    assert spoken == [catalog.text("en-US", "closed_emergency")]
    assert "'closed_for_the_storm' is not among the prompts" in caplog.text
    # Without an emergency_prompt the call goes on to the exit unannounced (still logged).
    exits, instructions, _ = start(tmp_path, "2026-12-07T15:00:00", Closed("closed_for_the_storm"))
    assert exits == ["emergency"]
    assert not [item for item in instructions if isinstance(item, Say)]


def test_the_closure_is_spoken_in_the_call_language(tmp_path: Path) -> None:
    text = SCHEDULE.replace("languages: [en-US, es-US]", "languages: [es-US, en-US]")
    exits, instructions, catalog = start(
        tmp_path, "2026-12-07T15:00:00", Closed("closed_emergency"), text
    )
    assert exits == ["emergency"]
    spoken = [(item.text, item.language) for item in instructions if isinstance(item, Say)]
    assert spoken == [(catalog.text("es-US", "closed_emergency"), "es-US")]
