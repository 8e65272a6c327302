"""The `schedule` node's handler: open, closed, holiday or emergency, by the line's
clock (issue 15; filled in by the hours work)."""

from __future__ import annotations

from ivr.flow.engine.context import EngineContext, Turn
from ivr.flow.model import ScheduleNode


def enter_schedule(engine: EngineContext, turn: Turn, node: ScheduleNode) -> str:
    if engine.line_status is not None and engine.line_status.emergency() is not None:
        return "emergency"
    return "open"
