"""What the engine asks the telephony layer to do, as plain data.

The engine knows nothing of TwiML or URLs; `ivr.voice.twiml` turns these into a
Twilio document. `step` numbers tie a later webhook to the turn that asked for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ivr.flow.model import TransferTarget


@dataclass(frozen=True)
class Say:
    text: str
    language: str
    voice: str | None


@dataclass(frozen=True)
class Pause:
    seconds: int


@dataclass(frozen=True)
class Gather:
    """Play `prompts` while listening for keys.

    With `retry_on_silence`, no input comes back to the same action (as an empty
    input); without it, the instructions after the Gather run instead.
    """

    prompts: tuple[Say | Pause, ...]
    step: int
    timeout: int
    num_digits: int | None
    finish_on_key: str
    retry_on_silence: bool = True
    # Speech alongside keys (`input="dtmf speech"`): the phrases Twilio should expect
    # (its `hints`, comma-separated) in `speech_language`; None: keys only.
    speech_hints: str | None = None
    speech_language: str | None = None


@dataclass(frozen=True)
class Transfer:
    """Connect the caller to people; the outcome comes back as a DialResult event.

    `task_attributes` is the JSON given to TaskRouter with a workflow target (the
    views add it: the engine knows nothing of TaskRouter); other kinds ignore it.
    """

    target: TransferTarget
    step: int
    ring_seconds: int = 25
    task_attributes: str | None = None
    context: str | None = None  # the signed agent context (a SIP leg sends it as a header)
    # A TaskRouter Task's priority (a call-back joins ahead of new callers); None: default.
    priority: int | None = None


@dataclass(frozen=True)
class Play:
    """Play an audio file (hold music)."""

    url: str


@dataclass(frozen=True)
class Leave:
    """Take a holding caller out of the queue; the transfer then ends unanswered."""


@dataclass(frozen=True)
class Record:
    """Record a message (voicemail); the result comes back as a Recorded event.

    `step` ties the recording's action to the turn that asked for it; `max_length`
    (seconds) and `finish_on_key` are Twilio's `maxLength` and `finishOnKey`.
    """

    step: int
    max_length: int = 120
    finish_on_key: str = "#"
    timeout: int = 5  # seconds of silence that end the recording


@dataclass(frozen=True)
class Hangup:
    pass


Instruction = Say | Pause | Play | Gather | Transfer | Record | Leave | Hangup
