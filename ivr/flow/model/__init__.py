"""The flow model: plain frozen data read from `flows/*.yaml` and `prompts/*.yaml`.

`base` holds what every node shares, one module per node family holds its
dataclasses (`menus`, `identify`, `codes`, `number_change`, `transfer`,
`schedule`, `split`, `voicemail`), `registry`
maps each YAML `type` to its dataclass, and `flow` holds the flow and the prompt
catalog. The engine never looks a name up lazily during a call.
"""

from ivr.flow.model.base import LANGUAGE, NODE, PROMPT, InputNode, Node
from ivr.flow.model.codes import CheckCodeNode, SendCodeNode
from ivr.flow.model.flow import MESSAGE_PREFIX, READ_CODE_PREFIX, Catalog, Flow
from ivr.flow.model.identify import (
    FACTS,
    BranchNode,
    CheckAccountDigitsNode,
    CollectDigitsNode,
    IdentifyCallerNode,
)
from ivr.flow.model.menus import ChooseLanguageNode, HangupNode, MenuNode, SayNode
from ivr.flow.model.number_change import (
    FRESH_VERIFICATION,
    CheckCallbackCodeNode,
    CheckNumberChangeNode,
    CollectNewNumberNode,
    StartCallbackNode,
)
from ivr.flow.model.registry import NODE_TYPES
from ivr.flow.model.schedule import ScheduleNode
from ivr.flow.model.split import SplitNode
from ivr.flow.model.transfer import (
    HOLDING_KINDS,
    MAX_QUEUE_WAIT,
    TransferNode,
    TransferTarget,
    parse_target,
)
from ivr.flow.model.voicemail import VoicemailNode

__all__ = [
    "FACTS",
    "FRESH_VERIFICATION",
    "HOLDING_KINDS",
    "LANGUAGE",
    "MAX_QUEUE_WAIT",
    "MESSAGE_PREFIX",
    "NODE",
    "NODE_TYPES",
    "PROMPT",
    "READ_CODE_PREFIX",
    "BranchNode",
    "Catalog",
    "CheckAccountDigitsNode",
    "CheckCallbackCodeNode",
    "CheckCodeNode",
    "CheckNumberChangeNode",
    "ChooseLanguageNode",
    "CollectDigitsNode",
    "CollectNewNumberNode",
    "Flow",
    "HangupNode",
    "IdentifyCallerNode",
    "InputNode",
    "MenuNode",
    "Node",
    "SayNode",
    "ScheduleNode",
    "SendCodeNode",
    "SplitNode",
    "StartCallbackNode",
    "TransferNode",
    "TransferTarget",
    "VoicemailNode",
    "parse_target",
]
