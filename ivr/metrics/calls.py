"""Counting calls from their timeline steps: what the engine recorded is what is counted.

The voice views hand each webhook's new steps to `observe_steps`; the code that closes
a call hands its outcome and status to `observe_call_ended`. Counting from the steps
(not from separate calls sprinkled through the engine) keeps the metrics and the call
timelines in agreement, and keeps `ivr.flow` free of any metrics import.

What a step counts (`ivr_verifications_total` is "verifications" below):

- START: `ivr_calls_started_total`;
- VERIFIED(method): verifications{method, outcome="passed"};
- CODE_CHECKED(result other than ok): verifications{method="code", outcome=result};
- INPUT(result invalid or too_many_tries) on a `check_account_digits` node, when the
  flow's nodes are given: verifications{method="account_digits", outcome="wrong" or
  "too_many_tries"};
- CODE_SENT(channel, result): `ivr_codes_sent_total{channel, result}`;
- CALLBACK(result), CALLBACK_STATUS(status), CALLBACK_CODE(result):
  `ivr_callbacks_total{stage="start" | "status" | "code", outcome}`.

A passed code check shows as its VERIFIED step (method `code_sms`, `code_email`, …),
so CODE_CHECKED(ok) is not counted twice. Every label value goes through
`registry.word`: never a digit string.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ivr.flow import timeline
from ivr.flow.model import CheckAccountDigitsNode
from ivr.metrics import registry

_DIGITS_FAILURES = {
    timeline.INVALID: "wrong",
    timeline.TOO_MANY_TRIES: "too_many_tries",
    timeline.LOCKED: "locked",
}


def observe_steps(
    steps: Sequence[Mapping[str, Any]], nodes: Mapping[str, object] | None = None
) -> None:
    """Count what these steps (one webhook's new steps) say happened.

    `nodes` (the call's flow's `nodes`) lets failed account-digit entries count as
    failed verifications; without it they are not counted.
    """
    if not steps or not registry.recording():
        return
    for item in steps:
        event = item.get("event")
        if event == timeline.START:
            registry.CALLS_STARTED.inc()
        elif event == timeline.VERIFIED:
            _verification(item.get("method"), "passed")
        elif event == timeline.CODE_CHECKED:
            if item.get("result") != "ok":
                _verification("code", item.get("result"))
        elif event == timeline.INPUT:
            failure = _DIGITS_FAILURES.get(str(item.get("result")))
            node = nodes.get(str(item.get("node"))) if nodes and failure else None
            if isinstance(node, CheckAccountDigitsNode):
                _verification("account_digits", failure)
        elif event == timeline.CODE_SENT:
            registry.CODES_SENT.labels(
                channel=registry.word(item.get("channel")),
                result=registry.word(item.get("result")),
            ).inc()
        elif event == timeline.CALLBACK:
            _callback("start", item.get("result"))
        elif event == timeline.CALLBACK_STATUS:
            _callback("status", item.get("status"))
        elif event == timeline.CALLBACK_CODE:
            _callback("code", item.get("result"))


def observe_call_ended(outcome: str, status: str) -> None:
    """Count a call that ended: its outcome (transferred | ended | abandoned) and
    Twilio's final CallStatus ("unknown" when a sweeper closed it)."""
    if not registry.recording():
        return
    registry.CALLS_ENDED.labels(
        outcome=registry.word(outcome, registry.OUTCOMES),
        status=registry.word(status, registry.CALL_STATUSES),
    ).inc()


def _verification(method: object, outcome: object) -> None:
    registry.VERIFICATIONS.labels(
        method=registry.word(method), outcome=registry.word(outcome)
    ).inc()


def _callback(stage: str, outcome: object) -> None:
    registry.CALLBACKS.labels(stage=stage, outcome=registry.word(outcome)).inc()
