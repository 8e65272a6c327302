"""The `voicemail` node: the caller leaves a message (`<Record>`), stored for agents.

(Issue 15 groundwork: the fields are refined by the voicemail work.)
"""

from __future__ import annotations

from dataclasses import dataclass

from ivr.flow.model.base import Node, prompt_ref


@dataclass(frozen=True, kw_only=True)
class VoicemailNode(Node):
    prompt: str = prompt_ref()
