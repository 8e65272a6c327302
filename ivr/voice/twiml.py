"""Renders engine instructions to TwiML with twilio's VoiceResponse; the only place that does.

Every `<Gather>` is followed by a `<Redirect>` to the same action: Twilio does not
call the action when the caller presses nothing, it runs the next verb instead.
Transfers become a `<Dial>` (one or several numbers ringing at once, a SIP URI, a
Client identity; each leg with the whisper URL) or an `<Enqueue>` (a named queue,
or a TaskRouter workflow with its `<Task>` attributes), both with an action that
reports how the transfer ended.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from twilio.twiml.voice_response import Dial, VoiceResponse

from ivr.flow.instructions import (
    Gather,
    Hangup,
    Instruction,
    Leave,
    Pause,
    Play,
    Record,
    Say,
    Transfer,
)

# TaskRouter refuses Task attributes longer than this (JSON, in characters).
TASK_ATTRIBUTES_LIMIT = 1024


@dataclass(frozen=True)
class Links:
    """URLs of the webhooks a document points back to (built by the views)."""

    input: Callable[[int], str]
    dial: Callable[[int], str]
    whisper: Callable[[int], str] | None  # None: no whisper (nothing to say without state)
    wait: Callable[[int], str] | None = None  # None: Twilio's own hold music, no maximum wait
    # A recording's action and its recordingStatusCallback (None: no Record in this document).
    recorded: Callable[[int], str] | None = None
    recording_status: Callable[[int], str] | None = None


def task_attributes(
    attributes: Mapping[str, object], required: Sequence[str] = ("call_sid",)
) -> str:
    """Compact JSON of `attributes` within TASK_ATTRIBUTES_LIMIT characters.

    Keys come in order of importance. The `required` ones are always kept; each
    optional one is kept if it still fits after the ones before it, else dropped
    whole (a value is never cut, so the result is always valid JSON). ValueError
    when the required keys alone do not fit. Non-ASCII is escaped, so characters
    and bytes agree.
    """
    kept = [key for key in attributes if key in required]
    if len(_compact_json(attributes, kept)) > TASK_ATTRIBUTES_LIMIT:
        raise ValueError(
            f"Task attributes pass {TASK_ATTRIBUTES_LIMIT} characters with only the"
            f" required keys ({', '.join(kept)})"
        )
    for key in attributes:
        if key not in kept and (
            len(_compact_json(attributes, [*kept, key])) <= TASK_ATTRIBUTES_LIMIT
        ):
            kept.append(key)
    return _compact_json(attributes, kept)


def _compact_json(attributes: Mapping[str, object], keys: Sequence[str]) -> str:
    """The `keys` of `attributes`, in the order of `attributes`, as compact ASCII JSON."""
    chosen = {key: value for key, value in attributes.items() if key in keys}
    return json.dumps(chosen, separators=(",", ":"), ensure_ascii=True)


def render(instructions: Sequence[Instruction], links: Links) -> str:
    """One TwiML document for the instructions of a turn."""
    response = VoiceResponse()
    for instruction in instructions:
        if isinstance(instruction, Say):
            _say(response, instruction)
        elif isinstance(instruction, Pause):
            response.pause(length=instruction.seconds)
        elif isinstance(instruction, Play):
            response.play(instruction.url)
        elif isinstance(instruction, Gather):
            _gather(response, instruction, links)
        elif isinstance(instruction, Transfer):
            _transfer(response, instruction, links)
        elif isinstance(instruction, Record):
            _record(response, instruction, links)
        elif isinstance(instruction, Leave):
            response.leave()
        elif isinstance(instruction, Hangup):
            response.hangup()
    return str(response)


def _say(parent: VoiceResponse, say: Say) -> None:
    parent.say(say.text, voice=say.voice, language=say.language)


def _gather(response: VoiceResponse, gather: Gather, links: Links) -> None:
    action = links.input(gather.step)
    speech: dict[str, object] = {}
    if gather.speech_hints is not None:
        speech = {"hints": gather.speech_hints or None, "language": gather.speech_language}
    element = response.gather(
        input="dtmf speech" if speech else "dtmf",
        action=action,
        method="POST",
        timeout=gather.timeout,
        num_digits=gather.num_digits,
        finish_on_key=gather.finish_on_key,
        **speech,
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
    if not target.rings_a_person:
        _enqueue(response, transfer, links)
        return
    dial = Dial(action=links.dial(transfer.step), method="POST", timeout=transfer.ring_seconds)
    # Every leg gets the whisper: with several numbers, whoever answers first hears it.
    leg = {"url": links.whisper(transfer.step), "method": "POST"} if links.whisper else {}
    if target.kind == "number":
        for number in target.numbers:
            dial.number(number, **leg)
    elif target.kind == "sip":
        dial.sip(_with_context_header(target.address, transfer.context), **leg)
    elif target.kind == "client":
        dial.client(**leg).identity(target.address)
    else:
        raise ValueError(f"no way to dial a {target.kind} target")
    response.append(dial)


def _with_context_header(uri: str, context: str | None) -> str:
    """Twilio sends query parameters of a SIP URI that start with X- as SIP headers;
    the token is URL-safe (itsdangerous), so it needs no escaping."""
    if not context:
        return uri
    return f"{uri}{'&' if '?' in uri else '?'}X-IVR-Context={context}"


def _enqueue(response: VoiceResponse, transfer: Transfer, links: Links) -> None:
    """A queue or TaskRouter workflow with our waitUrl (hold prompt, position and wait,
    music, maximum wait) for every holding target; Twilio's own hold music only where
    no wait link is given (the fallback, which has no call state to hold with)."""
    target = transfer.target
    options: dict[str, str] = {"action": links.dial(transfer.step), "method": "POST"}
    if links.wait is not None:
        options.update(wait_url=links.wait(transfer.step), wait_url_method="POST")
    if target.kind == "queue":
        response.enqueue(target.address, **options)
        return
    enqueue = response.enqueue(None, workflow_sid=target.address, **options)
    if transfer.task_attributes is not None:
        if len(transfer.task_attributes) > TASK_ATTRIBUTES_LIMIT:
            raise ValueError("Task attributes over the limit; build them with task_attributes()")
        if transfer.priority is not None:
            enqueue.task(transfer.task_attributes, priority=transfer.priority)
        else:
            enqueue.task(transfer.task_attributes)


def wait_document(
    instructions: Sequence[Instruction], again: str | None, gather_action: str | None = None
) -> str:
    """A waitUrl answer: hold verbs only (a `<Dial>` never runs inside a queue), then a
    `<Redirect>` to `again`, the waitUrl carrying the hold's own state (None: no
    redirect, e.g. after `<Leave/>`). Twilio allows `<Redirect>` in a waitUrl document;
    the caller stays in the queue while it is followed. A `<Gather>` (the call-back
    offer) posts its keys to `gather_action`; without a key the document goes on."""
    response = VoiceResponse()
    for instruction in instructions:
        if isinstance(instruction, Gather):
            if gather_action is None:
                raise ValueError("a Gather inside a queue needs its action")
            element = response.gather(
                input="dtmf",
                action=gather_action,
                method="POST",
                timeout=instruction.timeout,
                num_digits=instruction.num_digits,
                finish_on_key=instruction.finish_on_key,
            )
            for prompt in instruction.prompts:
                if isinstance(prompt, Say):
                    _say(element, prompt)
                else:
                    element.pause(length=prompt.seconds)
        elif isinstance(instruction, Say):
            _say(response, instruction)
        elif isinstance(instruction, Play):
            response.play(instruction.url)
        elif isinstance(instruction, Pause):
            response.pause(length=instruction.seconds)
        elif isinstance(instruction, Leave):
            response.leave()
        else:
            raise ValueError(f"{type(instruction).__name__} cannot run inside a queue")
    if again is not None:
        response.redirect(again, method="POST")
    return str(response)


def _record(response: VoiceResponse, record: Record, links: Links) -> None:
    """A voicemail: Twilio posts the action when the recording ends (RecordingSid,
    RecordingUrl, RecordingDuration) and the status callback once it is stored."""
    if links.recorded is None:
        raise ValueError("a Record needs the recording links")
    options: dict[str, object] = {}
    if links.recording_status is not None:
        options.update(
            recording_status_callback=links.recording_status(record.step),
            recording_status_callback_method="POST",
            recording_status_callback_event="completed",
        )
    response.record(
        action=links.recorded(record.step),
        method="POST",
        max_length=record.max_length,
        finish_on_key=record.finish_on_key,
        timeout=record.timeout,
        play_beep=True,
        **options,
    )
    # An empty recording (the caller said nothing): Twilio does not call the action, it
    # runs the next verb; this one posts it without a RecordingSid (nothing recorded).
    response.redirect(links.recorded(record.step), method="POST")


def bridge_reservation(reservation_sid: str) -> str:
    """A TaskRouter worker's leg joins the caller its reservation is for: `<Dial><Queue
    reservationSid>` bridges exactly that task's call and accepts the reservation."""
    response = VoiceResponse()
    dial = Dial()
    dial.queue(None, reservation_sid=reservation_sid)
    response.append(dial)
    return str(response)


def redirect_document(url: str) -> str:
    """Go on at `url` (an absolute URL of ours), e.g. a taken caller's conference join."""
    response = VoiceResponse()
    response.redirect(url, method="POST")
    return str(response)


def document(*instructions: Instruction) -> str:
    """A fixed answer that points back at no webhook (acknowledgements, hang-ups)."""
    return render(instructions, _NO_LINKS)


_NO_LINKS = Links(input=lambda _step: "", dial=lambda _step: "", whisper=None)
