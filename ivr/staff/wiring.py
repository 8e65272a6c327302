"""The app's staff sign-in objects, built from its settings, Redis client and clock.

The clock is `time.time` unless a test puts another in `app.extensions[CLOCK]`, so
idle and absolute limits and throttling delays are tested without waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from flask import current_app

from ivr.config import Settings
from ivr.staff.sessions import SessionStore
from ivr.staff.throttle import LoginThrottle
from ivr.storage import kv

CLOCK = "ivr.staff.clock"


def clock() -> Callable[[], float]:
    """The clock of staff sign-in in this app."""
    found: Callable[[], float] = current_app.extensions.get(CLOCK, time.time)
    return found


def settings() -> Settings:
    """The app's settings."""
    found: Settings = current_app.config["IVR_SETTINGS"]
    return found


def session_store() -> SessionStore:
    """The staff session store with the app's limits."""
    config = settings()
    return SessionStore(
        kv.client(),
        idle=config.staff_session_idle,
        max_age=config.staff_session_max,
        clock=clock(),
    )


def login_throttle() -> LoginThrottle:
    """The login throttle on the app's Redis."""
    return LoginThrottle(kv.client(), clock())
