"""Identification and digits: who is calling, what they keyed in, and branching on it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ivr.flow.model.base import NODE, InputNode, Node, bounded, choice, keyed, node_ref

# Facts a `branch` node may test, with the values each can take.
# (`language` takes the flow's own languages.)
FACTS: Mapping[str, frozenset[str]] = {
    "identity": frozenset({"one_account", "several_accounts", "unknown_number", "withheld"}),
    "verification": frozenset({"none", "digits", "code"}),
    "caller_id": frozenset({"present", "withheld"}),
    # Whether a code was passed on this call within FRESH_VERIFICATION seconds.
    "fresh_code": frozenset({"yes", "no"}),
}


@dataclass(frozen=True, kw_only=True)
class IdentifyCallerNode(Node):
    one_account: str = node_ref()
    several_accounts: str = node_ref()
    unknown_number: str = node_ref()
    withheld: str = node_ref()


@dataclass(frozen=True, kw_only=True)
class CheckAccountDigitsNode(InputNode):
    """`last4`: the last 4 digits pick one of the caller ID's accounts; `full`: the
    whole account number, ended by #, for callers the number did not identify.

    `locked`: where a call goes, without being asked, when the accounts it would be
    checked against (or, in full mode, the calling number) took too many wrong
    entries across calls; optional, defaulting to `too_many_tries` (an agent).
    """

    mode: str = choice(frozenset({"last4", "full"}))
    ok: str = node_ref()
    ambiguous: str | None = node_ref(default=None)
    locked: str | None = node_ref(default=None)

    @property
    def locked_exit(self) -> str:
        """The node a locked call goes to: `locked`, else the node's failure route."""
        return self.locked or self.too_many_tries

    @property
    def locked_exit_label(self) -> str:
        """The label of that exit, as the call's timeline records it."""
        return "locked" if self.locked else "too_many_tries"


@dataclass(frozen=True, kw_only=True)
class CollectDigitsNode(InputNode):
    save_as: str = field()
    min_length: int = bounded(1, 32, 1)
    max_length: int = bounded(1, 32, 20)
    next: str = node_ref()


@dataclass(frozen=True, kw_only=True)
class BranchNode(Node):
    on: str = choice(frozenset(FACTS) | {"language"})
    cases: Mapping[str, str] = keyed("fact", NODE)
    default: str = node_ref()
