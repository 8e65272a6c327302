"""Reads `flows/*.yaml` and `prompts/*.yaml` into the frozen model, strictly.

Every problem is collected (not just the first) with its file, line, node and
field, so `ivr flows validate` can list them all at once. Parsing happens once
per version at boot; calls only ever see validated, immutable definitions.
"""

from __future__ import annotations

import hashlib
import re
import string
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields, replace
from pathlib import Path
from types import MappingProxyType, NoneType, UnionType
from typing import Any

import yaml

from ivr.errors import DefinitionProblem, InvalidDefinition
from ivr.flow import yamlread
from ivr.flow.model import (
    DTMF_KEYS,
    MESSAGE_PLACEHOLDERS,
    MESSAGE_PREFIX,
    NODE_TYPES,
    NUMBER_PROBLEMS,
    PLACEHOLDERS,
    READ_CODE_PLACEHOLDERS,
    READ_CODE_PREFIX,
    SYSTEM_PROMPTS,
    Catalog,
    Flow,
    Node,
    PromptSet,
    TransferNode,
)
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
PROMPT_FILE_KEYS = ("language", "voice", "prompts")
# Twilio's schema allows these voices (see ../shared/twilio); Polly voices sound best.
VOICE_PATTERN = r"^(man|woman|Polly\.[A-Za-z]+)$"
SAY_LIMIT = 4096
POLLY_SAY_LIMIT = 3000
# System prompts spoken where no call facts are at hand (while holding in a queue).
PLAIN_PROMPTS = frozenset({"queue_hold"})


@dataclass(frozen=True)
class Definitions:
    """Everything loaded together: flows by name and the prompt catalog."""

    flows: Mapping[str, Flow]
    catalog: Catalog


def load_definitions(flows_dir: Path, prompts_dir: Path, default_region: str) -> Definitions:
    """Load and validate everything; raise InvalidDefinition listing every problem."""
    definitions, problems = check_definitions(flows_dir, prompts_dir, default_region)
    if problems or definitions is None:
        raise InvalidDefinition(problems)
    return definitions


def check_definitions(
    flows_dir: Path, prompts_dir: Path, default_region: str, only: list[Path] | None = None
) -> tuple[Definitions | None, list[DefinitionProblem]]:
    """Load everything, returning the definitions (None if broken) and all problems."""
    catalog, problems = load_catalog(prompts_dir)
    flow_files = only if only is not None else sorted(flows_dir.glob("*.yaml"))
    if not flow_files:
        problems.append(DefinitionProblem(str(flows_dir), "", "", "no flow files (*.yaml) found"))
    flows: dict[str, Flow] = {}
    for path in flow_files:
        flow, flow_problems = load_flow(path, catalog, default_region)
        problems.extend(flow_problems)
        if flow is not None:
            flows[flow.name] = flow
    if problems:
        return None, problems
    return Definitions(MappingProxyType(flows), catalog), []


# ---------------------------------------------------------------- prompts


def load_catalog(prompts_dir: Path) -> tuple[Catalog, list[DefinitionProblem]]:
    """Read every `prompts/<language>.yaml`; system prompts must exist in each."""
    problems: list[DefinitionProblem] = []
    languages: dict[str, PromptSet] = {}
    files = sorted(prompts_dir.glob("*.yaml"))
    if not files:
        problems.append(DefinitionProblem(str(prompts_dir), "", "", "no prompt files found"))
    for path in files:
        prompt_set = _load_prompt_file(path, problems)
        if prompt_set is not None:
            languages[prompt_set.language] = prompt_set
    return Catalog(MappingProxyType(languages)), problems


def _load_prompt_file(path: Path, problems: list[DefinitionProblem]) -> PromptSet | None:
    file = str(path)
    data = _read_yaml(path, problems)
    if data is None:
        return None
    if not isinstance(data, yamlread.LineDict):
        problems.append(DefinitionProblem(file, "", "", "must be a mapping", 1))
        return None
    _unknown_keys(data, PROMPT_FILE_KEYS, file, "", problems)
    language = data.get("language")
    if language != path.stem:
        problems.append(
            DefinitionProblem(
                file,
                "",
                "language",
                f"must be {path.stem!r}, the file's name",
                data.line_of("language"),
            )
        )
        return None
    voice = data.get("voice")
    if voice is not None and (not isinstance(voice, str) or not re.match(VOICE_PATTERN, voice)):
        problems.append(
            DefinitionProblem(
                file, "", "voice", "must be man, woman or Polly.<Name>", data.line_of("voice")
            )
        )
        voice = None
    texts = data.get("prompts")
    if not isinstance(texts, yamlread.LineDict):
        problems.append(
            DefinitionProblem(file, "", "prompts", "must be a mapping of key: text", data.line)
        )
        return None
    limit = POLLY_SAY_LIMIT if isinstance(voice, str) and voice.startswith("Polly.") else SAY_LIMIT
    clean: dict[str, str] = {}
    for key, text in texts.items():
        line = texts.line_of(key)
        if not isinstance(text, str) or not text.strip():
            problems.append(DefinitionProblem(file, key, "text", "must be non-empty text", line))
            continue
        if len(text) > limit:
            problems.append(
                DefinitionProblem(
                    file, key, "text", f"is {len(text)} characters; at most {limit}", line
                )
            )
        if key.startswith(MESSAGE_PREFIX):
            allowed = MESSAGE_PLACEHOLDERS
        elif key.startswith(READ_CODE_PREFIX):
            allowed = PLACEHOLDERS | READ_CODE_PLACEHOLDERS
        else:
            allowed = PLACEHOLDERS
        for placeholder in _placeholders(text, file, key, line, problems):
            if key in PLAIN_PROMPTS:
                problems.append(
                    DefinitionProblem(
                        file, key, "text", "is read with no call facts: no placeholders", line
                    )
                )
                break
            if placeholder not in allowed:
                problems.append(
                    DefinitionProblem(
                        file,
                        key,
                        "text",
                        f"unknown placeholder {{{placeholder}}}; allowed: "
                        + ", ".join(sorted(allowed)),
                        line,
                    )
                )
        clean[key] = " ".join(text.split())
    for key in SYSTEM_PROMPTS:
        if key not in clean and key not in texts:
            problems.append(
                DefinitionProblem(file, key, "prompts", "system prompt missing", texts.line)
            )
    return PromptSet(language, voice, MappingProxyType(clean), file)


def _placeholders(
    text: str, file: str, key: str, line: int | None, problems: list[DefinitionProblem]
) -> list[str]:
    try:
        return [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]
    except ValueError as exc:
        problems.append(DefinitionProblem(file, key, "text", f"bad braces: {exc}", line))
        return []


# ---------------------------------------------------------------- flows


def load_flow(
    path: Path, catalog: Catalog, default_region: str
) -> tuple[Flow | None, list[DefinitionProblem]]:
    """Parse and validate one flow file against the prompt catalog."""
    problems: list[DefinitionProblem] = []
    file = str(path)
    data = _read_yaml(path, problems)
    if data is None:
        return None, problems
    if not isinstance(data, yamlread.LineDict):
        return None, [DefinitionProblem(file, "", "", "a flow file must be a mapping", 1)]
    _unknown_keys(data, FLOW_KEYS, file, "", problems)
    for key in REQUIRED_FLOW_KEYS:
        if key not in data:
            problems.append(
                DefinitionProblem(file, "", key, f"missing ({FLOW_KEYS[key]})", data.line)
            )

    name = data.get("name")
    if "name" in data and name != path.stem:
        problems.append(
            DefinitionProblem(
                file, "", "name", f"must be {path.stem!r}, the file's name", data.line_of("name")
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
            node = _parse_node(node_id, raw, raw_nodes.line_of(node_id), file, problems)
            if isinstance(node, Node):
                nodes[node_id] = node
            else:
                unparsed[node_id] = _mentioned_ids(raw, set(raw_nodes))
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
        version=_version(path, catalog),
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


def _parse_node(
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
    _unknown_keys(raw, allowed, file, node_id, problems, what=f"a {node_type} node")
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


def _mentioned_ids(raw: Any, node_ids: set[str]) -> set[str]:
    """Node ids a broken node's raw values mention: its likely transitions."""
    if isinstance(raw, str):
        return {raw} & node_ids
    if isinstance(raw, dict):
        return set().union(*(_mentioned_ids(v, node_ids) for v in raw.values())) if raw else set()
    if isinstance(raw, list):
        return set().union(*(_mentioned_ids(v, node_ids) for v in raw)) if raw else set()
    return set()


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
        if not all(isinstance(target, str) and target for target in value.values()):
            return "every value must be a non-empty word"
        return None
    raise TypeError(f"no parser for field type {hint!r}")  # a model bug, not a user error


def _unknown_keys(
    data: yamlread.LineDict,
    allowed: Any,
    file: str,
    where: str,
    problems: list[DefinitionProblem],
    what: str = "here",
) -> None:
    for key in data:
        if key not in allowed:
            problems.append(
                DefinitionProblem(
                    file,
                    where,
                    key,
                    f"unknown key; allowed {what}: " + ", ".join(allowed),
                    data.line_of(key),
                )
            )


def _read_yaml(path: Path, problems: list[DefinitionProblem]) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(DefinitionProblem(str(path), "", "", f"cannot be read: {exc}"))
        return None
    try:
        return yamlread.read(text)
    except yaml.YAMLError as exc:
        reason = str(getattr(exc, "problem", None) or exc).strip()
        problems.append(
            DefinitionProblem(str(path), "", "", f"YAML error: {reason}", yamlread.error_line(exc))
        )
        return None


def _version(path: Path, catalog: Catalog) -> str:
    """A content hash of the flow and every prompt file: the version a call pins."""
    digest = hashlib.sha256(path.read_bytes())
    for language in sorted(catalog.languages):
        digest.update(Path(catalog.languages[language].file).read_bytes())
    return digest.hexdigest()[:12]
