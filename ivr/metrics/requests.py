"""The request hooks: how long each request took, by endpoint, and whose call it was.

Every request is timed, labelled by its Flask endpoint (`voice.input`, `ops.flows`;
`unmatched` for a URL no route serves), so the webhooks' latency sits beside the
console's. The time runs from the app's first `before_request` to `teardown_request`,
which runs after errors too (a 500 is timed like any answer).

A request that carries a CallSid form field (Twilio's webhooks and status callbacks)
tags the log lines logged while handling it (`ivr.metrics.logs`) once it has passed
Twilio's signature check: the voice blueprints' `require_twilio_signature` sets
`g.ivr_twilio_verified` when the signature and AccountSid are ours. The CallSid is
bound here, first of the app's hooks, but each line asks that flag: the lines of an
unsigned request (its refusal among them) carry no CallSid, whatever it sent.
"""

from __future__ import annotations

import contextlib
import time

from flask import Flask, g, has_app_context, request

from ivr.metrics import logs, registry

_START = "ivr_metrics_started"
_CALL_SID_TOKEN = "ivr_metrics_call_sid"
VERIFIED = "ivr_twilio_verified"  # set on `g` by ivr.voice.signature once a request passed
FORM = "application/x-www-form-urlencoded"  # how Twilio posts its webhooks


def init_app(app: Flask) -> None:
    """Time every request and bind its CallSid for logging (first of the app's hooks)."""
    app.before_request_funcs.setdefault(None, []).insert(0, _started)
    app.teardown_request(_finished)


def _started() -> None:
    setattr(g, _START, time.perf_counter())
    # Only a form post is read: the body of anything else (JSON, an upload) is left alone.
    if request.mimetype == FORM:
        token = logs.bind_call_sid(request.form.get("CallSid"), trusted=_verified)
        setattr(g, _CALL_SID_TOKEN, token)


def _verified() -> bool:
    """Whether the request being handled passed Twilio's signature check."""
    return has_app_context() and bool(g.get(VERIFIED, False))


def _finished(_exc: BaseException | None) -> None:
    started = g.pop(_START, None)
    token = g.pop(_CALL_SID_TOKEN, None)
    if token is not None:
        # ValueError: bound in another context (cannot happen within one request).
        with contextlib.suppress(ValueError):
            logs.unbind_call_sid(token)
    if started is None or not registry.recording():
        return
    endpoint = request.endpoint or "unmatched"
    registry.REQUEST_SECONDS.labels(endpoint=registry.word(endpoint)).observe(
        time.perf_counter() - started
    )
