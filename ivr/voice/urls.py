"""Absolute public URLs of our webhooks, as Twilio must request them.

Twilio signs what it requests against `IVR_PUBLIC_URL`, and a URL given to
`calls.create` is requested later, outside any request of ours: so these are built
from the configured public base, never from the incoming request's host.
"""

from __future__ import annotations

from flask import url_for

from ivr.calls import runtime


def callback_urls(callback_id: str) -> tuple[str, str]:
    """The answer and status URLs of a call-back (they carry only its opaque id)."""
    base = runtime.get().settings.public_url
    return (
        base + url_for("callback.answer", o=callback_id),
        base + url_for("callback.status", o=callback_id),
    )
