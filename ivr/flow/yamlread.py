"""A strict YAML reader for flow and prompt files.

Mapping keys always stay the strings they were written as (`1:` is the menu key
"1", `no:` is the word "no"), only `true`/`false` are booleans, duplicate keys are
errors, and every mapping remembers the line of each key for error messages.
"""

from __future__ import annotations

import re
from typing import Any

import yaml


class LineDict(dict[str, Any]):
    """A mapping that knows the line of itself and of each key (1-based)."""

    line: int | None = None
    key_lines: dict[str, int]

    def line_of(self, key: str) -> int | None:
        return self.key_lines.get(key, self.line)


class DuplicateKey(yaml.YAMLError):
    def __init__(self, key: str, line: int):
        self.key, self.line = key, line
        super().__init__(f"key {key!r} appears twice (again on line {line})")


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2-like booleans and string keys."""


# Drop YAML 1.1's yes/no/on/off booleans; keep true/false.
_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    result = LineDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode):
            key = str(key_node.value)  # the key exactly as written
        else:
            raise yaml.constructor.ConstructorError(
                None, None, "mapping keys must be plain words or numbers", key_node.start_mark
            )
        line = key_node.start_mark.line + 1
        if key in result:
            raise DuplicateKey(key, line)
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = line
    return result


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read(text: str) -> Any:
    """Parse one YAML document strictly (raises yaml.YAMLError with a line)."""
    return yaml.load(text, Loader=_StrictLoader)


def error_line(exc: yaml.YAMLError) -> int | None:
    """The 1-based line a YAML error points at, when it says."""
    if isinstance(exc, DuplicateKey):
        return exc.line
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return mark.line + 1 if mark is not None else None
