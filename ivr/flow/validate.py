"""Whole-flow checks that need every node at once: references and graph shape.

A flow passes only if every transition lands on a node, every prompt exists in
every language, every node is reachable, no loop can spin without the caller
being asked something, and failure exits cannot loop back onto their own node.
A flow that passes all that must also pass the path proofs of `ivr.flow.proofs`.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import urlsplit

from ivr.errors import DefinitionProblem
from ivr.flow.engine import speech
from ivr.flow.model import (
    FACTS,
    HOLDING_KINDS,
    LANGUAGE,
    MESSAGE_PREFIX,
    NODE,
    PROMPT,
    READ_CODE_PREFIX,
    BranchNode,
    Catalog,
    CheckAccountDigitsNode,
    CollectDigitsNode,
    InputNode,
    MenuNode,
    Node,
    SendCodeNode,
    TransferNode,
    VoicemailNode,
    parse_target,
)
from ivr.flow.model.transfer import HOLD_PLACEHOLDERS
from ivr.flow.proofs import prove_flow

# A transfer node's settings for the time the caller holds in a queue.
HOLD_FIELDS = (
    "hold_prompt",
    "hold_music",
    "queue_max_wait",
    "announce_every",
    "offer_callback_after",
    "callback_offer_prompt",
)
# The call-back offer also applies to the configured target, when that one holds.
CALLBACK_FIELDS = ("offer_callback_after", "callback_offer_prompt")
MAX_URL_LENGTH = 2048


@dataclass(frozen=True)
class PartialNode:
    """A node that failed to parse, with the fields that did: those are still checked."""

    id: str
    kind: type[Node]
    values: Mapping[str, Any]
    key_lines: Mapping[str, int]
    line: int | None

    def line_of(self, field_name: str) -> int | None:
        return self.key_lines.get(field_name.split(".")[0], self.line)

    def transitions(self) -> dict[str, str]:
        return _refs(self.kind, self.values, NODE)

    def prompts(self) -> dict[str, str]:
        return _refs(self.kind, self.values, PROMPT)


Report = Callable[["Node | PartialNode | None", str, str], None]


def _refs(kind: type[Node], values: Mapping[str, Any], ref: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for spec in fields(kind):
        value = values.get(spec.name)
        if spec.metadata.get("ref") != ref or not value:
            continue
        if isinstance(value, str):
            result[spec.name] = value
        elif isinstance(value, Mapping):
            result.update({f"{spec.name}.{key}": target for key, target in value.items()})
    return result


def validate_flow(
    file: str,
    start: str,
    nodes: Mapping[str, Node],
    languages: list[str],
    catalog: Catalog,
    default_region: str,
    problems: list[DefinitionProblem],
    unparsed: Mapping[str, set[str]] | None = None,
    partial_nodes: Mapping[str, PartialNode] | None = None,
) -> None:
    """Append every problem of the flow's graph and references to `problems`.

    `unparsed` holds the nodes that failed to parse, with the node ids their raw
    values mention: they still count as existing targets and as links, so one
    broken node does not hide the problems of the rest of the flow.
    """
    unparsed = unparsed or {}
    known = set(nodes) | set(unparsed)

    def problem(node: Node | PartialNode | None, field_name: str, message: str) -> None:
        problems.append(
            DefinitionProblem(
                file,
                node.id if node else "",
                field_name,
                message,
                node.line_of(field_name) if node else None,
            )
        )

    if start not in known:
        problems.append(DefinitionProblem(file, "", "start", f"no node {start!r}"))
    checked: list[Node | PartialNode] = [*nodes.values(), *(partial_nodes or {}).values()]
    for node in checked:
        for label, target in node.transitions().items():
            if target not in known:
                problem(node, label, f"goes to {target!r}, which is not a node of this flow")
        _check_prompts(node, languages, catalog, problem)
        if isinstance(node, PartialNode):
            _check_exits(node, node.kind, node.values, problem)
        else:
            _check_exits(
                node, type(node), {f.name: getattr(node, f.name) for f in fields(node)}, problem
            )
            _check_kind(node, languages, default_region, problem)
            if isinstance(node, TransferNode) and node.hold_prompt:
                _check_hold_prompt(node, node.hold_prompt, languages, catalog, problem)
            if isinstance(node, MenuNode) and node.speech:
                _check_speech(node, languages, catalog, problem)
    if start not in known:
        return
    links = {node_id: set(node.transitions().values()) for node_id, node in nodes.items()}
    links.update(unparsed)
    reachable = _reachable(start, links)
    for node_id, node in nodes.items():
        if node_id not in reachable:
            problem(node, "", "unreachable: no path from the start node leads here")
    for cycle_node in _silent_cycles(nodes):
        problem(
            cycle_node,
            "",
            "can enter a loop that never asks the caller anything; the call would spin forever",
        )
    if not problems and not unparsed and not partial_nodes:
        # Only an otherwise valid flow: proofs over a broken graph would only confuse.
        problems.extend(prove_flow(file, start, nodes, languages, catalog))


def _check_exits(
    node: Node | PartialNode, kind: type[Node], values: Mapping[str, Any], problem: Report
) -> None:
    """Failure exits of an input node must not lead back to the node itself (nor may the
    locked exit of account digits: the lock would still hold there)."""
    if issubclass(kind, InputNode):
        exits: tuple[str, ...] = ("no_input", "too_many_tries")
        if issubclass(kind, CheckAccountDigitsNode):
            exits += ("locked",)
        for exit_name in exits:
            if values.get(exit_name) == node.id:
                problem(node, exit_name, "must lead away from the node (it would retry forever)")


def _check_prompts(
    node: Node | PartialNode, languages: list[str], catalog: Catalog, problem: Report
) -> None:
    reads_code = {"read_code_prompt"}  # the only field whose prompt is given the code
    for field_name, key in node.prompts().items():
        if key.startswith(MESSAGE_PREFIX):
            problem(node, field_name, f"{key!r} is a message text: it is sent, never spoken")
            continue
        if key.startswith(READ_CODE_PREFIX) != (field_name in reads_code):
            problem(
                node,
                field_name,
                f"{key!r}: only a read_code_prompt reads a code, and its key starts with "
                f"{READ_CODE_PREFIX!r}",
            )
            continue
        missing = [lang for lang in languages if key not in catalog.languages[lang].texts]
        if missing:
            problem(node, field_name, f"prompt {key!r} is missing in: " + ", ".join(missing))


def _check_kind(node: Node, languages: list[str], default_region: str, problem: Report) -> None:
    """Rules that belong to one node kind."""
    for spec in fields(node):
        if spec.metadata.get("ref") == LANGUAGE:
            for key, language in getattr(node, spec.name).items():
                if language not in languages:
                    problem(
                        node,
                        f"{spec.name}.{key}",
                        f"{language!r} is not one of the flow's languages",
                    )
    if isinstance(node, CheckAccountDigitsNode) and node.mode == "last4" and node.ambiguous is None:
        problem(
            node,
            "ambiguous",
            "missing: last4 mode needs an exit for when several accounts on the number"
            " end in the same digits",
        )
    if isinstance(node, SendCodeNode) and node.line_in_use is not None and node.channel != "voice":
        problem(node, "line_in_use", "only a voice code can find the line in use")
    if isinstance(node, CollectDigitsNode) and node.min_length > node.max_length:
        problem(node, "min_length", "is greater than max_length")
    if isinstance(node, BranchNode):
        allowed = set(languages) if node.on == "language" else FACTS.get(node.on, frozenset())
        for key in node.cases:
            if key not in allowed:
                problem(
                    node,
                    f"cases.{key}",
                    f"{node.on} is never {key!r}; it is one of: " + ", ".join(sorted(allowed)),
                )
    if isinstance(node, TransferNode):
        _check_transfer(node, default_region, problem)
    for field_name, message in node.problems(languages):
        problem(node, field_name, message)


def _check_transfer(node: TransferNode, default_region: str, problem: Report) -> None:
    """The target parses; hold settings sit only on a node's own queue or workflow target."""
    kind = None
    if node.target is not None:
        try:
            kind = parse_target(node.target, default_region).kind
        except ValueError as exc:
            problem(node, "target", str(exc))
    for name in HOLD_FIELDS:
        if getattr(node, name) is None:
            continue
        if node.target is None and name in CALLBACK_FIELDS:
            continue  # offered only when the configured target holds (a queue or workflow)
        if node.target is None:
            problem(
                node,
                name,
                "needs the node's own queue: or workflow: target (the configured agent target"
                " may ring a person directly)",
            )
        elif kind is not None and kind not in HOLDING_KINDS:
            problem(node, name, f"only a queue: or workflow: target holds callers, not a {kind}")
    if node.hold_music is not None:
        reason = _https_url_problem(node.hold_music)
        if reason:
            problem(node, "hold_music", reason)


def _check_hold_prompt(
    node: TransferNode, key: str, languages: list[str], catalog: Catalog, problem: Report
) -> None:
    """A hold prompt repeats while the caller waits, read with no call facts: only what
    Twilio tells the waitUrl may fill it ({position}, {minutes})."""
    allowed = ", ".join(f"{{{name}}}" for name in sorted(HOLD_PLACEHOLDERS))
    for language in languages:
        text = catalog.languages[language].texts.get(key, "")
        try:
            used = {name for _, name, _, _ in string.Formatter().parse(text) if name}
        except ValueError:  # bad braces: the prompt loader reports those
            continue
        unknown = sorted(used - HOLD_PLACEHOLDERS)
        if unknown:
            problem(
                node,
                "hold_prompt",
                f"{key!r} uses {', '.join(f'{{{name}}}' for name in unknown)} ({language});"
                f" a hold prompt is read with no call facts, so it may use only {allowed}",
            )
            return


def _check_speech(node: MenuNode, languages: list[str], catalog: Catalog, problem: Report) -> None:
    """Each option's phrases, in every language: at least one, and none that another
    option also lists (those words could never choose either: always ambiguous). One
    problem per option, naming the languages; a missing prompt is reported elsewhere."""
    empty: dict[str, list[str]] = {}
    shared: dict[str, tuple[str, set[str], list[str]]] = {}
    for language in languages:
        texts = catalog.languages[language].texts
        owner: dict[str, str] = {}
        for key, prompt in node.speech.items():
            text = texts.get(prompt)
            if text is None:
                continue
            said = [" ".join(speech.words(phrase)) for phrase in speech.phrases(text)]
            said = [phrase for phrase in said if phrase]
            if not said:
                empty.setdefault(key, []).append(language)
            for phrase in said:
                other = owner.setdefault(phrase, key)
                if other != key:
                    _, phrases, where = shared.setdefault(key, (other, set(), []))
                    phrases.add(phrase)
                    if language not in where:
                        where.append(language)
    for key, where in empty.items():
        prompt = node.speech[key]
        problem(node, f"speech.{key}", f"{prompt!r} lists no phrases ({', '.join(where)})")
    for key, (other, phrases, where) in shared.items():
        listed = ", ".join(repr(phrase) for phrase in sorted(phrases))
        problem(
            node,
            f"speech.{key}",
            f"{listed} listed for keys {other} and {key} ({', '.join(where)}):"
            " a caller saying it would always be asked again",
        )


def _https_url_problem(url: str) -> str | None:
    """Why `url` is not an absolute https URL Twilio can fetch, or None."""
    if len(url) > MAX_URL_LENGTH:
        return f"is {len(url)} characters; at most {MAX_URL_LENGTH}"
    if any(ch.isspace() or ch in '<>"' for ch in url):
        return "must be a URL without spaces, quotes or angle brackets"
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        return "must be an https:// URL of an audio file (mp3 or wav)"
    return None


def _reachable(start: str, links: Mapping[str, set[str]]) -> set[str]:
    seen: set[str] = set()
    pending = [start]
    while pending:
        node_id = pending.pop()
        if node_id in seen or node_id not in links:
            continue
        seen.add(node_id)
        pending.extend(links[node_id])
    return seen


def _silent_cycles(nodes: Mapping[str, Node]) -> list[Node]:
    """Nodes on a cycle made only of nodes that never wait for the caller.

    Account digits wait, except for a locked account: that call goes straight on by
    the locked exit (or too_many_tries), so that way counts as silent."""
    silent = {
        node_id: [t for t in node.transitions().values() if t in nodes]
        for node_id, node in nodes.items()
        if not isinstance(node, (InputNode, TransferNode, VoicemailNode))
    }
    silent.update(
        {
            node_id: [node.locked_exit]
            for node_id, node in nodes.items()
            if isinstance(node, CheckAccountDigitsNode)
        }
    )
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
