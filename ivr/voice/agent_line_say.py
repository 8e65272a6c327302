"""What the agent line says to the agent: its prompts (from the live catalog, with a
fallback for a key an older published catalog lacks) and its short answers."""

from __future__ import annotations

from flask import Response
from twilio.twiml.voice_response import Gather, VoiceResponse

from ivr.calls import runtime
from ivr.flow.instructions import Say

# Said when a prompt key is missing from an older published catalog.
FALLBACK = {
    "agent_line_refused": "This line is for staff only. Goodbye.",
    "agent_line_pin": "Agent line. Enter your PIN, then press pound.",
    "agent_line_pin_wrong": "That PIN is not right.",
    "agent_line_locked": "Too many wrong PINs. Please try again later. Goodbye.",
    "agent_line_choose": "Press 1 to take this call, or 2 for the next caller.",
    "agent_line_empty": "No callers are waiting. Press 1 to check again, or hang up.",
    "agent_line_gone": "That caller is no longer waiting.",
    "agent_line_connecting": "Connecting you to the caller.",
    "agent_line_unavailable": "The queue cannot be reached right now. Goodbye.",
    "agent_line_ready": "Agent line. Press 1 to start taking calls.",
}


def answer(response: VoiceResponse) -> Response:
    return Response(str(response), mimetype="text/xml")


def say(response: VoiceResponse | Gather, key: str) -> None:
    """One agent-line prompt, in the live flow's default language."""
    rt = runtime.get()
    language = rt.flow.default_language
    texts = rt.catalog.languages[language].texts
    response.say(
        texts.get(key) or FALLBACK[key], voice=rt.catalog.voice(language), language=language
    )


def said(response: VoiceResponse | Gather, says: list[Say]) -> None:
    for each in says:
        response.say(each.text, voice=each.voice, language=each.language)


def refuse(key: str = "agent_line_refused") -> Response:
    """A prompt, then hang up."""
    response = VoiceResponse()
    say(response, key)
    response.hangup()
    return answer(response)


def hangup() -> Response:
    response = VoiceResponse()
    response.hangup()
    return answer(response)
