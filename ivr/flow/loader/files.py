"""Reading one definition file, and the unknown-key check every mapping in one shares.

Definitions are read from `Source`s (a name and the file's exact text), whether
they come from the working folders or from a version stored in the database, so a
stored version loads exactly as its files did and problems name the file either way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
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


@dataclass(frozen=True)
class Source:
    """One definition file: `name` as problems should call it, and its exact text."""

    name: str
    text: str

    @property
    def stem(self) -> str:
        """The file name without folder and extension: a flow's or a language's name."""
        return PurePosixPath(self.name.replace("\\", "/")).stem


def read_source(path: Path, problems: list[DefinitionProblem]) -> Source | None:
    """The file as a Source, or None after reporting why it cannot be read."""
    try:
        return Source(str(path), path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(DefinitionProblem(str(path), "", "", f"cannot be read: {exc}"))
        return None


def read_yaml(source: Source, problems: list[DefinitionProblem]) -> Any:
    """The source's YAML, or None after reporting why it cannot be parsed."""
    try:
        return yamlread.read(source.text)
    except yaml.YAMLError as exc:
        reason = str(getattr(exc, "problem", None) or exc).strip()
        problems.append(
            DefinitionProblem(
                source.name, "", "", f"YAML error: {reason}", yamlread.error_line(exc)
            )
        )
        return None


# Characters TwiML (XML 1.0) cannot carry, and DEL: YAML lets a quoted string hold them
# as escapes ("\x0e"), and one spoken in a <Say> would make every answer that speaks it
# unparseable for Twilio.
_UNSAYABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


def unsayable(text: str) -> str | None:
    """Why `text` cannot go into TwiML (a control character, named), or None when it can."""
    found = _UNSAYABLE.search(text)
    return None if found is None else f"contains the control character U+{ord(found.group()):04X}"
