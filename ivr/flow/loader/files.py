"""Reading one definition file, and the unknown-key check every mapping in one shares."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ivr.errors import DefinitionProblem
from ivr.flow import yamlread


def unknown_keys(
    data: yamlread.LineDict,
    allowed: Any,
    file: str,
    where: str,
    problems: list[DefinitionProblem],
    what: str = "here",
) -> None:
    """Report every key of `data` that is not in `allowed`, listing the allowed ones."""
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


def read_yaml(path: Path, problems: list[DefinitionProblem]) -> Any:
    """The file's YAML, or None after reporting why it cannot be read."""
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
