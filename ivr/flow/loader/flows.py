"""Reads one `flows/<name>.yaml` into a Flow: its top-level keys, then its nodes.

Each node is parsed by `nodes`; the whole graph is then checked by
`ivr.flow.validate`, and transfer targets are resolved once, here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import replace
from types import MappingProxyType

from ivr.errors import DefinitionProblem
from ivr.flow import yamlread
from ivr.flow.loader.files import Source, read_yaml, unknown_keys
from ivr.flow.loader.nodes import mentioned_ids, parse_node
from ivr.flow.model.base import Node
from ivr.flow.model.flow import SYSTEM_PROMPTS, Catalog, Flow
from ivr.flow.model.transfer import TransferNode
from ivr.flow.validate import PartialNode, validate_flow

FLOW_KEYS = {
    "name": "the flow's name (matches the file name)",
    "description": "what the flow is for",
    "start": "the id of the first node",
    "languages": "the languages offered, default first",
    "max_inputs": "cap on keypad prompts in one call (bounds every loop)",
    "nodes": "the nodes, by id",
}
REQUIRED_FLOW_KEYS = ("name", "start", "languages", "nodes")
# Prompts the service words by name at run time (a reason, a method, a risk flag...).
SERVICE_PREFIXES = (
    "method_",
    "reason_",
    "whisper_",
    "message_",
    "callback_",
    "read_code_",
    "closed_",  # an emergency closure's message, chosen by ops at close time
)


def load_flow(
    source: Source, catalog: Catalog, default_region: str
) -> tuple[Flow | None, list[DefinitionProblem]]:
    """Parse and validate one flow file against the prompt catalog."""
    problems: list[DefinitionProblem] = []
    file = source.name
    data = read_yaml(source, problems)
    if data is None:
        return None, problems
    if not isinstance(data, yamlread.LineDict):
        return None, [DefinitionProblem(file, "", "", "a flow file must be a mapping", 1)]
    unknown_keys(data, FLOW_KEYS, file, "", problems)
    for key in REQUIRED_FLOW_KEYS:
        if key not in data:
            problems.append(
                DefinitionProblem(file, "", key, f"missing ({FLOW_KEYS[key]})", data.line)
            )

    name = data.get("name")
    if "name" in data and name != source.stem:
        problems.append(
            DefinitionProblem(
                file, "", "name", f"must be {source.stem!r}, the file's name", data.line_of("name")
            )
        )
    languages = _languages(data, file, catalog, problems)
    max_inputs = data.get("max_inputs", 40)
    if (
        not isinstance(max_inputs, int)
        or isinstance(max_inputs, bool)
        or not 5 <= max_inputs <= 200
    ):
        problems.append(
            DefinitionProblem(
                file,
                "",
                "max_inputs",
                "must be a whole number from 5 to 200",
                data.line_of("max_inputs"),
            )
        )
        max_inputs = 40

    nodes: dict[str, Node] = {}
    unparsed: dict[str, set[str]] = {}
    partial_nodes: dict[str, PartialNode] = {}
    raw_nodes = data.get("nodes")
    if "nodes" in data and (not isinstance(raw_nodes, yamlread.LineDict) or not raw_nodes):
        problems.append(
            DefinitionProblem(
                file, "", "nodes", "must be a mapping of node id: node", data.line_of("nodes")
            )
        )
    elif isinstance(raw_nodes, yamlread.LineDict):
        for node_id, raw in raw_nodes.items():
            node = parse_node(node_id, raw, raw_nodes.line_of(node_id), file, problems)
            if isinstance(node, Node):
                nodes[node_id] = node
            else:
                unparsed[node_id] = mentioned_ids(raw, set(raw_nodes))
                if node is not None:
                    partial_nodes[node_id] = node

    start = data.get("start")
    description = data.get("description", "")
    if isinstance(start, str) and (nodes or unparsed):
        # Checked even when some nodes are broken, so one run reports every problem.
        validate_flow(
            file,
            start,
            nodes,
            languages,
            catalog,
            default_region,
            problems,
            unparsed,
            partial_nodes,
        )
    elif "start" in data:
        problems.append(
            DefinitionProblem(file, "", "start", "must be a node id", data.line_of("start"))
        )
    if problems:
        return None, problems
    assert isinstance(start, str) and isinstance(name, str)
    # Resolve transfer targets now (validated above), so no call ever parses one.
    for node_id, node in nodes.items():
        if isinstance(node, TransferNode) and node.target:
            nodes[node_id] = replace(node, destination=node.resolve(default_region))
    flow = Flow(
        name=name,
        file=file,
        version=content_version(source, nodes.values(), languages, catalog),
        description=str(description),
        start=start,
        languages=tuple(languages),
        nodes=MappingProxyType(nodes),
        max_inputs=max_inputs,
    )
    return flow, []


def _languages(
    data: yamlread.LineDict, file: str, catalog: Catalog, problems: list[DefinitionProblem]
) -> list[str]:
    languages = data.get("languages")
    line = data.line_of("languages")
    if "languages" not in data:
        return []
    if (
        not isinstance(languages, list)
        or not languages
        or not all(isinstance(x, str) for x in languages)
    ):
        problems.append(
            DefinitionProblem(file, "", "languages", "must be a list of language codes", line)
        )
        return []
    for language in languages:
        if language not in catalog.languages:
            problems.append(
                DefinitionProblem(file, "", "languages", f"no prompt file for {language!r}", line)
            )
    return [x for x in languages if x in catalog.languages]


def content_version(
    source: Source, nodes: Iterable[Node], languages: Iterable[str], catalog: Catalog
) -> str:
    """A content hash of the flow file and of the prompts it can speak, in its languages:
    the version a call pins and a publish stores.

    Only the prompts this flow uses count (those its nodes name, and the service's own
    prompts — whisper, messages, apologies), so editing another flow's prompt in a
    shared prompt file leaves this flow's version as it was.
    """
    digest = hashlib.sha256(source.text.encode("utf-8"))
    named = {key for node in nodes for key in node.prompts().values()}
    for language in sorted(languages):
        prompts = catalog.languages[language]
        used = {
            key: text
            for key, text in prompts.texts.items()
            if key in named or key in SYSTEM_PROMPTS or key.startswith(SERVICE_PREFIXES)
        }
        spoken = {"language": language, "voice": prompts.voice, "prompts": used}
        digest.update(json.dumps(spoken, sort_keys=True, ensure_ascii=False).encode("utf-8"))
    return digest.hexdigest()[:12]
