"""The `split` node: a share of calls down each exit, sticky per call.

(Issue 15 groundwork: the fields are refined by the split work.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ivr.flow.model.base import NODE, Node, keyed


@dataclass(frozen=True, kw_only=True)
class SplitNode(Node):
    exits: Mapping[str, str] = keyed("name", NODE)
