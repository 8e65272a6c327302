"""The steps a call takes, as the engine records them: the call timeline's vocabulary.

Each step is a small JSON-ready dict: `at` (milliseconds since the call started) and
`event`, plus the fields of its kind below. The engine appends them to its `Turn`;
the webhook saves them with the call's state, in the same Redis round trip
(`calls.store`), and when the call ends they are written to the database in one
batch (`ivr.history`). Ops read them in the console and with `ivr calls show`.

What a step never holds: keypad digits, codes, account numbers or phone numbers. An
input is described by its kind and how many keys it had; a transfer by its target's
kind (and the name of a queue or workflow, which are ours, never a person's); the
caller's number appears only masked, in the call's summary. `SAFE_FIELDS` lists every
field a step may have, and `clean` drops anything else, so a later change cannot leak
a value by adding a field without deciding it is safe.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import Any

from ivr.flow.state import CallState
from ivr.phone import mask

Step = dict[str, Any]

# The events, in the order a call usually meets them.
START = "start"  # flow, version, language
ENTER = "enter"  # node, type: a node was entered
INPUT = "input"  # node, input (keys | none | repeat), keys (how many), result (below)
EXIT = "exit"  # node, exit (the exit's label, e.g. "ok", "options.1"), to
VERIFIED = "verified"  # method: a verification step passed
CODE_SENT = "code_sent"  # channel, result (sent | sent_uncertain | failed | rate_limited | …)
CODE_CHECKED = "code_checked"  # result (ok | wrong | expired | locked)
CALLBACK = "callback"  # result: how starting the number change's call-back went
CALLBACK_STATUS = "callback_status"  # status (not_answered | busy | failed): it ended unconfirmed
CALLBACK_CODE = "callback_code"  # result (ok | conflict | taken | expired | locked | wrong)
TRANSFER = "transfer"  # node, target (kind), queue (a queue or workflow name), reason
TRANSFER_END = "transfer_end"  # status (completed | busy | no-answer | failed | canceled | …)
LIMIT = "limit"  # too many prompts in one call: handed to the default target
HANGUP = "hangup"  # node (None after a transfer or the input limit): the flow ended the call
ERROR = "error"  # the apology path: something failed and the caller went to an agent
VOICEMAIL = "voicemail"  # node, result (recorded | empty), seconds: a message was left
TAKEN = "taken"  # how an agent took the held caller: via (agent_line | page | taskrouter)
# A holding caller chose a call-back (result "requested", node); on the call-back's own
# leg: result "joined" (it joined the priority queue).
QUEUE_CALLBACK = "queue_callback"
END = "end"  # status (Twilio's final CallStatus, or "unknown"), duration, outcome

EVENTS = (
    START,
    ENTER,
    INPUT,
    EXIT,
    VERIFIED,
    CODE_SENT,
    CODE_CHECKED,
    CALLBACK,
    CALLBACK_STATUS,
    CALLBACK_CODE,
    TRANSFER,
    TRANSFER_END,
    LIMIT,
    HANGUP,
    ERROR,
    VOICEMAIL,
    TAKEN,
    QUEUE_CALLBACK,
    END,
)

# Input kinds and results of an INPUT step.
KEYS = "keys"  # keys were pressed (how many: `keys`)
NONE = "none"  # nothing was pressed before the timeout
REPEAT = "repeat"  # * (repeat the prompt; costs no try)
SPEECH = "speech"  # words were spoken (a menu with speech; never the words themselves)
ACCEPTED = "accepted"  # the input fitted the node and it moved on
INVALID = "invalid"  # the input did not fit; the node asks again (or its invalid exit)
TOO_MANY_TRIES = "too_many_tries"  # the last try failed: the node's too_many_tries exit
NO_INPUT = "no_input"  # silence a second time: the node's no_input exit
REPROMPT = "reprompt"  # silence once, or *: the prompt again

# How a call ended, for lists, filters and the dashboard.
TRANSFERRED = "transferred"  # it reached people (a transfer was answered)
ENDED = "ended"  # the flow ended it (a hang-up node, or after an unanswered last transfer)
ABANDONED = "abandoned"  # the caller hung up first (in the menus, or while holding)
OUTCOMES = (TRANSFERRED, ENDED, ABANDONED)
CALLER_LEFT = "canceled"  # a transfer's status when the caller hung up during it
CALLBACK_REQUESTED = "requested"  # QUEUE_CALLBACK: the caller chose to be called back
LOCKED = "locked"  # an INPUT's result when the entry locked the node (too many, across calls)

# Every field a step may carry, and what it holds (all of them safe to show ops).
SAFE_FIELDS = frozenset(
    {
        "at",  # ms since the call started
        "event",
        "flow",
        "version",
        "language",
        "node",  # a node id of the flow
        "type",  # a node kind
        "input",  # keys | none | repeat | speech
        "keys",  # how many keys (never which)
        "result",
        "exit",  # an exit label of the node
        "to",  # the node the exit leads to
        "method",  # a verification method name
        "channel",  # sms | email | call
        "status",
        "target",  # a transfer target's kind
        "queue",  # a queue or TaskRouter workflow name (ours, not a person's)
        "reason",  # the transfer reason of the flow
        "duration",  # seconds
        "outcome",
        "seconds",  # a recording's length
        "via",  # how a held caller was taken by an agent
        "position",  # a held caller's place in the queue
    }
)


def step(event: str, at: int, **fields: Any) -> Step:
    """A step of `event` at `at` ms, with its fields (None values left out)."""
    record: Step = {"at": at, "event": event}
    record.update({key: value for key, value in fields.items() if value is not None})
    return clean(record)


def clean(record: Mapping[str, Any]) -> Step:
    """The record with only the fields a step may carry (anything else is dropped)."""
    return {key: value for key, value in record.items() if key in SAFE_FIELDS}


def outcome_of(steps: Sequence[Mapping[str, Any]]) -> str:
    """How the call ended, from its steps: transferred when a transfer was answered;
    abandoned when the caller hung up while it rang or held (a transfer "canceled": the
    flow's unanswered path then plays to nobody) or before the flow ended the call;
    ended when the flow hung up, or the caller hung up on hold to be called back."""
    if any(
        item["event"] == QUEUE_CALLBACK and item.get("result") == CALLBACK_REQUESTED
        for item in steps
    ):
        return ENDED  # the caller hung up to be called back: not an abandoned call
    ends = [item for item in steps if item["event"] == TRANSFER_END]
    # The last transfer's end: a caller an agent took and who was sent back (the agent
    # never joined) and then hung up did not reach people.
    if ends and ends[-1].get("status") in ("completed", "answered"):
        return TRANSFERRED
    if _left_while_transferred(steps) is not None:
        return ABANDONED
    if any(item["event"] == HANGUP for item in steps):
        return ENDED
    return ABANDONED


def _left_while_transferred(steps: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The transfer's end step when the caller hung up during it (Twilio reports it
    "canceled"; a queue's QueueResult "hangup" maps to it), else None."""
    for item in steps:
        if item["event"] == TRANSFER_END and item.get("status") == CALLER_LEFT:
            return item
    return None


def last_node(steps: Sequence[Mapping[str, Any]]) -> str | None:
    """The node the call was at when it ended (where an abandoned call dropped off)."""
    left = _left_while_transferred(steps)
    if left is not None and left.get("node"):
        return str(left["node"])
    for item in reversed(steps):
        if item.get("node") and item["event"] in (ENTER, INPUT, TRANSFER, HANGUP):
            return str(item["node"])
    return None


def caller_key(e164: str, secret: str) -> str:
    """A keyed hash of a caller's full number: tells one caller's calls from another's
    (a customer's data export and erasure) where the masked number cannot, as about a
    thousand numbers share each mask, without keeping the number."""
    key = hashlib.sha256(b"ivr caller key\0" + secret.encode()).digest()
    return hmac.new(key, e164.encode(), hashlib.sha256).hexdigest()


def summary_of(state: CallState, secret: str) -> dict[str, Any]:
    """What a call's record keeps of its state: masked caller, its keyed hash, the
    account's id and how the call was verified; never digits, codes or numbers."""
    return {
        "flow": state.flow,
        "version": state.version,
        "language": state.language,
        "started_at": state.started_at,
        "verification": state.verification,
        "methods": [method for method, _ in state.methods],
        "identity": state.identity,
        "caller": mask(state.caller),
        "caller_key": caller_key(state.caller, secret) if state.caller else None,
        "account_id": state.account_id,
        "transfer_reason": state.transfer_reason,
        "failure": state.failure,
        "flags": list(state.flags),
        "stir_verstat": state.stir_verstat,
    }
