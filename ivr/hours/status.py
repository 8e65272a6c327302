"""Whether the line is closed in an emergency, as the `schedule` node asks it: the
engine's `LineStatus`, read from the database at most once every CACHE_SECONDS per
worker process.

A call passes a schedule node at its very start, so reading the closures table on
every call would add a query to most `incoming` webhooks; instead each worker keeps
what it last read for a few seconds. A closure switched on (or off) therefore reaches
every worker within CACHE_SECONDS, and at once in the process that switched it
(`forget`, called by `ivr.hours.closures`). Only a flow that has a schedule node, and
only when a call reaches it, reads anything at all.

When the database cannot be read, the worker keeps what it knew last (open, if it
never knew) and tries again after CACHE_SECONDS: the hours and holidays still apply,
and the call goes on rather than failing on a switch that is almost always off.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from flask import Flask, current_app
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from ivr.errors import StorageUnavailable
from ivr.storage import db
from ivr.storage.models import LineClosure

log = logging.getLogger(__name__)

# The app extension holding the clock `ivr call --at` places a simulated call's hours by
# (absent: the real clock). The codes' lifetimes and everything else keep real time.
LINE_CLOCK = "ivr.line_clock"
CACHE_SECONDS = 5.0  # how long a worker trusts what it read (the switch's delay)
EXTENSION = "ivr.hours.status"


class ClosureCache:
    """What one worker last read of each line's closure, and when."""

    def __init__(self, seconds: float = CACHE_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.seconds = seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._known: dict[str, tuple[float, str | None]] = {}  # line → (read at, message)

    def message(self, line: str, read: Callable[[str], str | None]) -> str | None:
        """The closure's message key for `line` (None: open), read again when stale."""
        now = self.clock()
        with self._lock:
            known = self._known.get(line)
        if known is not None and now - known[0] < self.seconds:
            return known[1]
        try:
            message = read(line)
        except (DBAPIError, StorageUnavailable) as exc:
            message = known[1] if known is not None else None
            log.warning(
                "line %s: closure status unreadable (%s); keeping %s",
                line,
                exc.__class__.__name__,
                "closed" if message else "open",
            )
        with self._lock:
            self._known[line] = (now, message)
        return message

    def forget(self) -> None:
        """Read again at the next question (after a switch, or between tests)."""
        with self._lock:
            self._known.clear()


class DatabaseLineStatus:
    """The engine's `LineStatus` for one line, over the worker's cache."""

    def __init__(self, line: str, cache: ClosureCache):
        self.line = line
        self.cache = cache

    def emergency(self) -> str | None:
        return self.cache.message(self.line, read_message)


def read_message(line: str) -> str | None:
    """The message key of the line's closure in force, from the database (one query)."""
    query = (
        select(LineClosure.message)
        .where(LineClosure.line == line, LineClosure.opened_at.is_(None))
        .limit(1)
    )
    rows = db.read_rows(query)
    return str(rows[0][0]) if rows else None


def cache(app: Flask | None = None) -> ClosureCache:
    """The app's (this worker's) cache, made on first use."""
    target = app or current_app
    found: ClosureCache | None = target.extensions.get(EXTENSION)
    if found is None:
        found = target.extensions.setdefault(EXTENSION, ClosureCache())
    return found


def line_status(line: str) -> DatabaseLineStatus:
    """The status of `line` for an engine of the current app."""
    return DatabaseLineStatus(line, cache())


def forget(app: Flask | None = None) -> None:
    """Drop what this worker knows, so the next call reads the database (tests use it
    too: a test that switches the database behind the app's back)."""
    cache(app).forget()
