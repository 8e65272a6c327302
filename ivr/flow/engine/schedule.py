"""The `schedule` node's handler: emergency, holiday, open or closed, by the engine's
clock read in the node's time zone.

An emergency closure ops switched on (`engine.line_status`) wins over everything, and
its message is spoken before the `emergency` exit; a holiday beats the weekly hours.
The decision reaches the call's timeline as the exit taken (the turn loop notes it),
so the funnel counts calls by how the line was when they came in.
"""

from __future__ import annotations

import logging
from datetime import datetime

from ivr.flow.engine.context import EngineContext, Turn
from ivr.flow.model import ScheduleNode

log = logging.getLogger(__name__)

OPEN, CLOSED, HOLIDAY, EMERGENCY = "open", "closed", "holiday", "emergency"


def enter_schedule(engine: EngineContext, turn: Turn, node: ScheduleNode) -> str:
    message = engine.line_status.emergency() if engine.line_status is not None else None
    if message is not None:
        _speak_closure(engine, turn, node, message)
        return EMERGENCY
    return by_the_clock(node, (engine.line_clock or engine.clock)())


def by_the_clock(node: ScheduleNode, epoch: float) -> str:
    """open, closed or holiday at `epoch` (seconds) on the node's local clock."""
    local = datetime.fromtimestamp(epoch, node.zone())
    if node.is_holiday(local.date()):
        return HOLIDAY
    minute = local.hour * 60 + local.minute
    for start, end in node.ranges(local.weekday()):
        if start <= minute < end:
            return OPEN
    return CLOSED


def _speak_closure(engine: EngineContext, turn: Turn, node: ScheduleNode, key: str) -> None:
    """The closure's message in the call's language; the node's own emergency_prompt
    when this version's prompts lack it (checked at close time against the live version,
    but a publish since may have removed it); nothing, logged, when there is neither."""
    texts = engine.catalog.languages[turn.state.language].texts
    if key in texts:
        turn.instructions.append(engine.say(turn, key))
        return
    log.warning(
        "call %s: the emergency closure's message %r is not among the prompts of version %s",
        turn.state.call_sid,
        key,
        turn.state.version,
    )
    if node.emergency_prompt:
        turn.instructions.append(engine.say(turn, node.emergency_prompt))
