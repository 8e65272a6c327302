"""Whole-flow checks that need every node at once: references and graph shape.

A flow passes only if every transition lands on a node, every prompt exists in
every language, every node is reachable, no loop can spin without the caller
being asked something, and failure exits cannot loop back onto their own node.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields

from ivr.errors import DefinitionProblem
from ivr.flow.model import (
    FACTS,
    LANGUAGE,
    BranchNode,
    Catalog,
    CheckAccountDigitsNode,
    CollectDigitsNode,
    InputNode,
    Node,
    TransferNode,
    parse_target,
)


def validate_flow(
    file: str,
    start: str,
    nodes: Mapping[str, Node],
    languages: list[str],
    catalog: Catalog,
    default_region: str,
    problems: list[DefinitionProblem],
    partial: bool = False,
) -> None:
    """Append every problem of the flow's graph and references to `problems`.

    `partial` is set when some nodes failed to parse: transitions to them are then
    not reported again, since the node exists in the file.
    """

    def problem(node: Node | None, field_name: str, message: str) -> None:
        problems.append(
            DefinitionProblem(file, node.id if node else "", field_name, message, node.line if node else None)
        )

    if start not in nodes and not partial:
        problems.append(DefinitionProblem(file, "", "start", f"no node {start!r}"))
    for node in nodes.values():
        if not partial:
            for label, target in node.transitions().items():
                if target not in nodes:
                    problem(node, label, f"goes to {target!r}, which is not a node of this flow")
        _check_prompts(node, languages, catalog, problem)
        _check_kind(node, languages, default_region, problem)
    if partial or start not in nodes:
        return
    reachable = _reachable(start, nodes)
    for node_id, node in nodes.items():
        if node_id not in reachable:
            problem(node, "", "unreachable: no path from the start node leads here")
    for cycle_node in _silent_cycles(nodes):
        problem(
            cycle_node, "",
            "can enter a loop that never asks the caller anything; the call would spin forever",
        )


def _check_prompts(node: Node, languages: list[str], catalog: Catalog, problem) -> None:  # type: ignore[no-untyped-def]
    for field_name, key in node.prompts().items():
        missing = [lang for lang in languages if key not in catalog.languages[lang].texts]
        if missing:
            problem(node, field_name, f"prompt {key!r} is missing in: " + ", ".join(missing))


def _check_kind(node: Node, languages: list[str], default_region: str, problem) -> None:  # type: ignore[no-untyped-def]
    """Rules that belong to one node kind."""
    for spec in fields(node):
        if spec.metadata.get("ref") == LANGUAGE:
            for key, language in getattr(node, spec.name).items():
                if language not in languages:
                    problem(node, f"{spec.name}.{key}", f"{language!r} is not one of the flow's languages")
    if isinstance(node, InputNode):
        for exit_name in ("no_input", "too_many_tries"):
            if getattr(node, exit_name) == node.id:
                problem(node, exit_name, "must lead away from the node (it would retry forever)")
    if isinstance(node, CheckAccountDigitsNode) and node.mode == "last4" and node.ambiguous is None:
        problem(
            node, "ambiguous",
            "missing: last4 mode needs an exit for when several accounts on the number end in the same digits",
        )
    if isinstance(node, CollectDigitsNode) and node.min_length > node.max_length:
        problem(node, "min_length", "is greater than max_length")
    if isinstance(node, BranchNode):
        allowed = set(languages) if node.on == "language" else FACTS.get(node.on, frozenset())
        for key in node.cases:
            if key not in allowed:
                problem(node, f"cases.{key}", f"{node.on} is never {key!r}; it is one of: " + ", ".join(sorted(allowed)))
    if isinstance(node, TransferNode) and node.target is not None:
        try:
            parse_target(node.target, default_region)
        except ValueError as exc:
            problem(node, "target", str(exc))


def _reachable(start: str, nodes: Mapping[str, Node]) -> set[str]:
    seen: set[str] = set()
    pending = [start]
    while pending:
        node_id = pending.pop()
        if node_id in seen or node_id not in nodes:
            continue
        seen.add(node_id)
        pending.extend(nodes[node_id].transitions().values())
    return seen


def _silent_cycles(nodes: Mapping[str, Node]) -> list[Node]:
    """Nodes on a cycle made only of nodes that never wait for the caller."""
    silent = {
        node_id: [t for t in node.transitions().values() if t in nodes]
        for node_id, node in nodes.items()
        if not isinstance(node, (InputNode, TransferNode))
    }
    # Iteratively drop silent nodes with no silent successor; what remains cycles.
    remaining = dict(silent)
    changed = True
    while changed:
        changed = False
        for node_id, targets in list(remaining.items()):
            if not any(t in remaining for t in targets):
                del remaining[node_id]
                changed = True
    return [nodes[node_id] for node_id in sorted(remaining)]

