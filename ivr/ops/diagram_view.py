"""The flow diagram as the console pages embed it (flows page, draft, simulator).

`ivr.flow.layout` decides the geometry; this module draws it as inline SVG through the
`ops/_diagram.svg.html` template, marks the selected node, the node a simulated call
is at and the checks' findings, and lists the findings' messages under the drawing.
`findings_of` turns validation and proof problems into findings, taking each one's
path from the proofs' notation (`node[exit] → node → …`, see `ivr.flow.proofs`).

Pan and zoom are `static/diagram.js`; without it the drawing is a plain SVG in a
scrollable box, every node a link.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from flask import render_template
from markupsafe import Markup

from ivr.errors import DefinitionProblem
from ivr.flow.layout import HEADER, Layout, NodeSpec, PlacedEdge, layout_graph, node_spec
from ivr.flow.model import Flow
from ivr.flow.proofs import ARROW

# A path in the proofs' messages: steps (a node id, then the exit taken in brackets)
# joined by arrows; ids hold no blanks, brackets, commas, semicolons or colons. Each
# part is bounded, so a long word in a message (a prompt's text is quoted in some)
# costs linear time, not quadratic, on every page view.
_STEP = r"[^\s\[\],;:()→]{1,200}(?:\[[^\]]{0,200}\])?"
_PATH = re.compile(rf"{_STEP}(?:{re.escape(ARROW)}{_STEP})+")
_EXIT = re.compile(r"\[[^\]]*\]$")
# Layouts drawn lately, so a page view does not lay the flow out again.
_CACHED_LAYOUTS = 16
_layouts: OrderedDict[tuple[str, tuple[NodeSpec, ...]], Layout] = OrderedDict()
_layouts_lock = threading.Lock()


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
    traffic: Any = None,
) -> Markup:
    """The flow drawn as SVG: `link(node_id)` is where clicking a node goes, `selected`
    the node shown beside it, `current` the node a simulated call is at, `findings`
    highlighted with their paths, `traffic` the calls that went through it
    (`traffic_view.Overlay`: counts by nodes and exits). Needs an app context (it
    renders a template)."""
    layout = cached_layout(flow)
    on_path: set[str] = set()
    at_fault: set[str] = set()
    steps: set[tuple[str, str]] = set()
    for finding in findings:
        on_path.update(finding.nodes)
        if finding.nodes:
            at_fault.add(finding.nodes[-1])
        steps.update(itertools.pairwise(finding.nodes))
    return Markup(
        render_template(
            "ops/_diagram.svg.html",
            flow=flow,
            layout=layout,
            # Tab goes column by column, top to bottom: the order the drawing reads in.
            reading_order=sorted(
                layout.nodes.items(), key=lambda item: (item[1].layer, item[1].box.y)
            ),
            slug=re.sub(r"[^A-Za-z0-9_-]", "-", flow.name),
            link=link,
            selected=selected,
            current=current,
            on_path=on_path,
            at_fault=at_fault,
            edge_on_path=lambda edge: _edge_on_path(edge, steps),
            findings=findings,
            traffic=traffic,
            node_label=_node_label,
            header=HEADER,
            n=_number,
        )
    )


def cached_layout(flow: Flow) -> Layout:
    """The flow's layout, computed once per shape of graph (the key is what the layout
    reads, so a draft's sketch and a stored version can never be mixed up)."""
    specs = tuple(node_spec(node) for node in flow.nodes.values())
    key = (flow.start, specs)
    with _layouts_lock:
        if key in _layouts:
            _layouts.move_to_end(key)
            return _layouts[key]
    layout = layout_graph(specs, flow.start)
    with _layouts_lock:
        _layouts[key] = layout
        while len(_layouts) > _CACHED_LAYOUTS:
            _layouts.popitem(last=False)
    return layout


def findings_of(problems: Sequence[DefinitionProblem], flow: Flow) -> list[Finding]:
    """Validation and proof problems as findings on `flow`'s diagram: the path a proof
    names (the path from the start first, then any cycle), else the problem's node.

    Node ids the flow does not have are left out (a problem may name a node of the
    draft that the drawn version lacks); a problem about no node keeps its message."""
    findings = []
    for problem in problems:
        nodes = _path_nodes(problem.message, flow)
        if problem.where in flow.nodes and (not nodes or nodes[-1] != problem.where):
            nodes = [*(n for n in nodes if n != problem.where), problem.where]
        where = " ".join(part for part in (problem.where, problem.field) if part)
        message = f"{where}: {problem.message}" if where else problem.message
        findings.append(Finding(message, tuple(nodes)))
    return findings


def _path_nodes(message: str, flow: Flow) -> list[str]:
    """The node ids of every path written in `message`, joined into one walk: the path
    from the flow's start first, each further path continuing where the last ended."""
    paths = [
        [_EXIT.sub("", step) for step in match.group(0).split(ARROW)]
        for match in _PATH.finditer(message)
    ]
    paths = [[node for node in path if node in flow.nodes] for path in paths]
    paths.sort(key=lambda path: not path or path[0] != flow.start)  # stable
    walk: list[str] = []
    for path in paths:
        walk.extend(path[1:] if walk and path and path[0] == walk[-1] else path)
    return walk


def _number(value: float) -> str:
    """A coordinate as SVG wants it: one decimal at most."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _edge_on_path(edge: PlacedEdge, steps: set[tuple[str, str]]) -> bool:
    return (edge.source, edge.target) in steps


def _node_label(flow: Flow, node_id: str, layout: Layout) -> str:
    """What a screen reader says of a node box."""
    node = layout.nodes[node_id]
    spec = node.spec
    parts = [f"{node_id}: {spec.detail}"]
    if spec.protected:
        parts.append("protected (changes the phone number)")
    if spec.kind == "hangup":
        parts.append("ends the call")
    elif spec.kind == "transfer":
        parts.append("hands the call to people")
    elif spec.kind == "voicemail":
        parts.append("takes a message, then ends the call")
    count = len(spec.ports)
    parts.append(f"{count} exit{'s' if count != 1 else ''}")
    if node_id == flow.start:
        parts.append("the start")
    return ", ".join(parts)
