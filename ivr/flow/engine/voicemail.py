"""The `voicemail` node's handlers: ask for a message and record it (`Record`), then
end the call once the recording is in (issue 15; filled in by the voicemail work)."""

from __future__ import annotations

from ivr.flow.engine.context import EngineContext, Turn
from ivr.flow.instructions import Hangup, Record
from ivr.flow.model import VoicemailNode


def enter_voicemail(engine: EngineContext, turn: Turn, node: VoicemailNode) -> None:
    """Say the prompt and record; the turn waits for the recording (a Recorded event)."""
    turn.instructions.append(engine.say(turn, node.prompt))
    turn.state.step += 1
    turn.instructions.append(Record(step=turn.state.step))
    return None


def after_recording(engine: EngineContext, turn: Turn, node: VoicemailNode, seconds: int) -> None:
    """The recording is in (or nothing was said): end the call."""
    turn.state.ended = True
    turn.instructions.append(Hangup())
    return None


def replay_voicemail(engine: EngineContext, turn: Turn, node: VoicemailNode) -> None:
    """Ask again for the recording the call is waiting on."""
    turn.instructions.append(Record(step=turn.state.step))
