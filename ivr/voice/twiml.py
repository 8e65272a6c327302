"""Renders engine instructions to TwiML with twilio's VoiceResponse; the only place that does.

Every `<Gather>` is followed by a `<Redirect>` to the same action: Twilio does not
call the action when the caller presses nothing, it runs the next verb instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from twilio.twiml.voice_response import Dial, VoiceResponse

from ivr.flow.instructions import Gather, Hangup, Instruction, Pause, Say, Transfer


@dataclass(frozen=True)
class Links:
    """URLs of the webhooks a document points back to (built by the views)."""

    input: Callable[[int], str]
    dial: Callable[[int], str]
    whisper: Callable[[int], str] | None  # None: no whisper (nothing to say without state)


def render(instructions: Sequence[Instruction], links: Links) -> str:
    """One TwiML document for the instructions of a turn."""
    response = VoiceResponse()
    for instruction in instructions:
        if isinstance(instruction, Say):
            _say(response, instruction)
        elif isinstance(instruction, Pause):
            response.pause(length=instruction.seconds)
        elif isinstance(instruction, Gather):
            _gather(response, instruction, links)
        elif isinstance(instruction, Transfer):
            _transfer(response, instruction, links)
        elif isinstance(instruction, Hangup):
            response.hangup()
    return str(response)


def _say(parent: VoiceResponse, say: Say) -> None:
    parent.say(say.text, voice=say.voice, language=say.language)


def _gather(response: VoiceResponse, gather: Gather, links: Links) -> None:
    action = links.input(gather.step)
    element = response.gather(
        input="dtmf",
        action=action,
        method="POST",
        timeout=gather.timeout,
        num_digits=gather.num_digits,
        finish_on_key=gather.finish_on_key,
    )
    for prompt in gather.prompts:
        if isinstance(prompt, Say):
            _say(element, prompt)
        else:
            element.pause(length=prompt.seconds)
    if gather.retry_on_silence:
        response.redirect(action, method="POST")


def _transfer(response: VoiceResponse, transfer: Transfer, links: Links) -> None:
    target = transfer.target
    if target.kind == "queue":
        response.enqueue(target.address, action=links.dial(transfer.step), method="POST")
        return
    dial = Dial(action=links.dial(transfer.step), method="POST", timeout=transfer.ring_seconds)
    leg = {"url": links.whisper(transfer.step), "method": "POST"} if links.whisper else {}
    if target.kind == "number":
        dial.number(target.address, **leg)
    elif target.kind == "sip":
        dial.sip(target.address, **leg)
    elif target.kind == "client":
        dial.client(**leg).identity(target.address)
    response.append(dial)


def document(*instructions: Instruction) -> str:
    """A fixed answer that points back at no webhook (acknowledgements, hang-ups)."""
    return render(instructions, _NO_LINKS)


_NO_LINKS = Links(input=lambda _step: "", dial=lambda _step: "", whisper=None)
