"""The `schedule` node: which way a call goes by the line's hours, holidays and
an emergency closure ops switch on without publishing.

(Issue 15 groundwork: the fields are refined by the hours work.)
"""

from __future__ import annotations

from dataclasses import dataclass

from ivr.flow.model.base import Node, node_ref


@dataclass(frozen=True, kw_only=True)
class ScheduleNode(Node):
    open: str = node_ref()
    closed: str = node_ref()
    holiday: str = node_ref()
    emergency: str = node_ref()
