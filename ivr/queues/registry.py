"""Which QueueSwitch the app uses, chosen at boot by the setting that chooses Twilio or the
local outbox for delivery (IVR_DELIVERY): local queues go with the local outbox."""

from __future__ import annotations

from typing import Protocol

from flask import Flask, current_app

from ivr.config import Settings
from ivr.delivery.twilio_client import DEFAULT_TIMEOUT, make_client
from ivr.queues import QueueSwitch
from ivr.queues.local import LocalQueues, board_path
from ivr.queues.twilio import TwilioQueues

EXTENSION_KEY = "ivr.queues"


class CallMover(Protocol):
    """Moving a call that no longer waits in a queue (a taken caller waiting for the
    agent's conference) to a URL of ours."""

    def move(self, call_sid: str, url: str) -> None:
        """Have `call_sid` request `url` (POST) now; QueueUnavailable when it cannot."""


def switch(settings: Settings) -> TwilioQueues | LocalQueues:
    """Twilio's queues, or the local board beside the outbox."""
    if settings.delivery == "outbox":
        return LocalQueues(board_path(settings.outbox_path))
    return TwilioQueues(make_client(settings, timeout=DEFAULT_TIMEOUT))


def get() -> QueueSwitch:
    """The current app's queue switch (built on first use, then kept: it caches SIDs)."""
    return _kept()


def mover() -> CallMover:
    """The same object, for moving a call out of a conference's wait."""
    return _kept()


def _kept() -> TwilioQueues | LocalQueues:
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    found: TwilioQueues | LocalQueues | None = app.extensions.get(EXTENSION_KEY)
    if found is None:
        found = switch(app.config["IVR_SETTINGS"])
        app.extensions[EXTENSION_KEY] = found
    return found
