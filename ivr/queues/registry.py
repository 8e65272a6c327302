"""Which QueueSwitch the app uses, chosen at boot by the setting that chooses Twilio or the
local outbox for delivery (IVR_DELIVERY): local queues go with the local outbox."""

from __future__ import annotations

from flask import Flask, current_app

from ivr.config import Settings
from ivr.delivery.twilio_client import DEFAULT_TIMEOUT, make_client
from ivr.queues import QueueSwitch
from ivr.queues.local import LocalQueues, board_path
from ivr.queues.twilio import TwilioQueues

EXTENSION_KEY = "ivr.queues"


def switch(settings: Settings) -> QueueSwitch:
    """Twilio's queues, or the local board beside the outbox."""
    if settings.delivery == "outbox":
        return LocalQueues(board_path(settings.outbox_path))
    return TwilioQueues(make_client(settings, timeout=DEFAULT_TIMEOUT))


def get() -> QueueSwitch:
    """The current app's queue switch (built on first use, then kept: it caches SIDs)."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    found: QueueSwitch | None = app.extensions.get(EXTENSION_KEY)
    if found is None:
        found = switch(app.config["IVR_SETTINGS"])
        app.extensions[EXTENSION_KEY] = found
    return found
