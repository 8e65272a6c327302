"""The `schedule` node: which way a call goes by the line's weekly hours, its holidays
and an emergency closure ops switch on without publishing (`ivr hours close`).

Written as ops read a notice on a door:

    opening_hours:
      type: schedule
      timezone: America/New_York
      hours:
        mon: 08:00-20:00
        tue: 08:00-12:00, 13:00-20:00
        sat: 09:00-13:00          # a day not listed (sun here) is closed all day
      holidays:
        2026-12-25: Christmas Day
      open: main_menu
      closed: after_hours
      holiday: holiday_closed
      emergency: emergency_closed

Hours and holidays are mappings of plain words (the one container the loader and the
console's node editor handle): a day's ranges are one string, comma-separated, and a
holiday is its ISO date with a name that says which one it is. Everything is checked
when the flow loads (`problems`), so a typo in a time never surfaces mid-call.
"""

from __future__ import annotations

import functools
import itertools
import re
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from types import MappingProxyType

from ivr.flow.model.base import Node, node_ref, prompt_ref

# The days of `hours`, in datetime.weekday() order (Monday is 0).
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
CLOSED_DAY = "closed"  # a day written out as closed all day (as good as leaving it out)
END_OF_DAY = 24 * 60  # "24:00": open until midnight
_TIME = re.compile(r"(\d{1,2}):(\d{2})")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
RANGE_FORMAT = "HH:MM-HH:MM, comma-separated (e.g. 09:00-12:00, 13:00-17:00)"

Ranges = tuple[tuple[int, int], ...]  # [start, end) in minutes after local midnight


@dataclass(frozen=True, kw_only=True)
class ScheduleNode(Node):
    """Sends the call on by the local time in `timezone`: an emergency closure first,
    then a holiday, then the weekly hours (open or closed)."""

    timezone: str = field()  # an IANA name, e.g. America/New_York
    hours: Mapping[str, str] = field(metadata={"keys": "weekday"})
    holidays: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({}), metadata={"keys": "date"}
    )
    open: str = node_ref()
    closed: str = node_ref()
    holiday: str = node_ref()
    emergency: str = node_ref()
    # Spoken before the emergency exit when the closure's own message is not among this
    # version's prompts (a publish since the closure removed it): better a general word
    # than silence. Without it such a call goes on to the emergency exit unannounced.
    emergency_prompt: str | None = prompt_ref(default=None)

    def problems(self, languages: Sequence[str]) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        zone_problem = _zone_problem(self.timezone)
        if zone_problem:
            found.append(("timezone", zone_problem))
        for day, text in self.hours.items():
            if day not in DAYS:
                found.append((f"hours.{day}", "not a day; the days are " + ", ".join(DAYS)))
                continue
            try:
                parse_ranges(text)
            except ValueError as exc:
                found.append((f"hours.{day}", str(exc)))
        for key in self.holidays:
            if parse_date(key) is None:
                found.append((f"holidays.{key}", f"{key!r} is not a date; write it as YYYY-MM-DD"))
        return found

    def ranges(self, weekday: int) -> Ranges:
        """The opening ranges of a day (0 = Monday); none: closed all day."""
        return _ranges_of(self.hours.get(DAYS[weekday], CLOSED_DAY))

    def is_holiday(self, day: date) -> bool:
        """Whether `day` (a local date) is one of the holidays."""
        return day.isoformat() in self.holidays

    def zone(self) -> zoneinfo.ZoneInfo:
        """The node's time zone (checked when the flow loaded)."""
        return zoneinfo.ZoneInfo(self.timezone)


def parse_ranges(text: str) -> Ranges:
    """A day's opening ranges, sorted; ValueError saying what is wrong."""
    if text.strip().lower() == CLOSED_DAY:
        return ()
    result: list[tuple[int, int]] = []
    for part in text.split(","):
        written = part.strip()
        start_text, dash, end_text = written.partition("-")
        if not dash:
            raise ValueError(f"{written!r} is not a range; write {RANGE_FORMAT}")
        start = _minutes(start_text.strip(), may_be_midnight=False)
        end = _minutes(end_text.strip(), may_be_midnight=True)
        if start >= end:
            raise ValueError(
                f"{written!r} ends before it starts; a range past midnight is two:"
                " 22:00-24:00 on one day and 00:00-02:00 on the next"
            )
        result.append((start, end))
    result.sort()
    for (_, first_end), (second_start, _) in itertools.pairwise(result):
        if second_start < first_end:
            raise ValueError(f"{text.strip()!r}: the ranges overlap")
    return tuple(result)


def parse_date(text: str) -> date | None:
    """A holiday's ISO date (YYYY-MM-DD), or None when it is not one."""
    if not _DATE.fullmatch(text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def _minutes(text: str, *, may_be_midnight: bool) -> int:
    found = _TIME.fullmatch(text)
    hour, minute = (int(found.group(1)), int(found.group(2))) if found else (-1, -1)
    if found and minute < 60 and (hour < 24 or (may_be_midnight and (hour, minute) == (24, 0))):
        return hour * 60 + minute
    ends = "00:00 to 24:00" if may_be_midnight else "00:00 to 23:59"
    raise ValueError(f"{text!r} is not a time of day (HH:MM, {ends}); write {RANGE_FORMAT}")


@functools.lru_cache(maxsize=256)
def _ranges_of(text: str) -> Ranges:
    return parse_ranges(text)


@functools.cache
def _known_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _zone_problem(name: str) -> str | None:
    """Why `name` is not an IANA time zone name this service knows, or None."""
    if name in _known_zones():
        return None
    hint = next((z for z in sorted(_known_zones()) if z.lower() == name.lower()), None)
    suggestion = f" (did you mean {hint}?)" if hint else " (e.g. America/New_York, Europe/Madrid)"
    return f"{name!r} is not a known IANA time zone name{suggestion}"
