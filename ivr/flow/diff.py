"""A semantic diff between two loaded versions of one flow: what callers would notice.

A line diff of the YAML shows comments, reordering and indentation, and misses a
prompt edited in another file. This compares the loaded model instead:

- nodes added and removed, and per node the fields that changed, compared field
  by field over the node dataclasses (so a new node kind needs nothing here),
  with mapping fields (menu options, branch cases) compared key by key;
- the flow's own settings (start, languages, max_inputs, description);
- the voice and the texts of every prompt the flow can speak: the prompts its
  nodes reference and the system prompts, in the languages it offers. A prompt
  no node uses cannot reach a caller of this flow, so its edits are not shown.

The result is plain data (`FlowDiff.to_json`) for the ops console; `render_text`
writes it for a terminal, like a code review.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from ivr.flow.model.base import LANGUAGE, NODE, Node
from ivr.flow.model.flow import SYSTEM_PROMPTS, Catalog, Flow
from ivr.flow.model.registry import NODE_TYPES

JSON: TypeAlias = "bool | int | float | str | list[JSON] | dict[str, JSON] | None"

# Flow fields that identify a version rather than describe it (the labels say which).
_NOT_COMPARED = frozenset({"file", "version", "nodes"})
_FLOW_REFS = {"start": NODE, "languages": LANGUAGE}
# Wider than this, a change is shown as `- old` / `+ new` lines rather than `old → new`.
_INLINE_WIDTH = 70
_WRAP = 100


@dataclass(frozen=True)
class FieldChange:
    """One field (or one key of a mapping field, as `options.2`) with its two values.

    None means unset or absent. `ref` says what the values name ("node", "prompt",
    "language"), so a web page can link them.
    """

    field: str
    old: JSON
    new: JSON
    ref: str | None = None


@dataclass(frozen=True)
class NodeEntry:
    """A node present in one version only, with its settings (flattened like FieldChange)."""

    node: str
    type: str
    fields: dict[str, JSON]


@dataclass(frozen=True)
class NodeChange:
    """A node present in both versions whose fields differ; `type` is the new type."""

    node: str
    type: str
    fields: list[FieldChange]


@dataclass(frozen=True)
class PromptChange:
    """A prompt text a caller can hear that differs in one language (None: not spoken there).

    `used_by` lists the nodes that speak it (in the new version, else the old);
    `system` marks a prompt the service speaks outside any node.
    """

    language: str
    key: str
    old: str | None
    new: str | None
    used_by: list[str]
    system: bool


@dataclass(frozen=True)
class VoiceChange:
    """The voice of one language (None: the language is not offered, or Twilio's default)."""

    language: str
    old: str | None
    new: str | None


@dataclass(frozen=True)
class FlowDiff:
    """Everything that differs between two versions of one flow, as plain data."""

    flow: str
    old_version: str
    new_version: str
    flow_changes: list[FieldChange]
    nodes_added: list[NodeEntry]
    nodes_removed: list[NodeEntry]
    nodes_changed: list[NodeChange]
    voices_changed: list[VoiceChange]
    prompts_changed: list[PromptChange]

    @property
    def is_empty(self) -> bool:
        """True when a caller could not tell the two versions apart."""
        parts = (self.flow_changes, self.nodes_added, self.nodes_removed, self.nodes_changed)
        return not any((*parts, self.voices_changed, self.prompts_changed))

    def to_json(self) -> dict[str, Any]:
        """The diff as a dict of plain lists, strings and numbers (for json.dumps)."""
        return {**dataclasses.asdict(self), "is_empty": self.is_empty}


def diff_flows(old: tuple[Flow, Catalog], new: tuple[Flow, Catalog]) -> FlowDiff:
    """Compare two loaded versions of a flow, each with the catalog it was loaded with."""
    old_flow, old_catalog = old
    new_flow, new_catalog = new
    added = [_entry(new_flow.nodes[i]) for i in new_flow.nodes if i not in old_flow.nodes]
    removed = [_entry(old_flow.nodes[i]) for i in old_flow.nodes if i not in new_flow.nodes]
    changed = []
    for node_id, node in new_flow.nodes.items():
        if node_id in old_flow.nodes:
            fields = _node_changes(old_flow.nodes[node_id], node)
            if fields:
                changed.append(NodeChange(node_id, type_name(node), fields))
    return FlowDiff(
        flow=new_flow.name,
        old_version=old_flow.version,
        new_version=new_flow.version,
        flow_changes=_flow_changes(old_flow, new_flow),
        nodes_added=added,
        nodes_removed=removed,
        nodes_changed=changed,
        voices_changed=_voice_changes(old_flow, old_catalog, new_flow, new_catalog),
        prompts_changed=_prompt_changes(old_flow, old_catalog, new_flow, new_catalog),
    )


def type_name(node: Node) -> str:
    """The node's YAML `type` (its class name for a kind missing from the registry)."""
    for name, kind in NODE_TYPES.items():
        if type(node) is kind:
            return name
    return type(node).__name__


def prompt_users(flow: Flow) -> dict[str, list[str]]:
    """Every prompt key the flow's nodes speak, with the ids of the nodes, in node order."""
    users: dict[str, list[str]] = {}
    for node_id, node in flow.nodes.items():
        for key in node.prompts().values():
            if node_id not in users.setdefault(key, []):
                users[key].append(node_id)
    return users


# ---- comparing


def _plain(value: Any) -> JSON:
    """A model value as JSON data: mappings as dicts, tuples as lists, the rest as text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, frozenset | set):
        return [str(item) for item in sorted(value, key=str)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    return str(value)


def _flatten(name: str, value: Any) -> dict[str, JSON]:
    """A field as {path: value}; a mapping gives one path per key, so a changed menu
    option reads `options.2` rather than two whole menus."""
    if isinstance(value, Mapping):
        flat: dict[str, JSON] = {}
        for key, item in value.items():
            flat.update(_flatten(f"{name}.{key}", item))
        return flat
    return {name: _plain(value)}


def _node_fields(node: Node) -> dict[str, tuple[JSON, str | None]]:
    """The node's compared fields as {path: (value, ref)}, in the order its YAML wrote
    them, then the defaults it left out.

    Fields the dataclass leaves out of equality (source lines, the transfer target
    the loader parsed from `target`) are left out here too, as is the id.
    """
    specs = [spec for spec in dataclasses.fields(node) if spec.compare and spec.name != "id"]
    # Unwritten fields sort after every written line; the sort is stable, so they keep
    # their dataclass order.
    specs.sort(key=lambda spec: node.key_lines.get(spec.name, sys.maxsize))
    result: dict[str, tuple[JSON, str | None]] = {}
    for spec in specs:
        ref = spec.metadata.get("ref")
        for path, value in _flatten(spec.name, getattr(node, spec.name)).items():
            result[path] = (value, ref)
    return result


def _entry(node: Node) -> NodeEntry:
    settings: dict[str, JSON] = {
        path: value for path, (value, _) in _node_fields(node).items() if value is not None
    }
    return NodeEntry(node.id, type_name(node), settings)


def _node_changes(old: Node, new: Node) -> list[FieldChange]:
    if old == new:
        return []
    changes = []
    if type(old) is not type(new):
        changes.append(FieldChange("type", type_name(old), type_name(new)))
    old_fields, new_fields = _node_fields(old), _node_fields(new)
    # New order first, so a changed node reads like its new YAML.
    for path in [*new_fields, *(p for p in old_fields if p not in new_fields)]:
        old_value, old_ref = old_fields.get(path, (None, None))
        new_value, new_ref = new_fields.get(path, (None, None))
        if old_value != new_value:
            changes.append(FieldChange(path, old_value, new_value, new_ref or old_ref))
    return changes


def _flow_changes(old: Flow, new: Flow) -> list[FieldChange]:
    changes = []
    for spec in dataclasses.fields(new):
        if spec.name in _NOT_COMPARED:
            continue
        old_value, new_value = _plain(getattr(old, spec.name)), _plain(getattr(new, spec.name))
        if old_value != new_value:
            changes.append(FieldChange(spec.name, old_value, new_value, _FLOW_REFS.get(spec.name)))
    return changes


def _languages(old: Flow, new: Flow) -> list[str]:
    return [*new.languages, *(lang for lang in old.languages if lang not in new.languages)]


def _voice(flow: Flow, catalog: Catalog, language: str) -> str | None:
    if language not in flow.languages or language not in catalog.languages:
        return None
    return catalog.voice(language)


def _voice_changes(
    old_flow: Flow, old_catalog: Catalog, new_flow: Flow, new_catalog: Catalog
) -> list[VoiceChange]:
    voices = [
        VoiceChange(lang, _voice(old_flow, old_catalog, lang), _voice(new_flow, new_catalog, lang))
        for lang in _languages(old_flow, new_flow)
    ]
    return [voice for voice in voices if voice.old != voice.new]


def _spoken(
    flow: Flow, catalog: Catalog, users: Mapping[str, list[str]]
) -> dict[tuple[str, str], str]:
    """Every (language, key) → text this flow can speak: its nodes' prompts and the
    system prompts, in the languages it offers. Anything else never reaches its callers."""
    keys = [*users, *(key for key in SYSTEM_PROMPTS if key not in users)]
    spoken = {}
    for language in flow.languages:
        texts = catalog.languages[language].texts if language in catalog.languages else {}
        for key in keys:
            if key in texts:
                spoken[(language, key)] = texts[key]
    return spoken


def _prompt_changes(
    old_flow: Flow, old_catalog: Catalog, new_flow: Flow, new_catalog: Catalog
) -> list[PromptChange]:
    old_users, new_users = prompt_users(old_flow), prompt_users(new_flow)
    before = _spoken(old_flow, old_catalog, old_users)
    after = _spoken(new_flow, new_catalog, new_users)
    # Keys in the order the new flow first speaks them; languages in the flow's order.
    keys = list(dict.fromkeys([*new_users, *old_users, *SYSTEM_PROMPTS]))
    changes = []
    for key in keys:
        for language in _languages(old_flow, new_flow):
            old_text, new_text = before.get((language, key)), after.get((language, key))
            if old_text != new_text:
                users = new_users.get(key) or old_users.get(key) or []
                changes.append(
                    PromptChange(language, key, old_text, new_text, users, key in SYSTEM_PROMPTS)
                )
    return changes


# ---- rendering


def render_text(diff: FlowDiff, old_label: str | None = None, new_label: str | None = None) -> str:
    """The diff for a terminal: `+` added, `-` removed, `~` changed, one item per entry."""
    old_label = old_label or f"v{diff.old_version}"
    new_label = new_label or f"v{diff.new_version}"
    lines = [f"flow {diff.flow}: {old_label} → {new_label}"]
    if diff.is_empty:
        lines.append("  no differences")
    for change in diff.flow_changes:
        lines.extend(_field_lines(f"  ~ {change.field}", change, 6))
    for entry in diff.nodes_added:
        lines.append(f"  + node {entry.node} ({entry.type})")
        lines.extend(f"      {path}: {_inline(value)}" for path, value in entry.fields.items())
    for entry in diff.nodes_removed:
        lines.append(f"  - node {entry.node} ({entry.type})")
    for node in diff.nodes_changed:
        head = f"  ~ node {node.node}"
        if len(node.fields) == 1 and not _is_long(node.fields[0]):
            lines.extend(_field_lines(f"{head}: {node.fields[0].field}", node.fields[0], 6))
            continue
        lines.append(f"{head}:")
        for change in node.fields:
            lines.extend(_field_lines(f"      {change.field}", change, 8))
    for voice in diff.voices_changed:
        lines.append(f"  ~ voice {voice.language}: {_inline(voice.old)} → {_inline(voice.new)}")
    for prompt in diff.prompts_changed:
        lines.extend(_prompt_lines(prompt))
    return "\n".join(lines) + "\n"


def _inline(value: JSON) -> str:
    """A value, compactly: node ids and keys bare, text quoted, mappings as key: value."""
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        bare = value and not any(ch.isspace() or ch in "\"',{}" for ch in value)
        return value if bare else json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return ", ".join(_inline(item) for item in value) if value else "(empty)"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {_inline(item)}" for key, item in value.items()) + "}"
    return str(value)


def _field_lines(head: str, change: FieldChange, indent: int) -> list[str]:
    """`head: old → new`, or for long values `head:` over `- old` / `+ new` lines."""
    if not _is_long(change):
        return [f"{head}: {_inline(change.old)} → {_inline(change.new)}"]
    return [f"{head}:", *_block("-", change.old, indent), *_block("+", change.new, indent)]


def _is_long(change: FieldChange) -> bool:
    return len(_inline(change.old)) + len(_inline(change.new)) > _INLINE_WIDTH


def _block(sign: str, value: JSON, indent: int) -> list[str]:
    """`- "text"` wrapped to the terminal, continuation lines under the text."""
    if value is None:
        return []
    text = _inline(value)
    first = " " * indent + f"{sign} "
    return textwrap.wrap(
        text,
        width=_WRAP,
        initial_indent=first,
        subsequent_indent=" " * (len(first) + 1),
        break_long_words=False,
        break_on_hyphens=False,
    )


def _prompt_lines(prompt: PromptChange) -> list[str]:
    where = "used by " + ", ".join(prompt.used_by) if prompt.used_by else "system prompt"
    head = f"prompt {prompt.language} {prompt.key} ({where})"
    if prompt.old is None:
        return [f"  + {head}:", *_block("+", prompt.new, 6)]
    if prompt.new is None:
        return [f"  - {head}:", *_block("-", prompt.old, 6)]
    return [f"  ~ {head}:", *_block("-", prompt.old, 6), *_block("+", prompt.new, 6)]
