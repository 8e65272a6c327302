"""The plain conversation nodes: say, menu, choose_language and hangup."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ivr.flow.model.base import (
    LANGUAGE,
    NODE,
    PROMPT,
    InputNode,
    Node,
    keyed,
    node_ref,
    prompt_ref,
)


@dataclass(frozen=True, kw_only=True)
class SayNode(Node):
    prompt: str = prompt_ref()
    next: str = node_ref()


@dataclass(frozen=True, kw_only=True)
class MenuNode(InputNode):
    """Keys lead to nodes; with `speech`, words do too.

    `speech` maps an option's key to a prompt key whose text, in each language, lists
    the phrases that choose it, comma-separated ("change my number, new number"). They
    are matched in the call's language and given to Twilio as hints; a spoken digit
    ("two", "dos") chooses that key. A yes/no question is such a menu:
    `speech: {1: speech_yes, 2: speech_no}`. Menus are the only kind that listens for
    speech: digits, codes and phone numbers stay keypad-only (see SPEECH_KINDS).
    """

    options: Mapping[str, str] = keyed("dtmf", NODE)
    speech: Mapping[str, str] = field(
        default_factory=dict, metadata={"keys": "dtmf", "ref": PROMPT}
    )

    def problems(self, languages: Sequence[str]) -> list[tuple[str, str]]:
        return [
            (f"speech.{key}", f"key {key} is not one of the menu's options")
            for key in self.speech
            if key not in self.options
        ]


# The only node kinds that may listen for speech. Every other input node takes account
# digits, codes, phone numbers or a language by keypad alone: a spoken code would be
# transcribed by a third party, outside our control (the loader refuses `speech` there).
SPEECH_KINDS: tuple[type[InputNode], ...] = (MenuNode,)


@dataclass(frozen=True, kw_only=True)
class ChooseLanguageNode(InputNode):
    """Speaks its prompt once in each offered language, then sets the call's language."""

    options: Mapping[str, str] = keyed("dtmf", LANGUAGE)
    next: str = node_ref()


@dataclass(frozen=True, kw_only=True)
class HangupNode(Node):
    prompt: str | None = prompt_ref(default=None)
