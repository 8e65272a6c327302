"""Parses one YAML node into its dataclass, strictly, for every node kind alike.

The node's `type` is looked up in the model's one registry (NODE_TYPES); each
field is then checked against its type hint and metadata, so no kind needs a
parser of its own. Unknown types and keys are errors that list the allowed ones.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Mapping
from dataclasses import MISSING, fields
from types import MappingProxyType, NoneType, UnionType
from typing import Any

from ivr.errors import DefinitionProblem
from ivr.flow import yamlread
from ivr.flow.loader.files import unknown_keys, unsayable
from ivr.flow.model.base import DTMF_KEYS, InputNode, Node
from ivr.flow.model.menus import SPEECH_KINDS
from ivr.flow.model.number_change import NUMBER_PROBLEMS
from ivr.flow.model.registry import NODE_TYPES
from ivr.flow.validate import PartialNode

# A name a flow gives (a split's exits): it becomes part of an exit label
# ("exits.new_prompt"), so no dots or spaces.
NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
SPEECH = "speech"


def parse_node(
    node_id: str, raw: Any, line: int | None, file: str, problems: list[DefinitionProblem]
) -> Node | PartialNode | None:
    """The node; or, when some fields are bad, the fields that parsed (still checked)."""
    if not isinstance(raw, yamlread.LineDict):
        problems.append(DefinitionProblem(file, node_id, "", "a node must be a mapping", line))
        return None
    node_type = raw.get("type")
    node_class = NODE_TYPES.get(node_type) if isinstance(node_type, str) else None
    if node_class is None:
        problems.append(
            DefinitionProblem(
                file,
                node_id,
                "type",
                f"unknown node type {node_type!r}; known types: " + ", ".join(sorted(NODE_TYPES)),
                raw.line_of("type"),
            )
        )
        return None
    specs = [spec for spec in fields(node_class) if not spec.metadata.get("internal")]
    allowed = ["type", *(spec.name for spec in specs)]
    before = len(problems)
    unknown_keys(raw, allowed, file, node_id, problems, what=f"a {node_type} node")
    if SPEECH in raw and SPEECH not in allowed and issubclass(node_class, InputNode):
        # Not just an unknown key: say why this kind never listens for speech.
        problems[before:] = [p for p in problems[before:] if p.field != SPEECH]
        problems.append(
            DefinitionProblem(
                file, node_id, SPEECH, _keypad_only_message(str(node_type)), raw.line_of(SPEECH)
            )
        )
    hints = typing.get_type_hints(node_class)
    values: dict[str, Any] = {}
    for spec in specs:
        required = spec.default is MISSING and spec.default_factory is MISSING
        if spec.name not in raw:
            if required:
                problems.append(
                    DefinitionProblem(
                        file, node_id, spec.name, _missing_message(node_type, spec.name), raw.line
                    )
                )
            continue
        value = raw[spec.name]
        message = _type_problem(value, hints[spec.name], spec.metadata)
        if message:
            problems.append(
                DefinitionProblem(file, node_id, spec.name, message, raw.line_of(spec.name))
            )
            continue
        if isinstance(value, yamlread.LineDict):
            value = MappingProxyType(dict(value))
        values[spec.name] = value
    key_lines = MappingProxyType(dict(raw.key_lines))
    if len(problems) > before:
        return PartialNode(node_id, node_class, values, key_lines, line)
    return node_class(id=node_id, line=line, key_lines=key_lines, **values)


def mentioned_ids(raw: Any, node_ids: set[str]) -> set[str]:
    """Node ids a broken node's raw values mention: its likely transitions."""
    if isinstance(raw, str):
        return {raw} & node_ids
    if isinstance(raw, dict):
        return set().union(*(mentioned_ids(v, node_ids) for v in raw.values())) if raw else set()
    if isinstance(raw, list):
        return set().union(*(mentioned_ids(v, node_ids) for v in raw)) if raw else set()
    return set()


def _keypad_only_message(node_type: str) -> str:
    """Why an input node other than a menu may not listen for speech."""
    menus = ", ".join(kind for kind, cls in sorted(NODE_TYPES.items()) if cls in SPEECH_KINDS)
    if node_type == "choose_language":
        return f"a choose_language node is keypad-only: only {menus} nodes accept speech"
    return (
        f"a {node_type} node is keypad-only: account digits, codes and phone numbers are never "
        "taken by speech (a spoken code would be transcribed outside our control); "
        f"only {menus} nodes accept speech"
    )


def _missing_message(node_type: object, name: str) -> str:
    if name in ("no_input", "invalid", "too_many_tries"):
        return "missing: every input node needs no_input, invalid and too_many_tries exits"
    return f"missing: a {node_type} node needs {name}"


def _type_problem(value: Any, hint: Any, metadata: Mapping[str, Any]) -> str | None:
    """Why `value` does not fit the field, or None when it does."""
    optional = isinstance(hint, UnionType) and NoneType in typing.get_args(hint)
    if optional:
        if value is None:
            return None
        hint = next(arg for arg in typing.get_args(hint) if arg is not NoneType)
    if not isinstance(value, str) and metadata.get("text_hint"):
        return str(metadata["text_hint"])  # e.g. a YAML list, or a number YAML made an int
    if hint is str:
        if not isinstance(value, str) or not value.strip():
            return "must be a non-empty word"
        unfit = unsayable(value)
        if unfit is not None:
            return unfit
        choices = metadata.get("choices")
        if choices and value not in choices:
            return f"{value!r} is not one of: " + ", ".join(sorted(choices))
        return None
    if hint is int:
        if not isinstance(value, int) or isinstance(value, bool):
            return "must be a whole number"
        low, high = metadata.get("min"), metadata.get("max")
        if low is not None and high is not None and not low <= value <= high:
            return f"must be from {low} to {high}"
        return None
    if typing.get_origin(hint) is Mapping:
        if not isinstance(value, Mapping) or not value:
            return "must be a non-empty mapping"
        if metadata.get("keys") == "dtmf":
            bad = [key for key in value if key not in DTMF_KEYS]
            if bad:
                return f"keys must be single keypad digits 0-9 (* repeats, # ends input), not {bad}"
        if metadata.get("keys") == "number_problem":
            bad = [key for key in value if key not in NUMBER_PROBLEMS]
            if bad:
                return f"keys must be among {', '.join(sorted(NUMBER_PROBLEMS))}, not {bad}"
        if metadata.get("keys") == "name":
            bad = [key for key in value if not NAME.fullmatch(key)]
            if bad:
                return f"names must be letters, digits, _ or - (no dots or spaces), not {bad}"
        if typing.get_args(hint)[1:] == (int,):
            return _numbers_problem(value, metadata)
        if not all(isinstance(target, str) and target for target in value.values()):
            return "every value must be a non-empty word"
        return None
    raise TypeError(f"no parser for field type {hint!r}")  # a model bug, not a user error


def _numbers_problem(value: Mapping[str, Any], metadata: Mapping[str, Any]) -> str | None:
    """Why a mapping of whole numbers (a split's shares) does not fit, or None."""
    low, high = metadata.get("min"), metadata.get("max")
    for key, number in value.items():
        if not isinstance(number, int) or isinstance(number, bool):
            return f"{key}: must be a whole number"
        if low is not None and high is not None and not low <= number <= high:
            return f"{key}: must be from {low} to {high}"
    return None
