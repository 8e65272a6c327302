"""Stored calls for the call-history tests: a call of a known shape written with the
history's own `build` + `write`, as the job worker writes a call that ended."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from kit import new_sid
from sqlalchemy.orm import Session

from ivr.flow import timeline
from ivr.flow.state import CallState
from ivr.history import record

SECRET = "history-kit-secret"  # keys the caller's hash (`timeline.caller_key`) here


def path_steps(
    nodes: Sequence[tuple[str, str | None]], *, flow: str = "support", version: str = "v1"
) -> list[dict[str, Any]]:
    """The steps of a walk: (node, exit taken or None for the node the call stopped at)."""
    steps = [timeline.step(timeline.START, 0, flow=flow, version=version, language="en-US")]
    at = 0
    for index, (node, exit_label) in enumerate(nodes):
        at += 1000
        steps.append(timeline.step(timeline.ENTER, at, node=node, type="say"))
        if exit_label is not None:
            following = nodes[index + 1][0] if index + 1 < len(nodes) else None
            steps.append(
                timeline.step(timeline.EXIT, at + 500, node=node, exit=exit_label, to=following)
            )
    return steps


def store_call(
    session: Session,
    steps: list[dict[str, Any]],
    *,
    started: float | None = None,
    seconds: int = 30,
    status: str = "completed",
    flow: str = "support",
    version: str = "v1",
    verification: str = "none",
    methods: Sequence[str] = (),
    transfer_reason: str | None = None,
    caller: str | None = "+14155550100",
    call_sid: str | None = None,
) -> str:
    """Write a call that started at `started` (epoch; now minus a minute by default)."""
    sid = call_sid or new_sid()
    begun = time.time() - 60 if started is None else started
    state = CallState(
        call_sid=sid,
        flow=flow,
        version=version,
        language="en-US",
        node=steps[-1].get("node", "welcome") if steps else "welcome",
        started_at=begun,
        caller=caller,
        identity="one_account",
        verification=verification,
        methods=[(method, begun + 5) for method in methods],
        transfer_reason=transfer_reason,
    )
    known = timeline.summary_of(state, SECRET)
    built = record.build(sid, status, seconds, known, steps, begun + seconds)
    assert record.write(session, built)
    return sid
