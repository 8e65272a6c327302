"""The `split` node's handler: a share of calls down each exit, sticky per call.

Which exit a call takes comes from a hash of its CallSid and the node's id, not a
random draw kept in the call's state: a call that passes the node twice (back to the
menu, say) takes the same branch, a replayed webhook cannot change it, the state
needs no new slot, and a test can compute the exact split of any set of CallSids.
The node's id is part of the hash so two splits in one flow are independent. Twilio
assigns CallSids (callers cannot choose one), so no secret key is needed for the
shares to hold; SHA-256 keeps the buckets even.

The timeline records the branch: the turn loop notes the exit's label
(`exits.<name>`).
"""

from __future__ import annotations

import hashlib

from ivr.flow.engine.context import EngineContext, Turn
from ivr.flow.model import SplitNode

BUCKETS = 100  # one per percentage point


def bucket(call_sid: str, node_id: str) -> int:
    """The call's place (0-99) at this split: the same for the call every time."""
    digest = hashlib.sha256(f"split\0{node_id}\0{call_sid}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def branch(node: SplitNode, call_sid: str) -> str:
    """The exit name a call takes: buckets are dealt to exits by name, each its share."""
    place = bucket(call_sid, node.id)
    ordered = node.ordered()
    for name, share in ordered:
        if place < share:
            return name
        place -= share
    # Shares add up to 100 (validated); this covers a flow that was not validated.
    return ordered[-1][0] if ordered else next(iter(node.exits))


def enter_split(engine: EngineContext, turn: Turn, node: SplitNode) -> str:
    return f"exits.{branch(node, turn.state.call_sid)}"
