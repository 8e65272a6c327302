"""The diagram's data: the geometry constants, the nodes and exits the layout is given
(`NodeSpec`, `PortSpec`) and what it returns (`Layout` of placed nodes, labels and edges).
All coordinates are SVG user units (px at 100%), rounded to one decimal."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

Point = tuple[float, float]

# Text: font sizes (px) and the width of a character (em) the boxes are sized with.
TITLE_SIZE, DETAIL_SIZE, PORT_SIZE = 13.0, 11.0, 12.0
CHAR_WIDTH = 0.62
MAX_CHARS = 46  # longer labels are cut with an ellipsis (the full text goes in a title)
# A node box: the title (id) and detail (type) rows, then one row per exit.
TITLE_BASE, DETAIL_BASE, HEADER = 18.0, 34.0, 42.0
ROW, ROW_BASE, BOTTOM_PAD = 18.0, 13.0, 6.0
ENTRY = 22.0  # where edges come in: the header's side, between title and detail
PAD, BADGE = 10.0, 20.0  # text padding; room for the lock or terminal badge by the title
MIN_WIDTH = 150.0
# The drawing: the gap between columns (edges cross it), the gaps between items of a
# column, the margins (the right one holds the last column's loops).
CHANNEL = 90.0
NODE_GAP, WAYPOINT_GAP, WAYPOINT_HEIGHT = 24.0, 10.0, 2.0
MARGIN, RIGHT_MARGIN = 24.0, 64.0
LOOP, TURN = 14.0, 22.0  # how far a self-loop and a back edge's turn reach into the gap


@dataclass(frozen=True)
class Rect:
    """An axis-aligned box: top-left corner and size."""

    x: float
    y: float
    width: float
    height: float

    @property
    def right(self) -> float:
        return round(self.x + self.width, 1)

    @property
    def bottom(self) -> float:
        return round(self.y + self.height, 1)

    def overlaps(self, other: Rect) -> bool:
        """True when the two boxes share any area (touching edges do not count)."""
        return (
            self.x < other.right
            and other.x < self.right
            and self.y < other.bottom
            and other.y < self.bottom
        )

    def contains(self, point: Point, slack: float = 0.01) -> bool:
        """True when `point` lies in the box or on its border."""
        x, y = point
        return (
            self.x - slack <= x <= self.right + slack and self.y - slack <= y <= self.bottom + slack
        )


@dataclass(frozen=True)
class Label:
    """One line of text: left edge `x`, baseline `y`, font `size`, estimated `width`.

    `text` is what is drawn (cut to MAX_CHARS), `full` the whole text."""

    text: str
    full: str
    x: float
    y: float
    size: float
    width: float

    @property
    def box(self) -> Rect:
        """The room the text takes, ascenders to descenders."""
        return Rect(self.x, self.y - 0.95 * self.size, self.width, 1.2 * self.size)


@dataclass(frozen=True)
class PortSpec:
    """One exit of a node: its field label (`options.1`), its target and its row's text."""

    exit: str
    target: str
    text: str


@dataclass(frozen=True)
class NodeSpec:
    """What the layout needs of a node: its id, kind, detail line, family and exits."""

    id: str
    kind: str
    detail: str
    family: str
    ports: tuple[PortSpec, ...]
    protected: bool = False
    terminal: bool = False


@dataclass(frozen=True)
class PlacedPort:
    """An exit row: its label, and `anchor`, where its edge leaves (the box's right side)."""

    exit: str
    target: str
    label: Label
    anchor: Point


@dataclass(frozen=True)
class PlacedNode:
    """A node's box, its layer (column) and its labels."""

    spec: NodeSpec
    box: Rect
    layer: int
    title: Label
    detail: Label
    ports: tuple[PlacedPort, ...]

    @property
    def entry_left(self) -> Point:
        """Where forward edges end."""
        return (self.box.x, round(self.box.y + ENTRY, 1))

    @property
    def entry_right(self) -> Point:
        """Where back edges and loops end (no exit row is at this height)."""
        return (self.box.right, round(self.box.y + ENTRY, 1))

    @property
    def labels(self) -> tuple[Label, ...]:
        """The node's labels: title, detail, then one per exit."""
        return (self.title, self.detail, *(port.label for port in self.ports))


@dataclass(frozen=True)
class PlacedEdge:
    """One exit drawn: from its port to its target, through `points` (the port, a pair of
    points per column crossed, the target's entry); `path` is the SVG path data.

    `back`: it runs right to left (it closes a cycle); `loop`: it returns to its node."""

    source: str
    exit: str
    target: str
    points: tuple[Point, ...]
    path: str
    back: bool
    loop: bool


@dataclass(frozen=True)
class Layout:
    """The whole drawing: its size, every node placed, every edge routed."""

    width: float
    height: float
    nodes: Mapping[str, PlacedNode]
    edges: tuple[PlacedEdge, ...]

    def labels(self) -> Iterator[Label]:
        """Every text label of the drawing."""
        for node in self.nodes.values():
            yield from node.labels
