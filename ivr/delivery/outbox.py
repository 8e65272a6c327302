"""The local outbox: what would have been sent, kept in a JSON-lines file (development only).

With the embedded defaults nothing leaves the machine; the simulator and
`ivr outbox list` read codes from here. Outbound calls are stored too (channel
"call", with the URL Twilio would fetch and no body): the simulator answers them
by following that URL, as Twilio would. It is the only place a message body
(and so a code) is ever stored, which is why the file is private (0600) and why
Settings refuses the outbox in production. Writers take an exclusive `fcntl`
lock, so the dev server and an in-process `ivr call` can append at the same time.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from ivr.delivery import Outgoing, OutgoingCall

log = logging.getLogger(__name__)

FILE_MODE = 0o600


@dataclass(frozen=True)
class OutboxMessage:
    """One stored message, as written to a line of the outbox file."""

    id: str
    at: str  # ISO 8601, UTC
    channel: str
    to: str
    subject: str
    body: str
    call_sid: str | None
    purpose: str
    url: str = ""  # outbound calls: what Twilio would fetch when answered
    status_callback: str = ""
    ring_seconds: int = 0


_CALL_FIELDS = ("url", "status_callback", "ring_seconds")


class Outbox:
    """A channel (and a Dialer) that stores what would be sent instead of sending it."""

    def __init__(self, path: Path | str):
        self.path = Path(path)

    def send(self, message: Outgoing) -> str:
        """Append the message and return its outbox id (OB…)."""
        stored = OutboxMessage(
            id="OB" + uuid.uuid4().hex,
            at=datetime.now(UTC).isoformat(timespec="milliseconds"),
            channel=message.channel,
            to=message.to,
            subject=message.subject,
            body=message.body,
            call_sid=message.call_sid,
            purpose=message.purpose,
        )
        return self._append(stored)

    def place(self, call: OutgoingCall) -> str:
        """Store an outbound call (for the simulator to answer) and return its id (CA…)."""
        stored = OutboxMessage(
            id="CA" + uuid.uuid4().hex,
            at=datetime.now(UTC).isoformat(timespec="milliseconds"),
            channel="call",
            to=call.to,
            subject="",
            body="",
            call_sid=call.call_sid,
            purpose=call.purpose,
            url=call.url,
            status_callback=call.status_callback,
            ring_seconds=call.ring_seconds,
        )
        return self._append(stored)

    def _append(self, stored: OutboxMessage) -> str:
        fields = asdict(stored)
        if stored.channel != "call":  # messages keep the shape they always had
            for name in _CALL_FIELDS:
                del fields[name]
        line = json.dumps(fields, ensure_ascii=False) + "\n"
        with _locked(self.path, "a", fcntl.LOCK_EX) as file:
            file.write(line)
        log.info(
            "outbox stored id=%s channel=%s call_sid=%s", stored.id, stored.channel, stored.call_sid
        )
        return stored.id


def read(path: Path | str, to: str | None = None, limit: int | None = None) -> list[OutboxMessage]:
    """Messages in the outbox (only those to `to` when given), newest last, at most `limit`."""
    path = Path(path)
    try:
        with _locked(path, "r", fcntl.LOCK_SH) as file:
            lines = file.read().splitlines()
    except FileNotFoundError:
        return []
    messages = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            message = OutboxMessage(**json.loads(line))
        except (ValueError, TypeError):
            log.warning("outbox %s: line %d is not a stored message; skipped", path, number)
            continue
        if to is None or message.to == to:
            messages.append(message)
    if limit is not None:
        messages = messages[-limit:] if limit > 0 else []
    return messages


def latest_for(path: Path | str, to: str) -> OutboxMessage | None:
    """The newest message to `to`, or None."""
    found = read(path, to=to, limit=1)
    return found[0] if found else None


def clear(path: Path | str) -> int:
    """Empty the outbox (the file stays, private); return how many messages it held."""
    path = Path(path)
    if not path.exists():
        return 0
    with _locked(path, "r+", fcntl.LOCK_EX) as file:
        count = sum(1 for line in file if line.strip())
        file.truncate(0)
    return count


_OPEN_FLAGS = {
    "r": os.O_RDONLY,
    "a": os.O_WRONLY | os.O_APPEND | os.O_CREAT,
    "r+": os.O_RDWR | os.O_CREAT,
}


@contextmanager
def _locked(path: Path, mode: str, operation: int) -> Iterator[IO[str]]:
    """Open the outbox file and hold an flock on it; writers create it 0600 (and folders)."""
    if mode != "r":
        path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, _OPEN_FLAGS[mode], FILE_MODE)
    if mode != "r":
        os.fchmod(fd, FILE_MODE)  # also tightens a file created before this rule
    with open(fd, mode, encoding="utf-8") as file:
        fcntl.flock(file, operation)
        try:
            yield file
        finally:
            try:
                file.flush()  # while still holding the lock
            finally:
                fcntl.flock(file, fcntl.LOCK_UN)
