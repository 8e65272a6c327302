"""The diagram's layout (ivr.flow.layout), without Flask: every node placed, no two
boxes or labels overlapping, every edge from its port to its target, cycles drawn as
back edges, the same drawing every time; over every flow in flows/ and over
generated graphs."""

from __future__ import annotations

import itertools
import random
import re
from pathlib import Path

import pytest

from ivr.flow.layout import (
    HEADER,
    Layout,
    NodeSpec,
    PortSpec,
    exit_text,
    layout_flow,
    layout_graph,
)
from ivr.flow.loader import load_definitions
from ivr.flow.model import Flow

ROOT = Path(__file__).resolve().parent.parent
FLOW_FILES = sorted((ROOT / "flows").glob("*.yaml"))


def load(name: str) -> Flow:
    definitions = load_definitions(ROOT / "flows", ROOT / "prompts", "US")
    return definitions.flows[name]


def check(layout: Layout, specs: list[NodeSpec]) -> None:
    """Every invariant the drawing promises."""
    by_id = {spec.id: spec for spec in specs}
    assert set(layout.nodes) == set(by_id), "every node is placed, once"
    boxes = [(node_id, node.box) for node_id, node in layout.nodes.items()]
    for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2):
        assert not box_a.overlaps(box_b), f"boxes of {a} and {b} overlap"
    for node_id, node in layout.nodes.items():
        box = node.box
        assert box.x >= 0 and box.right <= layout.width, node_id
        assert box.y >= 0 and box.bottom <= layout.height, node_id
        for label in node.labels:
            inner = label.box
            assert box.x < inner.x and inner.right < box.right, (node_id, label.text)
            assert box.y < inner.y and inner.bottom < box.bottom, (node_id, label.text)
            assert label.width > 0
    labels = list(layout.labels())
    assert len(labels) == sum(2 + len(spec.ports) for spec in specs)
    for a, b in itertools.combinations(labels, 2):
        assert not a.box.overlaps(b.box), f"labels {a.text!r} and {b.text!r} overlap"
    # Every exit drawn once, from its port to its target.
    drawn = {(edge.source, edge.exit): edge for edge in layout.edges}
    assert len(drawn) == len(layout.edges) == sum(len(spec.ports) for spec in specs)
    for spec in specs:
        node = layout.nodes[spec.id]
        assert [port.exit for port in node.ports] == [port.exit for port in spec.ports]
        for port in node.ports:
            edge = drawn[(spec.id, port.exit)]
            target = layout.nodes[port.target]
            assert edge.target == port.target
            assert edge.points[0] == port.anchor
            assert port.anchor[0] == node.box.right
            assert node.box.y + HEADER <= port.anchor[1] <= node.box.bottom
            layers = (node.layer, target.layer)
            if edge.loop:
                assert port.target == spec.id and edge.back
                assert edge.points[-1] == target.entry_right
            elif edge.back:
                assert layers[1] < layers[0], "a back edge goes to an earlier column"
                assert edge.points[-1] == target.entry_right
            else:
                assert layers[1] > layers[0], "a forward edge goes to a later column"
                assert edge.points[-1] == target.entry_left
            assert target.box.contains(edge.points[-1])
            assert _path_ends(edge.path) == (edge.points[0], edge.points[-1])
            _check_waypoints(layout, edge.points[1:-1])


def _path_ends(path: str) -> tuple[tuple[float, float], tuple[float, float]]:
    numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", path)]
    assert path.startswith("M")
    return (numbers[0], numbers[1]), (numbers[-2], numbers[-1])


def _check_waypoints(layout: Layout, points: tuple[tuple[float, float], ...]) -> None:
    """Between its ends an edge crosses columns in pairs of points at one height, and
    that stretch runs between boxes, never through one."""
    assert len(points) % 2 == 0
    for (x1, y1), (x2, y2) in zip(points[::2], points[1::2], strict=True):
        assert y1 == y2
        low, high = min(x1, x2), max(x1, x2)
        for node_id, node in layout.nodes.items():
            box = node.box
            crosses = low < box.right and box.x < high and box.y <= y1 <= box.bottom
            assert not crosses, f"an edge runs through {node_id} at y={y1}"


@pytest.mark.parametrize("path", FLOW_FILES, ids=[p.stem for p in FLOW_FILES])
def test_every_flow_file_is_drawn_without_overlaps(path: Path) -> None:
    from ivr.flow.layout import node_spec

    flow = load(path.stem)
    layout = layout_flow(flow)
    check(layout, [node_spec(node) for node in flow.nodes.values()])
    assert layout.nodes[flow.start].layer == 0
    assert layout_flow(flow) == layout, "the same flow is drawn the same way every time"


def test_the_default_flow_reads_left_to_right_with_its_cycles_as_back_edges() -> None:
    flow = load("support")
    layout = layout_flow(flow)
    nodes = layout.nodes
    # The main path runs to the right: hours, greeting, language, identification, digits,
    # code.
    path = ["hours", "welcome", "language", "identify", "last4", "send_sms", "enter_code", "menu"]
    assert [nodes[n].layer for n in path] == sorted({nodes[n].layer for n in path})
    assert nodes["menu"].layer < nodes["change_number"].layer < nodes["new_number"].layer
    backs = {(e.source, e.target) for e in layout.edges if e.back and not e.loop}
    assert ("number_changed", "menu") in backs  # after the change, back to the menu
    loops = {e.source for e in layout.edges if e.loop}
    assert {"menu", "language", "enter_code"} <= loops  # `invalid` asks again
    # Protected and terminal nodes are marked for the drawing.
    assert nodes["new_number"].spec.protected and not nodes["menu"].spec.protected
    assert nodes["voicemail"].spec.terminal and nodes["agent_verified"].spec.terminal
    assert not nodes["agents_busy"].spec.terminal  # says so, then leads to the voicemail
    assert nodes["enter_code"].spec.family == "code"
    assert nodes["hours"].spec.family == "branch" and nodes["voicemail"].spec.family == "terminal"
    assert nodes["menu"].ports[0].label.text == "press 1 → change_number"


def random_graph(seed: int) -> list[NodeSpec]:
    """A flow-shaped graph: a start, nodes with up to six exits (self-loops, back and
    forward jumps, several exits to one node), terminals, long ids, some unreachable."""
    rng = random.Random(seed)
    count = rng.randint(2, 45)
    ids = [
        f"n{i}" + ("_with_a_rather_long_identifier" if rng.random() < 0.15 else "")
        for i in range(count)
    ]
    specs = []
    for number, node_id in enumerate(ids):
        ports = []
        if rng.random() > 0.15:  # else a terminal
            for exit_number in range(rng.randint(1, 6)):
                roll = rng.random()
                if roll < 0.15:
                    target = node_id
                elif roll < 0.7 and number + 1 < count:
                    target = ids[rng.randint(number + 1, count - 1)]
                else:
                    target = rng.choice(ids)
                name = rng.choice(
                    ["next", "ok", "invalid", f"options.{exit_number}", f"cases.v{exit_number}"]
                )
                ports.append(PortSpec(f"{name}{exit_number}", target, exit_text(name, target)))
        specs.append(
            NodeSpec(
                node_id,
                "menu",
                f"menu · {seed}",
                "conversation",
                tuple(ports),
                protected=rng.random() < 0.1,
                terminal=not ports,
            )
        )
    return specs


@pytest.mark.parametrize("seed", range(12))
def test_generated_graphs_are_drawn_without_overlaps(seed: int) -> None:
    specs = random_graph(seed)
    layout = layout_graph(specs, specs[0].id)
    check(layout, specs)
    assert layout_graph(specs, specs[0].id) == layout


def test_a_cycle_is_broken_where_the_walk_returns() -> None:
    def spec(node_id: str, *targets: str) -> NodeSpec:
        ports = tuple(
            PortSpec(f"options.{n}", t, exit_text(f"options.{n}", t)) for n, t in enumerate(targets)
        )
        return NodeSpec(node_id, "menu", "menu", "conversation", ports)

    specs = [
        spec("a", "b"),
        spec("b", "c", "b"),
        spec("c", "a", "d"),
        spec("d"),
        spec("island", "d"),
    ]
    layout = layout_graph(specs, "a")
    check(layout, specs)
    assert [layout.nodes[n].layer for n in "abcd"] == [0, 1, 2, 3]
    back = [(e.source, e.target) for e in layout.edges if e.back and not e.loop]
    assert back == [("c", "a")]
    assert [e.source for e in layout.edges if e.loop] == ["b"]
    assert layout.nodes["island"].layer == 0  # unreachable, still placed


def test_long_labels_are_cut_and_keep_their_full_text() -> None:
    target = "t" * 80
    specs = [
        NodeSpec(
            "s",
            "say",
            "say",
            "conversation",
            (PortSpec("next", target, exit_text("next", target)),),
        ),
        NodeSpec(target, "hangup", "hangup", "terminal", (), terminal=True),
    ]
    layout = layout_graph(specs, "s")
    check(layout, specs)
    label = layout.nodes["s"].ports[0].label
    assert label.text.endswith("…") and len(label.text) == 46
    assert label.full == f"next → {target}"
