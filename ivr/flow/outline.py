"""An outline of one loaded flow: its nodes in the order a caller meets them.

The YAML lists nodes in whatever order their authors wrote them; reading a call
path means jumping around the file. The outline walks the graph breadth-first
from the start node (nodes no path reaches come last, though the loader refuses
them), one line per node with its exits, menu keys and transfer targets
indented below, and optionally the prompt texts in one language.

`outline_rows` gives the same content as plain data for a web page; `outline`
writes it for a terminal. Both read the node dataclasses generically (node and
language references, choice fields, prompt fields), so a new node kind needs
nothing here.
"""

from __future__ import annotations

import dataclasses
import sys
import textwrap
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from ivr.flow.diff import type_name
from ivr.flow.model.base import LANGUAGE, NODE, Node
from ivr.flow.model.flow import Catalog, Flow
from ivr.flow.model.split import SplitNode
from ivr.flow.model.transfer import TransferNode

_WRAP = 100
# Said of a transfer with no target of its own (the engine dials the configured one).
CONFIGURED_TARGET = "the configured agent target"


@dataclass(frozen=True)
class OutlineRow:
    """One node as the outline shows it.

    `settings` are its choice fields (channel, mode, on, reason); `exits` its single
    transitions (exit → node id); `keys` its keyed transitions (menu or language
    options, branch cases: key → node id or language); `transfer` where a transfer
    goes; `prompts` field → prompt key, and `texts` field → text in the language
    asked for (empty without one); `shares` a split's exit → percentage of calls.
    """

    node: str
    type: str
    reachable: bool
    settings: dict[str, str]
    exits: dict[str, str]
    keys: dict[str, str]
    transfer: str | None
    prompts: dict[str, str]
    texts: dict[str, str]
    shares: dict[str, int] = dataclasses.field(default_factory=dict)


def node_order(flow: Flow) -> list[str]:
    """Node ids breadth-first from the start, following exits in field order;
    nodes no path reaches follow, in file order."""
    reached = _breadth_first(flow)
    return reached + [node_id for node_id in flow.nodes if node_id not in reached]


def outline_rows(flow: Flow, catalog: Catalog, language: str | None = None) -> list[OutlineRow]:
    """Every node of the flow as an OutlineRow, in `node_order`.

    Raises ValueError when `language` is not one the flow offers.
    """
    if language is not None and language not in flow.languages:
        raise ValueError(
            f"flow {flow.name} does not offer {language!r}; it offers " + ", ".join(flow.languages)
        )
    reachable = set(_breadth_first(flow))
    texts = catalog.languages[language].texts if language is not None else {}
    rows = []
    for node_id in node_order(flow):
        node = flow.nodes[node_id]
        prompts = node.prompts()
        rows.append(
            OutlineRow(
                node=node_id,
                type=type_name(node),
                reachable=node_id in reachable,
                settings=_settings(node),
                exits={k: v for k, v in _transitions(node) if "." not in k},
                keys=_keys(node),
                transfer=_transfer(node),
                prompts=prompts,
                texts={name: texts[key] for name, key in prompts.items() if key in texts},
                shares=dict(node.shares) if isinstance(node, SplitNode) else {},
            )
        )
    return rows


def outline(flow: Flow, catalog: Catalog, language: str | None = None) -> str:
    """The flow as text for a terminal: a header, then one line per node with details below."""
    lines = [
        f"flow {flow.name}  version {flow.version}",
        f"  languages: {', '.join(flow.languages)}  start: {flow.start}"
        f"  max_inputs: {flow.max_inputs}",
    ]
    if flow.description:
        lines.extend(
            textwrap.wrap(flow.description, _WRAP, initial_indent="  ", subsequent_indent="  ")
        )
    rows = outline_rows(flow, catalog, language)
    id_width = max(len(row.node) for row in rows)
    type_width = max(len(_kind(row)) for row in rows)
    first_unreachable = next((row.node for row in rows if not row.reachable), None)
    lines.append("")
    for row in rows:
        if not row.reachable and row.node == first_unreachable:
            lines.extend(["", "unreachable (no path from the start leads here):"])
        exits = ", ".join(f"{name} → {target}" for name, target in row.exits.items())
        # A node whose only ways on are keyed (a split's exits) lists them below instead.
        exits = exits or ("" if row.keys else "(ends the call)")
        line = f"{row.node:<{id_width}}  {_kind(row):<{type_width}}  {exits}"
        lines.append(line.rstrip())
        lines.extend(_details(row))
    return "\n".join(lines) + "\n"


def _breadth_first(flow: Flow) -> list[str]:
    """The ids of every node a path from the start reaches, nearest first."""
    order = [flow.start]
    queue = deque(order)
    while queue:
        for _, target in _transitions(flow.nodes[queue.popleft()]):
            if target in flow.nodes and target not in order:
                order.append(target)
                queue.append(target)
    return order


def _transitions(node: Node) -> list[tuple[str, str]]:
    """The node's transitions in the order its YAML wrote them (defaults last), so the
    outline reads like the file and the walk takes the main path (ok, next) first."""
    return sorted(
        node.transitions().items(),
        key=lambda item: node.key_lines.get(item[0].split(".")[0], sys.maxsize),
    )


def _settings(node: Node) -> dict[str, str]:
    """The node's choice fields: what kind of send, check or branch it is."""
    return {
        spec.name: str(getattr(node, spec.name))
        for spec in dataclasses.fields(node)
        if spec.metadata.get("choices") and getattr(node, spec.name) is not None
    }


def _keys(node: Node) -> dict[str, str]:
    """Keyed transitions (menu keys, branch cases) and language options, key → target."""
    keys: dict[str, str] = {}
    for spec in dataclasses.fields(node):
        value = getattr(node, spec.name)
        if spec.metadata.get("ref") in (NODE, LANGUAGE) and isinstance(value, Mapping):
            keys.update({str(key): str(target) for key, target in value.items()})
    return keys


def _transfer(node: Node) -> str | None:
    if not isinstance(node, TransferNode):
        return None
    if node.destination is None:
        return CONFIGURED_TARGET
    target = node.destination
    holding = [
        f"hold prompt {target.hold_prompt}" if target.hold_prompt else "",
        f"music {target.hold_music}" if target.hold_music else "",
        f"at most {target.max_wait} s on hold" if target.max_wait else "",
        f"position and wait every {target.announce_every} s" if target.announce_every else "",
        f"call-back offered after {target.offer_callback_after} s"
        if target.offer_callback_after
        else "",
    ]
    extra = ", ".join(part for part in holding if part)
    return f"{target.label} ({extra})" if extra else target.label


def _share(row: OutlineRow, key: str) -> str:
    """A split exit's share of calls after it (` (30%)`); nothing for other keys."""
    return f" ({row.shares[key]}%)" if key in row.shares else ""


def _kind(row: OutlineRow) -> str:
    return f"{row.type} ({', '.join(row.settings.values())})" if row.settings else row.type


def _details(row: OutlineRow) -> list[str]:
    """The indented lines under a node: keys, transfer target, prompt texts."""
    lines = [f"    {key} → {target}{_share(row, key)}" for key, target in row.keys.items()]
    if row.transfer is not None:
        lines.append(f"    target: {row.transfer}")
    for name, text in row.texts.items():
        head = f"    {name} ({row.prompts[name]}): "
        lines.extend(
            textwrap.wrap(
                f'"{text}"',
                _WRAP,
                initial_indent=head,
                subsequent_indent=" " * (len(head) + 1),
                break_on_hyphens=False,
            )
        )
    return lines
