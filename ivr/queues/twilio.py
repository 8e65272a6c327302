"""Queues at Twilio: the Queue resource (a name resolved to its QU… SID once and cached)
and its Members (`GET …/Queues/{QU}/Members` lists CallSid, Position, WaitTime;
`POST …/Members/{CallSid}` with Url dequeues that call and redirects it); and moving
a call that waits elsewhere (`POST …/Calls/{CallSid}` with Url)."""

from __future__ import annotations

import logging
import threading

from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.rest import Client

from ivr.queues import Member, NotQueued, QueueUnavailable

log = logging.getLogger(__name__)

MAX_MEMBERS = 100  # one page: an agent takes from the front, never from the 101st caller
MAX_QUEUES = 1000  # Twilio's largest page of queues


class TwilioQueues:
    """A QueueSwitch over the REST API of the service's Twilio client."""

    def __init__(self, client: Client):
        self.client = client
        self._sids: dict[str, str] = {}
        self._lock = threading.Lock()

    def _sid(self, queue: str) -> str | None:
        """The QU… SID of the queue named `queue` (an `<Enqueue>` names queues by their
        friendly name); None when Twilio has no such queue yet (nobody ever held)."""
        if queue.startswith("QU"):
            return queue
        with self._lock:
            found = self._sids.get(queue)
        if found is not None:
            return found
        try:
            queues = self.client.queues.list(page_size=MAX_QUEUES, limit=MAX_QUEUES)
        except (TwilioException, OSError) as exc:
            raise QueueUnavailable(f"the queues could not be listed: {_reason(exc)}") from None
        for each in queues:
            if each.friendly_name == queue and each.sid:
                with self._lock:
                    self._sids[queue] = each.sid
                return each.sid
        return None

    def members(self, queue: str) -> list[Member]:
        sid = self._sid(queue)
        if sid is None:
            return []
        try:
            found = self.client.queues(sid).members.list(limit=MAX_MEMBERS, page_size=MAX_MEMBERS)
        except TwilioRestException as exc:
            if exc.status == 404:  # the queue was deleted: look its name up again next time
                self._forget(queue)
                return []
            raise QueueUnavailable(f"queue members could not be read: {_reason(exc)}") from None
        except (TwilioException, OSError) as exc:
            raise QueueUnavailable(f"queue members could not be read: {_reason(exc)}") from None
        members = [
            Member(str(m.call_sid), int(m.position or 0), int(m.wait_time or 0))
            for m in found
            if m.call_sid
        ]
        return sorted(members, key=lambda member: member.position)

    def redirect(self, queue: str, call_sid: str, url: str) -> None:
        sid = self._sid(queue)
        if sid is None:
            raise NotQueued(f"no queue named {queue!r}")
        try:
            self.client.queues(sid).members(call_sid).update(url=url, method="POST")
        except TwilioRestException as exc:
            if exc.status in (400, 404):  # Twilio: that call is not a member (any more)
                raise NotQueued(f"call {call_sid} is not in queue {queue!r}") from None
            raise QueueUnavailable(f"the member could not be redirected: {_reason(exc)}") from None
        except (TwilioException, OSError) as exc:
            raise QueueUnavailable(f"the member could not be redirected: {_reason(exc)}") from None
        log.info("call %s redirected out of queue %s", call_sid, queue)

    def move(self, call_sid: str, url: str) -> None:
        """Send a call wherever it is now (a conference's wait) to `url` (POST): the Call
        resource's update. QueueUnavailable when Twilio cannot be told."""
        try:
            self.client.calls(call_sid).update(url=url, method="POST")
        except (TwilioException, OSError) as exc:
            raise QueueUnavailable(f"the call could not be moved: {_reason(exc)}") from None
        log.info("call %s moved", call_sid)

    def _forget(self, queue: str) -> None:
        with self._lock:
            self._sids.pop(queue, None)


def _reason(exc: Exception) -> str:
    if isinstance(exc, TwilioRestException):
        return f"HTTP {exc.status}" + (f", Twilio error {exc.code}" if exc.code else "")
    return type(exc).__name__
