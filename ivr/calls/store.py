"""Keeps each call's state in Redis under its CallSid, with a TTL: one GET, one SET."""

from __future__ import annotations

from flask import current_app

from ivr.flow.state import CallState
from ivr.storage import keys, kv


def load(call_sid: str) -> CallState | None:
    """The stored state of a call, or None when there is none."""
    with kv.unavailable_as_storage_error():
        raw = kv.client().get(keys.call_state(call_sid))
    return CallState.from_json(raw) if raw else None


def save(state: CallState) -> None:
    """Store the state; it expires on its own after IVR_CALL_STATE_TTL."""
    ttl = current_app.config["IVR_SETTINGS"].call_state_ttl
    with kv.unavailable_as_storage_error():
        kv.client().set(keys.call_state(state.call_sid), state.to_json(), ex=ttl)


def delete(call_sid: str) -> None:
    """Forget a finished call."""
    with kv.unavailable_as_storage_error():
        kv.client().delete(keys.call_state(call_sid))
