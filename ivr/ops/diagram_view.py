"""The flow diagram as the console pages embed it (flows page, draft, simulator).

(Interface first: the layout and drawing are being written; until then this draws a
plain list of nodes.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

from ivr.flow.model import Flow


@dataclass(frozen=True)
class Finding:
    """A check's finding to show on the diagram: its message and the offending path
    (node ids in order, the node at fault last)."""

    message: str
    nodes: tuple[str, ...]


def render_diagram(
    flow: Flow,
    *,
    link: Callable[[str], str] | None = None,
    selected: str | None = None,
    current: str | None = None,
    findings: Sequence[Finding] = (),
) -> Markup:
    """The flow drawn as SVG: `link(node_id)` is where clicking a node goes, `selected`
    the node shown beside it, `current` the node a simulated call is at, `findings`
    highlighted with their paths."""
    items = "".join(
        f'<li data-node="{escape(node_id)}">{escape(node_id)}</li>' for node_id in flow.nodes
    )
    return Markup(f'<ul class="diagram-fallback">{items}</ul>')
