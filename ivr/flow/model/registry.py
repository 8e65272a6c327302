"""The one registry of node kinds: YAML `type` → dataclass.

A kind missing here is an unknown type to the loader, which fails the flow at
load time with the file and node id.
"""

from __future__ import annotations

from collections.abc import Mapping

from ivr.flow.model.base import Node
from ivr.flow.model.codes import CheckCodeNode, SendCodeNode
from ivr.flow.model.identify import (
    BranchNode,
    CheckAccountDigitsNode,
    CollectDigitsNode,
    IdentifyCallerNode,
)
from ivr.flow.model.menus import ChooseLanguageNode, HangupNode, MenuNode, SayNode
from ivr.flow.model.number_change import (
    CheckCallbackCodeNode,
    CheckNumberChangeNode,
    CollectNewNumberNode,
    StartCallbackNode,
)
from ivr.flow.model.schedule import ScheduleNode
from ivr.flow.model.split import SplitNode
from ivr.flow.model.transfer import TransferNode
from ivr.flow.model.voicemail import VoicemailNode

NODE_TYPES: Mapping[str, type[Node]] = {
    "say": SayNode,
    "menu": MenuNode,
    "collect_digits": CollectDigitsNode,
    "choose_language": ChooseLanguageNode,
    "check_account_digits": CheckAccountDigitsNode,
    "send_code": SendCodeNode,
    "check_code": CheckCodeNode,
    "check_number_change": CheckNumberChangeNode,
    "collect_new_number": CollectNewNumberNode,
    "start_callback": StartCallbackNode,
    "check_callback_code": CheckCallbackCodeNode,
    "branch": BranchNode,
    "identify_caller": IdentifyCallerNode,
    "transfer": TransferNode,
    "hangup": HangupNode,
    "schedule": ScheduleNode,
    "split": SplitNode,
    "voicemail": VoicemailNode,
}

# The YAML `type` of each node class (the call timeline names node kinds this way).
NODE_KIND_OF: Mapping[type[Node], str] = {kind: name for name, kind in NODE_TYPES.items()}

TERMINAL_TYPES = (HangupNode, VoicemailNode)
