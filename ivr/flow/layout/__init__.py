"""The flow diagram's layout: where every node box, exit row and edge goes, as plain data.

The console draws a flow as SVG (`ivr.ops.diagram_view`); this package decides the
geometry, without Flask, so it can be tested on its own. The method is the classic
layered drawing (Sugiyama), left to right:

- layers: a depth-first walk from the start marks each edge back to a node still on
  the walk's path as a back edge (that breaks every cycle); each node's layer is the
  longest path to it over the other edges, so every forward edge goes right;
- an edge spanning several columns gets a waypoint in each column it crosses, so it
  runs in a gap between boxes rather than across one; a back edge turns round in the
  gap right of its source and runs right to left the same way, into the target's
  right side; an exit back to its own node is a small loop on the node's right side;
- the order within each column: barycenter sweeps, keeping the order with the fewest
  crossings seen;
- the heights: each column is fitted to its neighbours by least squares under the
  constraint that its items keep their order with a gap between them (isotonic
  regression, pool-adjacent-violators), so boxes never overlap, by construction.

Text is set in a monospace font and its width estimated at `CHAR_WIDTH` em per
character (generous: common monospace fonts use 0.6). Every box is as wide as its
widest label plus padding and every label has a row of its own, so no two labels
overlap, by construction; exit labels sit in their node's box, never on an edge.

`shapes` holds the data and the measures, `graph` the layers, waypoints and order,
`place` the heights, boxes and edge paths; this module turns flow nodes into the
layout's input and runs the steps.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping, Sequence

from ivr.flow.diff import type_name
from ivr.flow.layout.graph import (
    Item,
    column_links,
    edge_chains,
    layers,
    node_height,
    ordered_columns,
)
from ivr.flow.layout.place import assemble, place_heights
from ivr.flow.layout.shapes import (
    CHAR_WIDTH,
    HEADER,
    MAX_CHARS,
    Label,
    Layout,
    NodeSpec,
    PlacedEdge,
    PlacedNode,
    PlacedPort,
    Point,
    PortSpec,
    Rect,
)
from ivr.flow.model import Flow, Node
from ivr.flow.proofs import PROTECTED, TERMINALS

__all__ = [
    "CHAR_WIDTH",
    "FAMILIES",
    "HEADER",
    "MAX_CHARS",
    "Label",
    "Layout",
    "NodeSpec",
    "PlacedEdge",
    "PlacedNode",
    "PlacedPort",
    "Point",
    "PortSpec",
    "Rect",
    "exit_name",
    "exit_text",
    "layout_flow",
    "layout_graph",
    "node_spec",
]

FAMILIES: Mapping[str, str] = {
    "say": "conversation",
    "menu": "conversation",
    "choose_language": "conversation",
    "collect_digits": "conversation",
    "identify_caller": "identify",
    "check_account_digits": "identify",
    "send_code": "code",
    "check_code": "code",
    "check_number_change": "number",
    "collect_new_number": "number",
    "start_callback": "number",
    "check_callback_code": "number",
    "branch": "branch",
    "schedule": "branch",
    "split": "branch",
    "transfer": "terminal",
    "hangup": "terminal",
    "voicemail": "terminal",
}


def layout_graph(specs: Sequence[NodeSpec], start: str) -> Layout:
    """Lay out nodes joined by their ports' targets, from `start` (targets must be ids)."""
    by_id = {spec.id: spec for spec in specs}
    layer, back, walk = layers(by_id, start)
    items: list[Item] = []
    index: dict[str, int] = {}
    for node_id in walk:
        index[node_id] = len(items)
        items.append(Item(layer[node_id], node_height(by_id[node_id]), node_id))
    chains = edge_chains(by_id, walk, layer, back, items)
    links, attached = column_links(by_id, index, chains, items)
    columns = ordered_columns(items, links, attached)
    place_heights(items, columns, links, attached)
    return assemble(by_id, index, items, columns, chains)


def layout_flow(flow: Flow) -> Layout:
    """The flow's diagram, laid out from its start node."""
    return layout_graph([node_spec(node) for node in flow.nodes.values()], flow.start)


def node_spec(node: Node) -> NodeSpec:
    """A model node as the layout sees it: its exits in the order its YAML wrote them."""
    kind = type_name(node)
    settings = [
        str(getattr(node, spec.name))
        for spec in dataclasses.fields(node)
        if spec.metadata.get("choices") and getattr(node, spec.name) is not None
    ]
    exits = sorted(
        node.transitions().items(),
        key=lambda item: node.key_lines.get(item[0].split(".")[0], sys.maxsize),
    )
    return NodeSpec(
        id=node.id,
        kind=kind,
        detail=" · ".join([kind, *settings]),
        family=FAMILIES.get(kind, "other"),
        ports=tuple(PortSpec(name, target, exit_text(name, target)) for name, target in exits),
        protected=isinstance(node, PROTECTED),
        terminal=isinstance(node, TERMINALS),
    )


def exit_text(name: str, target: str) -> str:
    """An exit's row: `press 1 → menu`, `when code → menu`, `ok → send_sms`."""
    return f"{exit_name(name)} → {target}"


def exit_name(name: str) -> str:
    """An exit as people read it: `options.1` is `press 1`, `cases.code` is `when code`."""
    field_name, _, key = name.partition(".")
    if key and field_name == "options":
        return f"press {key}"
    if key and field_name == "cases":
        return f"when {key}"
    return name
