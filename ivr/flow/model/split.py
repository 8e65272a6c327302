"""The `split` node: a share of calls down each exit, sticky per call.

For trying a new prompt or path on part of the traffic: `exits` names each branch and
the node it leads to, `shares` gives each branch its whole percentage of calls (they
add up to 100). A share of 0 turns a branch off without deleting it; its path is
still validated and proved, so switching it back on cannot publish a broken flow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ivr.flow.model.base import NODE, Node, keyed

MIN_EXITS = 2


@dataclass(frozen=True, kw_only=True)
class SplitNode(Node):
    exits: Mapping[str, str] = keyed("name", NODE)
    shares: Mapping[str, int] = field(metadata={"keys": "name", "min": 0, "max": 100})

    def problems(self, languages: Sequence[str]) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        if len(self.exits) < MIN_EXITS:
            found.append(("exits", f"a split needs at least {MIN_EXITS} exits"))
        for name in self.exits:
            if name not in self.shares:
                found.append((f"shares.{name}", f"missing: exit {name!r} needs a share"))
        for name in self.shares:
            if name not in self.exits:
                found.append((f"shares.{name}", f"{name!r} is not one of the split's exits"))
        total = sum(self.shares.values())
        if total != 100:
            found.append(("shares", f"the shares add up to {total}; they must add up to 100"))
        return found

    def ordered(self) -> list[tuple[str, int]]:
        """(exit, share) in a fixed order (by name), so a call's bucket maps to the same
        exit however the YAML is laid out; exits with no share are left out."""
        return [(name, self.shares[name]) for name in sorted(self.exits) if name in self.shares]
