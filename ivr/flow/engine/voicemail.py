"""The `voicemail` node's handlers: ask for a message and record it (`Record`), then
end the call once the recording is in.

The recording itself never reaches the engine: the `<Record>` webhooks store it (see
`ivr.voicemail`). The engine learns only how long it is (0: nothing was said, which
is also what a replayed `<Redirect>` after an empty recording says) and notes that on
the call's timeline (VOICEMAIL: node, result, seconds).
"""

from __future__ import annotations

from ivr.flow.engine.context import EngineContext, Turn
from ivr.flow.instructions import Hangup, Record
from ivr.flow.model import VoicemailNode
from ivr.flow.timeline import HANGUP, VOICEMAIL

RECORDED = "recorded"
EMPTY = "empty"


def _record(node: VoicemailNode, step: int) -> Record:
    return Record(
        step=step,
        max_length=node.max_length,
        finish_on_key=node.finish_on_key,
        timeout=node.timeout,
    )


def enter_voicemail(engine: EngineContext, turn: Turn, node: VoicemailNode) -> None:
    """Say the prompt and record; the turn waits for the recording (a Recorded event)."""
    turn.instructions.append(engine.say(turn, node.prompt))
    turn.state.step += 1
    turn.instructions.append(_record(node, turn.state.step))
    return None


def recording_result(seconds: int, max_length: int) -> tuple[str, int]:
    """(result, seconds) of a message as the timeline notes it: what Twilio says it lasted,
    bounded by the node's maximum (Twilio rounds; never trust more). Also used for a
    message whose action came after the call ended (`ivr.voicemail.late`)."""
    seconds = max(0, min(int(seconds), max_length + 5))
    return (RECORDED if seconds > 0 else EMPTY), seconds


def after_recording(engine: EngineContext, turn: Turn, node: VoicemailNode, seconds: int) -> None:
    """The recording is in (or nothing was said): thank the caller and end the call."""
    result, seconds = recording_result(seconds, node.max_length)
    engine.note(turn, VOICEMAIL, node=node.id, result=result, seconds=seconds)
    prompt = node.done_prompt if result == RECORDED else (node.empty_prompt or node.done_prompt)
    turn.instructions.append(engine.say(turn, prompt))
    turn.state.ended = True
    engine.note(turn, HANGUP, node=node.id)
    turn.instructions.append(Hangup())
    return None


def replay_voicemail(engine: EngineContext, turn: Turn, node: VoicemailNode) -> None:
    """Ask again for the recording the call is waiting on (a replayed webhook)."""
    turn.instructions.append(engine.say(turn, node.prompt))
    turn.instructions.append(_record(node, turn.state.step))
