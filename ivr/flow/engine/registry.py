"""The one place that says which handler runs each node kind.

Tables, not names looked up during a call: a node kind of the model without
exactly one behaviour here stops the import, long before a caller reaches it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ivr.flow.engine.codes import enter_send_code, input_code
from ivr.flow.engine.context import Invalid
from ivr.flow.engine.identity import before_account_digits, enter_identify, input_account_digits
from ivr.flow.engine.number_change import (
    enter_check_number_change,
    enter_start_callback,
    input_callback_code,
    input_new_number,
)
from ivr.flow.engine.routing import (
    enter_branch,
    enter_hangup,
    enter_say,
    enter_transfer,
    input_collect,
    input_language,
    input_menu,
)
from ivr.flow.engine.schedule import enter_schedule
from ivr.flow.engine.split import enter_split
from ivr.flow.engine.voicemail import after_recording, enter_voicemail, replay_voicemail
from ivr.flow.model import (
    NODE_TYPES,
    BranchNode,
    CheckAccountDigitsNode,
    CheckCallbackCodeNode,
    CheckCodeNode,
    CheckNumberChangeNode,
    ChooseLanguageNode,
    CollectDigitsNode,
    CollectNewNumberNode,
    HangupNode,
    IdentifyCallerNode,
    InputNode,
    MenuNode,
    Node,
    SayNode,
    ScheduleNode,
    SendCodeNode,
    SplitNode,
    StartCallbackNode,
    TransferNode,
    VoicemailNode,
)

# Nodes that run without waiting: return the next node id, or None to stop the turn.
ENTER: Mapping[type[Node], Callable[..., str | None]] = {
    SayNode: enter_say,
    BranchNode: enter_branch,
    IdentifyCallerNode: enter_identify,
    TransferNode: enter_transfer,
    SendCodeNode: enter_send_code,
    CheckNumberChangeNode: enter_check_number_change,
    StartCallbackNode: enter_start_callback,
    HangupNode: enter_hangup,
    ScheduleNode: enter_schedule,
    SplitNode: enter_split,
    VoicemailNode: enter_voicemail,
}

# Nodes (entered by ENTER, which returned None) that wait for something other than
# keys: a recording. What to do with it (an exit label, or None when the handler
# ended the turn itself), and how to ask again for a replayed webhook.
ON_RECORDED: Mapping[type[Node], Callable[..., str | None]] = {
    VoicemailNode: after_recording,
}
REPLAY: Mapping[type[Node], Callable[..., None]] = {
    VoicemailNode: replay_voicemail,
}

# Input nodes: return the next node id, or INVALID.
ON_INPUT: Mapping[type[Node], Callable[..., str | Invalid]] = {
    MenuNode: input_menu,
    ChooseLanguageNode: input_language,
    CollectDigitsNode: input_collect,
    CheckAccountDigitsNode: input_account_digits,
    CheckCodeNode: input_code,
    CollectNewNumberNode: input_new_number,
    CheckCallbackCodeNode: input_callback_code,
}

# Input nodes that may let a call pass without asking: return the next node id, or
# None to ask as usual (account digits of a locked account are not asked for).
BEFORE_ASK: Mapping[type[Node], Callable[..., str | None]] = {
    CheckAccountDigitsNode: before_account_digits,
}

# Why verification failed, by the node kind that gave up (for the agent).
FAILURES: Mapping[type[Node], str] = {
    CheckAccountDigitsNode: "digits_failed",
    CheckCodeNode: "code_failed",
    CollectNewNumberNode: "new_number_failed",
    CheckCallbackCodeNode: "callback_code_failed",
}

assert all(
    (kind in ENTER) != (kind in ON_INPUT) and (kind in ON_INPUT) == issubclass(kind, InputNode)
    for kind in NODE_TYPES.values()
), "every node kind of the registry needs exactly one behaviour here"
