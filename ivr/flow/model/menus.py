"""The plain conversation nodes: say, menu, choose_language and hangup."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ivr.flow.model.base import LANGUAGE, NODE, InputNode, Node, keyed, node_ref, prompt_ref


@dataclass(frozen=True, kw_only=True)
class SayNode(Node):
    prompt: str = prompt_ref()
    next: str = node_ref()


@dataclass(frozen=True, kw_only=True)
class MenuNode(InputNode):
    options: Mapping[str, str] = keyed("dtmf", NODE)


@dataclass(frozen=True, kw_only=True)
class ChooseLanguageNode(InputNode):
    """Speaks its prompt once in each offered language, then sets the call's language."""

    options: Mapping[str, str] = keyed("dtmf", LANGUAGE)
    next: str = node_ref()


@dataclass(frozen=True, kw_only=True)
class HangupNode(Node):
    prompt: str | None = prompt_ref(default=None)
