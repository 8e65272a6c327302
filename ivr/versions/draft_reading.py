"""Reading a draft as the console shows it: its languages, nodes and prompt texts as
the strict reader reads them, the nodes that parse on their own, and a sketch of the
flow to draw when the whole does not load (a proof fails, a prompt is missing).

Apart from the store and the edits (`ivr.versions.drafts`): these only read, never
raise for a broken file (a page must still show what it can), and remember what they
parsed, since one page reads the same files many times. No Flask here.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import fields
from types import MappingProxyType
from typing import Any

import yaml

from ivr.errors import DefinitionProblem
from ivr.flow import yamlread
from ivr.flow.loader.nodes import parse_node
from ivr.flow.model import Flow, Node
from ivr.storage.models import FlowDraft
from ivr.versions import store


def flow_file(draft: FlowDraft) -> str:
    return store.flow_path(draft.flow)


def languages(draft: FlowDraft) -> list[str]:
    """The flow's languages that have a prompt file in the draft, default first."""
    raw = data_of(draft, flow_file(draft))
    listed = raw.get("languages") if isinstance(raw, dict) else None
    names = [x for x in listed if isinstance(x, str)] if isinstance(listed, list) else []
    return [x for x in names if store.prompt_path(x) in draft.files]


def raw_nodes(draft: FlowDraft) -> dict[str, Any]:
    """The flow file's nodes as the strict reader reads them ({} when it does not)."""
    raw = data_of(draft, flow_file(draft))
    nodes = raw.get("nodes") if isinstance(raw, dict) else None
    return dict(nodes) if isinstance(nodes, dict) else {}


def prompt_texts(draft: FlowDraft, language: str) -> dict[str, str]:
    """The prompt texts of one language as written (folded text unfolded)."""
    raw = data_of(draft, store.prompt_path(language))
    texts = raw.get("prompts") if isinstance(raw, dict) else None
    if not isinstance(texts, dict):
        return {}
    return {key: value for key, value in texts.items() if isinstance(value, str)}


def parsed_nodes(draft: FlowDraft) -> dict[str, Node]:
    """Every node of the draft that parses on its own (its fields, not its targets)."""
    result: dict[str, Node] = {}
    ignored: list[DefinitionProblem] = []
    for node_id, raw in raw_nodes(draft).items():
        node = parse_node(node_id, raw, None, flow_file(draft), ignored)
        if isinstance(node, Node):
            result[node_id] = node
    return result


def sketch(draft: FlowDraft) -> Flow | None:
    """The draft's flow for drawing when it does not load (a proof fails, a prompt is
    missing): None unless every node parses and every target is a node."""
    raw = data_of(draft, flow_file(draft))
    nodes = parsed_nodes(draft)
    if not isinstance(raw, dict) or not nodes or len(nodes) != len(raw_nodes(draft)):
        return None
    if any(t not in nodes for node in nodes.values() for t in node.transitions().values()):
        return None
    start_node = raw.get("start")
    if start_node not in nodes:
        return None
    text = draft.files[flow_file(draft)]
    return Flow(
        name=draft.flow,
        file=flow_file(draft),
        # Diagrams are laid out once per (flow, version): a sketch's "version" is its text.
        version="draft-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:12],
        description=str(raw.get("description", "")),
        start=str(start_node),
        languages=tuple(languages(draft)),
        nodes=MappingProxyType(nodes),
        max_inputs=40,
    )


def prompt_users(draft: FlowDraft) -> dict[str, list[str]]:
    """Prompt key → the nodes whose fields name it."""
    users: dict[str, list[str]] = {}
    for node_id, node in parsed_nodes(draft).items():
        for key in node.prompts().values():
            users.setdefault(key, [])
            if node_id not in users[key]:
                users[key].append(node_id)
    return users


def editable_fields(node_class: type[Node]) -> list[str]:
    """The fields of a node kind that YAML sets (the loader's allowed keys but `type`)."""
    return [spec.name for spec in fields(node_class) if not spec.metadata.get("internal")]


def data_of(draft: FlowDraft, path: str) -> Any:
    """A file of the draft as the strict reader reads it (None: missing or unreadable)."""
    text = draft.files.get(path)
    return None if text is None else parsed(text)


@functools.lru_cache(maxsize=32)
def parsed(text: str) -> Any:
    """A file as the strict reader reads it, or None; remembered, since one page reads
    the same files many times (callers only read the result)."""
    try:
        return yamlread.read(text)
    except yaml.YAMLError:
        return None
