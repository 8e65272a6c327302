"""What every node kind shares: the Node and InputNode bases and the field helpers.

Each node kind is a frozen dataclass. Field metadata says what a value refers to
(another node, a prompt, a language) so the loader and the validator can check
every reference generically; the engine never looks a name up lazily during a call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

# What a field's value refers to (field metadata "ref").
NODE = "node"
PROMPT = "prompt"
LANGUAGE = "language"

DTMF_KEYS = frozenset("0123456789")


def node_ref(**kwargs: Any) -> Any:
    """A field holding the id of another node (a transition)."""
    return field(metadata={"ref": NODE}, **kwargs)


def prompt_ref(**kwargs: Any) -> Any:
    """A field holding a prompt key, which must exist in every language."""
    return field(metadata={"ref": PROMPT}, **kwargs)


def bounded(low: int, high: int, default: int) -> Any:
    """An integer field with inclusive bounds."""
    return field(default=default, metadata={"min": low, "max": high})


def choice(values: frozenset[str], **kwargs: Any) -> Any:
    """A string field limited to `values`."""
    return field(metadata={"choices": values}, **kwargs)


def keyed(key_kind: str, value_ref: str) -> Any:
    """A mapping field: keys of `key_kind` ("dtmf" or "fact"), values referring to `value_ref`."""
    return field(metadata={"keys": key_kind, "ref": value_ref})


def internal(**kwargs: Any) -> Any:
    """A field set by the loader, not written in YAML."""
    return field(metadata={"internal": True}, **kwargs)


@dataclass(frozen=True, kw_only=True)
class Node:
    """Base of every node kind: its id and where it was defined."""

    id: str = internal()
    line: int | None = internal(default=None, compare=False)
    key_lines: Mapping[str, int] = internal(default_factory=dict, compare=False, repr=False)

    def line_of(self, field_name: str) -> int | None:
        """The line a field (or `field.key` of a mapping) was written on."""
        return self.key_lines.get(field_name.split(".")[0], self.line)

    def transitions(self) -> dict[str, str]:
        """Every outgoing transition as {field label: target node id}."""
        result: dict[str, str] = {}
        for spec in fields(self):
            if spec.metadata.get("ref") != NODE:
                continue
            value = getattr(self, spec.name)
            if isinstance(value, str):
                result[spec.name] = value
            elif isinstance(value, Mapping):
                for key, target in value.items():
                    result[f"{spec.name}.{key}"] = target
        return result

    def problems(self, languages: Sequence[str]) -> list[tuple[str, str]]:
        """Rules of this node kind alone, as (field, message): ranges that depend on each
        other, exits that must differ. The validator reports each with the file and line."""
        return []

    def prompts(self) -> dict[str, str]:
        """Every prompt key used, as {field name: prompt key}."""
        result: dict[str, str] = {}
        for spec in fields(self):
            value = getattr(self, spec.name)
            if spec.metadata.get("ref") != PROMPT or not value:
                continue
            if isinstance(value, Mapping):
                for key, prompt in value.items():
                    result[f"{spec.name}.{key}"] = prompt
            else:
                result[spec.name] = value
        return result


@dataclass(frozen=True, kw_only=True)
class InputNode(Node):
    """A node that waits for keypad input; every one needs all three failure exits."""

    prompt: str = prompt_ref()
    retry_prompt: str | None = prompt_ref(default=None)
    max_tries: int = bounded(1, 10, 3)
    timeout: int = bounded(1, 30, 5)
    no_input: str = node_ref()
    invalid: str = node_ref()
    too_many_tries: str = node_ref()
