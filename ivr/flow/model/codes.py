"""One-time code nodes: send_code and check_code."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ivr.flow.model.base import NODE, InputNode, Node, choice, node_ref, prompt_ref

CODE_CHANNELS = frozenset({"sms", "email", "voice"})


@dataclass(frozen=True, kw_only=True)
class SendCodeNode(Node):
    """Sends a one-time code to the phone or mailbox on file of the verified account.

    "voice" rings the phone on file and reads the code once someone presses a key.
    """

    channel: str = choice(CODE_CHANNELS)
    prompt: str | None = prompt_ref(default=None)  # spoken once the code is on its way
    sent: str = node_ref()
    no_channel: str = node_ref()
    rate_limited: str = node_ref()  # send limits reached, or the account is locked out
    failed: str = node_ref()
    # voice only: the caller is on the phone on file, which cannot ring (default: no_channel)
    line_in_use: str | None = node_ref(default=None)


@dataclass(frozen=True, kw_only=True)
class CheckCodeNode(InputNode):
    """Asks for the code; single keys in `options` lead elsewhere (resend, another channel)."""

    options: Mapping[str, str] = field(default_factory=dict, metadata={"keys": "dtmf", "ref": NODE})
    ok: str = node_ref()
    expired: str = node_ref()
    locked: str = node_ref()
