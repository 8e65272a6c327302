"""The `voicemail` node: the caller leaves a message (`<Record>`), stored for agents.

The node is terminal: after the message (or the silence that leaves none) the caller
hears `done_prompt` (or `empty_prompt`) and the call ends, so it has no exits. The
message itself is not the engine's business: the `<Record>` webhooks store it
(`ivr.voicemail`), and the call's timeline notes only that one was left and how long.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ivr.flow.model.base import Node, bounded, prompt_ref

# Keys that may end a recording (Twilio's finishOnKey takes any of them; we allow one).
FINISH_KEYS = frozenset("0123456789*#")
MIN_LENGTH, MAX_LENGTH = 5, 600  # seconds a message may last: Twilio allows up to 4 h


@dataclass(frozen=True, kw_only=True)
class VoicemailNode(Node):
    prompt: str = prompt_ref()  # said before the beep: what to say, how to end
    max_length: int = bounded(MIN_LENGTH, MAX_LENGTH, 120)  # seconds, then the message ends
    finish_on_key: str = field(
        default="#",
        metadata={
            "choices": FINISH_KEYS,
            # YAML reads an unquoted # as the start of a comment (the value is then null).
            "text_hint": 'must be one keypad key in quotes, e.g. "#" (an unquoted # is a comment)',
        },
    )
    timeout: int = bounded(1, 60, 5)  # seconds of silence that end the message
    done_prompt: str = prompt_ref()  # said after the message: thanks, goodbye
    empty_prompt: str | None = prompt_ref(default=None)  # nothing was recorded (default: done)

    def problems(self, languages: Sequence[str]) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        if self.timeout >= self.max_length:
            found.append(
                (
                    "timeout",
                    f"the silence that ends the message ({self.timeout} s) must be shorter "
                    f"than max_length ({self.max_length} s)",
                )
            )
        if self.empty_prompt is not None and self.empty_prompt == self.prompt:
            found.append(("empty_prompt", "must differ from prompt: the call ends after it"))
        return found
