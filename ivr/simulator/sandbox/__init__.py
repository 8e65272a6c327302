"""The call simulator's sandbox: a private copy of the service that plays one call
script through the real engine and reports what it has heard so far.

Web processes keep no state between requests, so a call in the browser is REPLAYED:
the page holds a `Script` (the caller, the language, a seed and every answer given so
far) and each request plays it again from the first ring, with the real `Simulator`,
until the call needs an answer the script does not have yet. What it reports is a
`Replay`: the transcript, what is being asked now, the codes "sent" and the node the
call is at.

The sandbox is an app of its own (`create_app` on development settings): a SQLite
file in a temporary folder seeded with the demo customers, its own in-process Redis
stand-in, the local outbox (nothing is ever sent: no Twilio, no SMTP), jobs run as
each webhook ends, and the chosen flow version served as live. Building it is what
costs, so there is one per process and settings; its storage is emptied before every
replay, under a lock (one replay at a time per sandbox, waited for a few seconds at
most). It boots from flow files of its own, never the service's working files.

Replays must agree with each other: the caller's CallSid and every one-time code come
from an HMAC of the script's seed (`ivr.verification.codes.codes_from`), so a code the
tester read in the outbox is still the right one when the next replay keys it in.
"""

from ivr.simulator.sandbox.play import Replay, SeededCodes, Sent, Turn
from ivr.simulator.sandbox.script import (
    KEYS,
    MAX_ANSWERS,
    MAX_KEYS,
    MAX_SCRIPT_CHARS,
    Answer,
    Script,
    ScriptError,
    callers,
)
from ivr.simulator.sandbox.service import (
    ReplayTooLong,
    Sandbox,
    SandboxBusy,
    SandboxFailed,
    sandbox_for,
)

__all__ = [
    "KEYS",
    "MAX_ANSWERS",
    "MAX_KEYS",
    "MAX_SCRIPT_CHARS",
    "Answer",
    "Replay",
    "ReplayTooLong",
    "Sandbox",
    "SandboxBusy",
    "SandboxFailed",
    "Script",
    "ScriptError",
    "SeededCodes",
    "Sent",
    "Turn",
    "callers",
    "sandbox_for",
]
