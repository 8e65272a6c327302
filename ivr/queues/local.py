"""Queues without a Twilio account: a small JSON file (next to the local outbox) that the
simulator, playing Twilio, keeps in step with its held callers, and the service reads.

The simulator `join`s a caller when it plays `<Enqueue>` and `leave`s them when they
hang up or leave. The service lists `members` and `redirect`s one: the member is taken
out and the redirect noted; after each webhook the simulator `take_redirect`s for the
callers it holds and moves that caller's leg to the URL, as Twilio would. Writers take an
exclusive `fcntl` lock, so a dev server and an in-process `ivr call` share the file.
Development only, like the outbox (no caller data in it: CallSids and times).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ivr.queues import Member, NotQueued

FILE_MODE = 0o600


def board_path(outbox_path: Path | str) -> Path:
    """Where the local queues of an outbox live: beside it, `<outbox stem>.queues.json`."""
    path = Path(outbox_path)
    return path.with_name(f"{path.stem}.queues.json")


class LocalQueues:
    """A QueueSwitch (and the simulator's side of it) over one JSON file."""

    def __init__(self, path: Path | str, clock: Callable[[], float] = time.time):
        self.path = Path(path)
        self.clock = clock

    # ---- the service's side (QueueSwitch)

    def members(self, queue: str) -> list[Member]:
        with self._board(write=False) as board:
            held = board["queues"].get(queue, [])
        now = self.clock()
        return [
            Member(each["call_sid"], index, max(0, int(now - each["since"])))
            for index, each in enumerate(held, start=1)
        ]

    def redirect(self, queue: str, call_sid: str, url: str) -> None:
        with self._board(write=True) as board:
            held = board["queues"].get(queue, [])
            if not any(each["call_sid"] == call_sid for each in held):
                raise NotQueued(f"call {call_sid} is not in queue {queue!r}")
            board["queues"][queue] = [each for each in held if each["call_sid"] != call_sid]
            board["redirects"][call_sid] = url

    def move(self, call_sid: str, url: str) -> None:
        """Send a call to `url` wherever it is (noted like a member's redirect)."""
        with self._board(write=True) as board:
            board["redirects"][call_sid] = url

    # ---- the simulator's side (playing Twilio)

    def join(self, queue: str, call_sid: str) -> int:
        """Put a call at the back of `queue`; its position (1 = front)."""
        with self._board(write=True) as board:
            held = board["queues"].setdefault(queue, [])
            held.append({"call_sid": call_sid, "since": self.clock()})
            return len(held)

    def leave(self, queue: str, call_sid: str) -> None:
        """Take a call out of `queue` (it hung up or left); no-op when it is not there."""
        with self._board(write=True) as board:
            held = board["queues"].get(queue, [])
            board["queues"][queue] = [each for each in held if each["call_sid"] != call_sid]

    def take_redirect(self, call_sid: str) -> str | None:
        """The URL the service redirected `call_sid` to (once), or None."""
        with self._board(write=True) as board:
            url = board["redirects"].pop(call_sid, None)
        return str(url) if url is not None else None

    def position(self, queue: str, call_sid: str) -> tuple[int, int]:
        """(QueuePosition, CurrentQueueSize) of a held call; position 0 when not held."""
        with self._board(write=False) as board:
            held = board["queues"].get(queue, [])
        sids = [each["call_sid"] for each in held]
        return (sids.index(call_sid) + 1 if call_sid in sids else 0), len(sids)

    def clear(self) -> None:
        with self._board(write=True) as board:
            board["queues"].clear()
            board["redirects"].clear()

    # ---- the file

    @contextmanager
    def _board(self, *, write: bool) -> Iterator[dict[str, Any]]:
        if not write and not self.path.exists():
            yield {"queues": {}, "redirects": {}}
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        with open(fd, "r+", encoding="utf-8") as file:
            fcntl.flock(file, fcntl.LOCK_EX if write else fcntl.LOCK_SH)
            try:
                raw = file.read()
                try:
                    board = json.loads(raw) if raw.strip() else {}
                except ValueError:
                    board = {}
                board.setdefault("queues", {})
                board.setdefault("redirects", {})
                yield board
                if write:
                    file.seek(0)
                    file.truncate()
                    file.write(json.dumps(board))
                    file.flush()
            finally:
                fcntl.flock(file, fcntl.LOCK_UN)
