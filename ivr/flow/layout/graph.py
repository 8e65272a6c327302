"""The layered graph behind the drawing: each node's layer (longest path, cycles broken
where a depth-first walk returns), a waypoint per column an edge crosses, and the order
of each column (barycenter sweeps, fewest crossings kept). Items are numbered; a node's
item comes first, in the walk's order."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ivr.flow.layout.shapes import BOTTOM_PAD, ENTRY, HEADER, ROW, WAYPOINT_HEIGHT, NodeSpec


@dataclass
class Item:
    """A box in a column: a node, or an edge's waypoint."""

    layer: int
    height: float
    node: str | None = None  # None: a waypoint
    y: float = 0.0


@dataclass
class Link:
    """Two items in neighbouring columns joined by (part of) an edge; `*_at` is the
    height of the join below each item's top, `*_rank` its place among the item's joins."""

    left: int
    right: int
    left_at: float
    right_at: float
    left_rank: float = 0.0
    right_rank: float = 0.0


@dataclass
class Chain:
    """The waypoints of the edges from one node to another, in the order drawn."""

    source: str
    target: str
    back: bool
    ports: list[int] = field(default_factory=list)
    waypoints: list[int] = field(default_factory=list)


def layers(
    by_id: Mapping[str, NodeSpec], start: str
) -> tuple[dict[str, int], set[tuple[str, str]], list[str]]:
    """Each node's layer, the back edges (source, target) and the walk's order of nodes."""
    state: dict[str, int] = {}  # 1: on the walk's path, 2: done
    back: set[tuple[str, str]] = set()
    finished: list[str] = []
    walk: list[str] = []
    roots = [start, *(node_id for node_id in by_id if node_id != start)]
    for root in roots:
        if root in state:
            continue
        state[root] = 1
        walk.append(root)
        stack: list[tuple[str, int]] = [(root, 0)]
        while stack:
            node_id, next_port = stack[-1]
            ports = by_id[node_id].ports
            if next_port == len(ports):
                stack.pop()
                state[node_id] = 2
                finished.append(node_id)
                continue
            stack[-1] = (node_id, next_port + 1)
            target = ports[next_port].target
            if target == node_id:
                continue
            if state.get(target) == 1:
                back.add((node_id, target))
            elif target not in state:
                state[target] = 1
                walk.append(target)
                stack.append((target, 0))
    layer = {node_id: 0 for node_id in by_id}
    for node_id in reversed(finished):  # a topological order of the forward edges
        for port in by_id[node_id].ports:
            target = port.target
            if target != node_id and (node_id, target) not in back:
                layer[target] = max(layer[target], layer[node_id] + 1)
    return layer, back, walk


def node_height(spec: NodeSpec) -> float:
    """A node box's height: the header and a row per exit."""
    return HEADER + ROW * len(spec.ports) + BOTTOM_PAD


def port_at(port: int) -> float:
    """The height of an exit row's middle below the box's top."""
    return HEADER + ROW * port + ROW / 2


def edge_chains(
    by_id: Mapping[str, NodeSpec],
    walk: Sequence[str],
    layer: Mapping[str, int],
    back: set[tuple[str, str]],
    items: list[Item],
) -> list[Chain]:
    """One chain per (source, target) pair: the edges of a node's several exits to the
    same target share their waypoints."""
    chains: dict[tuple[str, str], Chain] = {}
    for node_id in walk:
        for number, port in enumerate(by_id[node_id].ports):
            if port.target == node_id:
                continue
            key = (node_id, port.target)
            chain = chains.get(key)
            if chain is None:
                chain = chains[key] = Chain(node_id, port.target, key in back)
                source_layer, target_layer = layer[node_id], layer[port.target]
                crossed = (
                    range(source_layer, target_layer, -1)
                    if chain.back
                    else range(source_layer + 1, target_layer)
                )
                for column in crossed:
                    chain.waypoints.append(len(items))
                    items.append(Item(column, WAYPOINT_HEIGHT))
            chain.ports.append(number)
    return list(chains.values())


def _rank(port: int, count: int) -> float:
    """A port's place within its node for ordering, between -0.4 and 0.4."""
    return 0.8 * (port + 1) / (count + 1) - 0.4


def column_links(
    by_id: Mapping[str, NodeSpec],
    index: Mapping[str, int],
    chains: Sequence[Chain],
    items: Sequence[Item],
) -> tuple[list[Link], list[tuple[int, int, float, float]]]:
    """The joins between neighbouring columns, and each back edge's first waypoint
    attached to its source in the same column: (waypoint, node, height, rank)."""
    links: list[Link] = []
    attached: list[tuple[int, int, float, float]] = []
    middle = WAYPOINT_HEIGHT / 2
    for chain in chains:
        source, target = index[chain.source], index[chain.target]
        count = len(by_id[chain.source].ports)
        if not chain.back:
            after = chain.waypoints[0] if chain.waypoints else target
            after_at = middle if chain.waypoints else ENTRY
            for port in chain.ports:
                links.append(
                    Link(source, after, port_at(port), after_at, _rank(port, count), -0.45)
                )
            steps = [*chain.waypoints, target]
            for left, right in itertools.pairwise(steps):
                right_at = ENTRY if right == target else middle
                links.append(
                    Link(left, right, middle, right_at, 0.0, -0.45 if right == target else 0.0)
                )
        else:
            steps = [target, *reversed(chain.waypoints)]  # left to right
            for left, right in itertools.pairwise(steps):
                left_at = ENTRY if left == target else middle
                links.append(
                    Link(left, right, left_at, middle, -0.45 if left == target else 0.0, 0.0)
                )
            first = chain.waypoints[0]
            for port in chain.ports:
                attached.append((first, source, port_at(port), _rank(port, count)))
    return links, attached


def ordered_columns(
    items: Sequence[Item],
    links: Sequence[Link],
    attached: Sequence[tuple[int, int, float, float]],
) -> list[list[int]]:
    """Each column's items top to bottom, after barycenter sweeps (fewest crossings kept)."""
    count = max(item.layer for item in items) + 1
    columns: list[list[int]] = [[] for _ in range(count)]
    for number, item in enumerate(items):
        columns[item.layer].append(number)
    from_left: dict[int, list[tuple[int, float]]] = {}
    from_right: dict[int, list[tuple[int, float]]] = {}
    for link in links:
        from_left.setdefault(link.right, []).append((link.left, link.left_rank))
        from_right.setdefault(link.left, []).append((link.right, link.right_rank))
    for waypoint, node, _, rank in attached:
        from_left.setdefault(waypoint, []).append((node, rank))
        from_right.setdefault(waypoint, []).append((node, rank))
    best = [list(column) for column in columns]
    fewest = _crossings(best, links)
    for _ in range(8):
        for sweep, neighbours in (
            (range(1, count), from_left),
            (range(count - 2, -1, -1), from_right),
        ):
            for column in sweep:
                place = {item: n for col in columns for n, item in enumerate(col)}

                def centre(
                    item: int,
                    place: dict[int, int] = place,
                    neighbours: dict[int, list[tuple[int, float]]] = neighbours,
                ) -> float:
                    joined = neighbours.get(item)
                    if not joined:
                        return float(place[item])
                    return sum(place[other] + rank for other, rank in joined) / len(joined)

                columns[column].sort(key=lambda item: (centre(item), place[item]))
            crossings = _crossings(columns, links)
            if crossings < fewest:
                fewest, best = crossings, [list(column) for column in columns]
    return best


def _crossings(columns: Sequence[Sequence[int]], links: Sequence[Link]) -> int:
    """How many pairs of joins between neighbouring columns cross."""
    place = {item: n for column in columns for n, item in enumerate(column)}
    by_gap: dict[int, list[tuple[float, float]]] = {}
    layer_of = {item: layer for layer, column in enumerate(columns) for item in column}
    for link in links:
        by_gap.setdefault(layer_of[link.left], []).append(
            (place[link.left] + link.left_rank, place[link.right] + link.right_rank)
        )
    total = 0
    for joins in by_gap.values():
        for n, (a1, b1) in enumerate(joins):
            for a2, b2 in joins[n + 1 :]:
                if (a1 - a2) * (b1 - b2) < 0:
                    total += 1
    return total
