"""Editing flow and prompt files as YAML text, the way a person would edit them.

The ops console's drafts are the files themselves, so an edit must not rewrite them:
ruamel.yaml's round trip keeps comments, key order, blank lines and quoting, and a file
read and written back with no edit is the same bytes (every shipped file is held to
that). New values are written so the strict reader (`ivr.flow.yamlread`) reads back
exactly what was meant: a value it would read as something else (`1:30`, `on`, a
leading `#`) is quoted, `1:` menu keys stay plain (the reader keeps them strings), long
prompt texts are folded `>` blocks wrapped like the files, and blank lines that close a
mapping stay where they were when a key is added or removed at its end. Every edit is
read back strictly before it is returned: text that would not read as meant is an
EditError, never a result. Text in, text out: the draft store (`ivr.versions.drafts`)
decides what to edit and saves it; this module knows no database and no Flask.
"""

from __future__ import annotations

import copy
import io
import textwrap
from collections.abc import Mapping
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import YAMLError as RuamelError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, FoldedScalarString

from ivr.errors import IvrError
from ivr.flow import yamlread

# Prompt texts longer than this line are written folded (`>`), wrapped like the files.
FOLD_WIDTH = 80


class EditError(IvrError):
    """A file that does not read as YAML, lacks what the edit names, or would not read
    back as meant after it; no text comes back."""


def round_trip(text: str) -> str:
    """`text` read and written back by the editor with no edit (the same bytes, for every
    file the project ships: a test holds it to that)."""
    return _dump(_load(text, "text"))


def _yaml() -> YAML:
    rt = YAML(typ="rt")
    rt.width = 4096  # never reflow a line nobody edited
    rt.preserve_quotes = True
    rt.indent(mapping=2, sequence=4, offset=2)
    return rt


def _load(text: str, path: str) -> Any:
    try:
        return _yaml().load(text)
    except RuamelError as exc:
        raise EditError(f"{path} does not read as YAML: {exc}") from None


def _dump(data: Any) -> str:
    out = io.StringIO()
    _yaml().dump(data, out)
    return out.getvalue()


def spoken(text: str) -> str:
    """`text` as it is spoken: every run of white space one space."""
    return " ".join(text.split())


def edit_prompt(text: str, path: str, key: str, value: str) -> str:
    """The prompt file `text` with the text of `key` set (added at the end if new)."""
    data = _load(text, path)
    prompts = data.get("prompts") if isinstance(data, CommentedMap) else None
    if not isinstance(prompts, CommentedMap):
        raise EditError(f"{path} has no prompts: mapping to edit")
    old = prompts.get(key)
    new = _prompt_scalar(key, spoken(value), folded=isinstance(old, FoldedScalarString))
    if key in prompts:
        prompts[key] = new
    else:
        _append(prompts, key, new)
    result = _dump(data)
    _expect(result, path, lambda d: spoken(d["prompts"][key]) == spoken(value))
    return result


def _prompt_scalar(key: str, text: str, *, folded: bool) -> Any:
    """Short texts on the key's line; long ones (or ones written folded) as `>` blocks
    wrapped like the prompt files."""
    if not folded and len(f"  {key}: {text}") <= FOLD_WIDTH + 10:
        return _plain_safe(text)
    lines = textwrap.wrap(text, FOLD_WIDTH - 4, break_long_words=False, break_on_hyphens=False)
    scalar = FoldedScalarString(" ".join(lines) + "\n")
    positions, at = [], 0
    for line in lines[:-1]:
        at += len(line)
        positions.append(at)
        at += 1
    scalar.fold_pos = positions
    return scalar


def _plain_safe(value: str) -> Any:
    """`value` as ruamel may write it plain, or quoted when the strict reader would read
    the plain text as something else (`1:30`, `on: x`, a leading `#`...)."""
    try:
        if yamlread.read(f"k: {value}\n") == {"k": value}:
            return value
    except yaml.YAMLError:
        pass
    return DoubleQuotedScalarString(value)


def edit_node(text: str, path: str, node_id: str, changes: Mapping[str, Any]) -> str:
    """The flow file `text` with fields of one node set (None: removed)."""
    data = _load(text, path)
    nodes = data.get("nodes") if isinstance(data, CommentedMap) else None
    node = nodes.get(node_id) if isinstance(nodes, CommentedMap) else None
    if not isinstance(node, CommentedMap):
        raise EditError(f"{path} has no node {node_id!r} to edit")
    for name, value in changes.items():
        if value is None:
            _remove(node, name)
        elif isinstance(value, Mapping):
            _set_mapping(node, name, value)
        elif name in node:
            node[name] = _plain_safe(value) if isinstance(value, str) else value
        else:
            _append(node, name, _plain_safe(value) if isinstance(value, str) else value)
    result = _dump(data)

    def as_meant(read: Any) -> bool:
        written = read["nodes"][node_id]
        for name, value in changes.items():
            got = written.get(name)
            if (dict(got) if isinstance(got, dict) else got) != (
                dict(value) if isinstance(value, Mapping) else value
            ):
                return False
        return True

    _expect(result, path, as_meant)
    return result


def _set_mapping(node: CommentedMap, name: str, value: Mapping[str, str]) -> None:
    """Edit a mapping field in place (its comments and order stay); digit keys are
    written as plain `1:`, which the strict reader keeps as the string "1"."""
    inner = node.get(name)
    if not isinstance(inner, CommentedMap):
        fresh = CommentedMap()
        for key, target in value.items():
            fresh[_key(key)] = _plain_safe(target)
        if name in node:
            node[name] = fresh
        else:
            _append(node, name, fresh)
        return
    written = {str(key): key for key in inner}
    for key in [k for k in written if k not in value]:
        _remove(inner, written[key])
    for key, target in value.items():
        if key in written:
            if inner[written[key]] != target:
                inner[written[key]] = _plain_safe(target)
        else:
            _append(inner, _key(key), _plain_safe(target))


def _key(key: str) -> Any:
    return int(key) if key.isdigit() and str(int(key)) == key else _plain_safe(key)


def _last(mapping: CommentedMap) -> tuple[CommentedMap, Any] | None:
    """The deepest last key of a mapping: it holds the blank lines after the mapping."""
    if not mapping:
        return None
    key = list(mapping)[-1]
    value = mapping[key]
    if isinstance(value, CommentedMap) and value:
        return _last(value)
    return mapping, key


def _take_tail(mapping: CommentedMap) -> str:
    """Cut the blank lines after a mapping off its last key's comment; return them."""
    owner = _last(mapping)
    if owner is None:
        return ""
    where, key = owner
    entry = where.ca.items.get(key)
    token = entry[2] if entry and len(entry) > 2 else None
    if token is None or "\n" not in token.value:
        return ""
    head, tail = token.value.split("\n", 1)
    if head.strip():
        entry[2] = copy.copy(token)
        entry[2].value = head + "\n"
    else:
        where.ca.items.pop(key, None)
    return tail


def _give_tail(mapping: CommentedMap, tail: str, like: Any) -> None:
    """Put the blank lines after a mapping back, after its (new) last key's comment."""
    owner = _last(mapping)
    if not tail or owner is None or like is None:
        return
    where, key = owner
    entry = where.ca.items.get(key)
    kept = entry[2] if entry and len(entry) > 2 and entry[2] is not None else None
    token = copy.copy(kept if kept is not None else like)
    token.value = (kept.value if kept is not None else "\n") + tail
    if entry and len(entry) > 2:
        entry[2] = token
    else:
        where.ca.items[key] = [None, None, token, None]


def _append(mapping: CommentedMap, key: Any, value: Any) -> None:
    """Add a key at the end of a mapping, keeping the blank lines after the mapping."""
    owner = _last(mapping)
    like = None
    if owner is not None:
        entry = owner[0].ca.items.get(owner[1])
        like = entry[2] if entry and len(entry) > 2 else None
    tail = _take_tail(mapping)
    mapping[key] = value
    _give_tail(mapping, tail, like)


def _remove(mapping: CommentedMap, key: Any) -> None:
    """Delete a key (if written); the blank lines after the mapping stay."""
    if key not in mapping:
        return
    owner = _last(mapping)
    like = None
    if owner is not None:
        entry = owner[0].ca.items.get(owner[1])
        like = entry[2] if entry and len(entry) > 2 else None
    last = list(mapping)[-1] == key
    tail = _take_tail(mapping) if last else ""
    del mapping[key]
    mapping.ca.items.pop(key, None)
    _give_tail(mapping, tail, like)


def _expect(text: str, path: str, check: Any) -> None:
    """The edited text must read back, strictly, as meant."""
    try:
        ok = bool(check(yamlread.read(text)))
    except (yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
        raise EditError(f"{path} would not read back after the edit: {exc}") from None
    if not ok:
        raise EditError(f"{path} would not read back as meant after the edit")
