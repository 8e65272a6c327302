"""Where held callers wait: a small protocol over a named queue (who is in it, in order,
and moving one exact caller out of it to a URL), with a Twilio implementation (the
Queue and Member REST resources) and a local one for development and the simulator.

The agent line (ivr.voice.agent_line) uses it to announce the caller at the front
and then bridge exactly that caller: a redirect names the member by CallSid, never
"whoever is first now".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ivr.errors import IvrError


@dataclass(frozen=True)
class Member:
    """One held call: its CallSid, its place (1 = front) and seconds held."""

    call_sid: str
    position: int
    wait_time: int


class NotQueued(IvrError):
    """The call is no longer in the queue (it hung up, left, or was taken elsewhere)."""


class QueueUnavailable(IvrError):
    """The queue could not be read or changed now (Twilio unreachable or refusing)."""


class QueueSwitch(Protocol):
    """What the agent line needs from the place queues live."""

    def members(self, queue: str) -> list[Member]:
        """The queue's members, front first (empty when the queue is empty or unknown)."""

    def redirect(self, queue: str, call_sid: str, url: str) -> None:
        """Take exactly `call_sid` out of `queue` and have its call request `url` (POST);
        NotQueued when it is no longer there."""
