"""The `split` node's handler: a share of calls down each exit, sticky per call
(issue 15; filled in by the split work)."""

from __future__ import annotations

from ivr.flow.engine.context import EngineContext, Turn
from ivr.flow.model import SplitNode


def enter_split(engine: EngineContext, turn: Turn, node: SplitNode) -> str:
    return f"exits.{next(iter(node.exits))}"
