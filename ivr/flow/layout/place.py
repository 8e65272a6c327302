"""Heights, boxes, labels and edge paths: the layered graph made into a drawing.

Each column's items are fitted to their neighbours by isotonic regression under the
rule that they keep their order with a gap between them, so boxes never overlap; then
boxes get their column's width and every edge its SVG path, through its waypoints."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

from ivr.flow.layout.graph import Chain, Item, Link, port_at
from ivr.flow.layout.shapes import (
    BADGE,
    CHANNEL,
    CHAR_WIDTH,
    DETAIL_BASE,
    DETAIL_SIZE,
    HEADER,
    LOOP,
    MARGIN,
    MAX_CHARS,
    MIN_WIDTH,
    NODE_GAP,
    PAD,
    PORT_SIZE,
    RIGHT_MARGIN,
    ROW,
    ROW_BASE,
    TITLE_BASE,
    TITLE_SIZE,
    TURN,
    WAYPOINT_GAP,
    WAYPOINT_HEIGHT,
    Label,
    Layout,
    NodeSpec,
    PlacedEdge,
    PlacedNode,
    PlacedPort,
    Point,
    Rect,
)


def _gap(above: Item, below: Item) -> float:
    return NODE_GAP if above.node is not None and below.node is not None else WAYPOINT_GAP


def place_heights(
    items: list[Item],
    columns: Sequence[Sequence[int]],
    links: Sequence[Link],
    attached: Sequence[tuple[int, int, float, float]],
) -> None:
    """Set each item's top: joins as level as they can be, items never overlapping."""
    for stack in columns:
        top = 0.0
        for number in stack:
            items[number].y = top
            top += items[number].height + NODE_GAP
    wishes: dict[int, list[tuple[int, float]]] = {}  # item → (other item, offset)
    for link in links:
        wishes.setdefault(link.right, []).append((link.left, link.left_at - link.right_at))
        wishes.setdefault(link.left, []).append((link.right, link.right_at - link.left_at))
    for waypoint, node, at, _ in attached:
        wishes.setdefault(waypoint, []).append((node, at - WAYPOINT_HEIGHT / 2))
    order = list(range(len(columns)))
    for round_number in range(12):
        for column in order if round_number % 2 == 0 else reversed(order):
            members = columns[column]
            targets, weights = [], []
            for number in members:
                wanted = [items[other].y + offset for other, offset in wishes.get(number, [])]
                targets.append(sum(wanted) / len(wanted) if wanted else items[number].y)
                weights.append(float(len(wanted)) if wanted else 0.2)
            gaps = [
                items[a].height + _gap(items[a], items[b]) for a, b in itertools.pairwise(members)
            ]
            for number, y in zip(members, _fit(targets, weights, gaps), strict=True):
                items[number].y = y
    lowest = min(item.y for item in items)
    for item in items:
        item.y = item.y - lowest + MARGIN


def _fit(targets: Sequence[float], weights: Sequence[float], gaps: Sequence[float]) -> list[float]:
    """The tops nearest `targets` (weighted least squares) with each item at least its
    gap below the one before: isotonic regression by pool-adjacent-violators."""
    offsets = [0.0]
    for gap in gaps:
        offsets.append(offsets[-1] + gap)
    blocks: list[list[float]] = []  # [value, weight, count]
    for target, weight, offset in zip(targets, weights, offsets, strict=True):
        blocks.append([target - offset, weight, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            value, weight_sum, size = blocks.pop()
            previous = blocks[-1]
            total = previous[1] + weight_sum
            previous[0] = (previous[0] * previous[1] + value * weight_sum) / total
            previous[1] = total
            previous[2] += size
    values = [block[0] for block in blocks for _ in range(int(block[2]))]
    return [value + offset for value, offset in zip(values, offsets, strict=True)]


def _label(text: str, x: float, y: float, size: float) -> Label:
    shown = text if len(text) <= MAX_CHARS else text[: MAX_CHARS - 1] + "…"
    return Label(shown, text, round(x, 1), round(y, 1), size, _text_width(shown, size))


def _text_width(text: str, size: float) -> float:
    return round(len(text) * CHAR_WIDTH * size, 1)


def _node_width(spec: NodeSpec) -> float:
    badge = BADGE if spec.protected or spec.terminal else 0.0
    widths = [
        _label(spec.id, 0, 0, TITLE_SIZE).width + badge,
        _label(spec.detail, 0, 0, DETAIL_SIZE).width,
        *(_label(port.text, 0, 0, PORT_SIZE).width for port in spec.ports),
    ]
    return max(MIN_WIDTH, max(widths) + 2 * PAD)


def assemble(
    by_id: Mapping[str, NodeSpec],
    index: Mapping[str, int],
    items: Sequence[Item],
    columns: Sequence[Sequence[int]],
    chains: Sequence[Chain],
) -> Layout:
    """Boxes, labels and edge paths from the items' columns and heights."""
    lefts, rights = [], []
    x = MARGIN
    for column in columns:
        width = max(_node_width(by_id[n]) for n in (items[i].node for i in column) if n)
        lefts.append(x)
        rights.append(round(x + width, 1))
        x = round(x + width + CHANNEL, 1)
    nodes: dict[str, PlacedNode] = {}
    for node_id in by_id:
        item = items[index[node_id]]
        spec = by_id[node_id]
        left, top = lefts[item.layer], round(item.y, 1)
        box = Rect(left, top, round(rights[item.layer] - left, 1), item.height)
        ports = tuple(
            PlacedPort(
                port.exit,
                port.target,
                _label(port.text, left + PAD, top + HEADER + ROW * n + ROW_BASE, PORT_SIZE),
                (box.right, round(top + port_at(n), 1)),
            )
            for n, port in enumerate(spec.ports)
        )
        nodes[node_id] = PlacedNode(
            spec,
            box,
            item.layer,
            _label(spec.id, left + PAD, top + TITLE_BASE, TITLE_SIZE),
            _label(spec.detail, left + PAD, top + DETAIL_BASE, DETAIL_SIZE),
            ports,
        )
    edges: list[PlacedEdge] = []
    turns: dict[str, int] = {}
    for node_id in by_id:
        for port in nodes[node_id].ports:
            if port.target == node_id:
                end = nodes[node_id].entry_right
                edges.append(
                    PlacedEdge(
                        node_id,
                        port.exit,
                        node_id,
                        (port.anchor, end),
                        _loop_path(port.anchor, end, LOOP),
                        back=True,
                        loop=True,
                    )
                )
    for chain in chains:
        middles = [
            (
                lefts[items[w].layer],
                rights[items[w].layer],
                round(items[w].y + WAYPOINT_HEIGHT / 2, 1),
            )
            for w in chain.waypoints
        ]
        source, target = nodes[chain.source], nodes[chain.target]
        for number in chain.ports:
            port = source.ports[number]
            if chain.back:
                reach = TURN + 8 * (turns.get(chain.source, 0) % 4)
                turns[chain.source] = turns.get(chain.source, 0) + 1
                points, path = _back_route(port.anchor, middles, target.entry_right, reach)
            else:
                points, path = _forward_route(port.anchor, middles, target.entry_left)
            edges.append(
                PlacedEdge(chain.source, port.exit, chain.target, points, path, chain.back, False)
            )
    order = {node_id: n for n, node_id in enumerate(by_id)}
    edges.sort(
        key=lambda edge: (
            order[edge.source],
            [p.exit for p in nodes[edge.source].ports].index(edge.exit),
        )
    )
    height = max(node.box.bottom for node in nodes.values()) + MARGIN
    waypoint_bottom = max(item.y + item.height for item in items) + MARGIN
    return Layout(
        round(x - CHANNEL + RIGHT_MARGIN, 1),
        round(max(height, waypoint_bottom), 1),
        nodes,
        tuple(edges),
    )


def _number(value: float) -> str:
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _fmt(point: Point) -> str:
    return f"{_number(point[0])},{_number(point[1])}"


def _across(start: Point, end: Point) -> str:
    """A smooth S-curve through a gap between columns."""
    middle = round((start[0] + end[0]) / 2, 1)
    return f" C{_fmt((middle, start[1]))} {_fmt((middle, end[1]))} {_fmt(end)}"


def _forward_route(
    start: Point, middles: Sequence[tuple[float, float, float]], end: Point
) -> tuple[tuple[Point, ...], str]:
    points: list[Point] = [start]
    path = f"M{_fmt(start)}"
    for left, right, y in middles:
        path += _across(points[-1], (left, y)) + f" L{_fmt((right, y))}"
        points += [(left, y), (right, y)]
    path += _across(points[-1], end)
    points.append(end)
    return tuple(points), path


def _back_route(
    start: Point, middles: Sequence[tuple[float, float, float]], end: Point, reach: float
) -> tuple[tuple[Point, ...], str]:
    """Out of the port, round in the gap right of the source's column, then right to
    left along the waypoints (the first is in the source's own column)."""
    points: list[Point] = [start]
    path = f"M{_fmt(start)}"
    for number, (left, right, y) in enumerate(middles):
        if number == 0:
            path += _loop_path(points[-1], (right, y), reach)[len(f"M{_fmt(start)}") :]
        else:
            path += _across(points[-1], (right, y))
        path += f" L{_fmt((left, y))}"
        points += [(right, y), (left, y)]
    path += _across(points[-1], end)
    points.append(end)
    return tuple(points), path


def _loop_path(start: Point, end: Point, reach: float) -> str:
    """From a point on a column's right side round to another on it, through the gap."""
    x = round(start[0] + reach, 1)
    return f"M{_fmt(start)} C{_fmt((x, start[1]))} {_fmt((x, end[1]))} {_fmt(end)}"
