"""Loads a whole definitions tree: every prompt file, then every flow file.

Every problem is collected (not just the first) with its file, line, node and
field, so `ivr flows validate` can list them all at once. Parsing happens once
per version at boot; calls only ever see validated, immutable definitions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from ivr.errors import DefinitionProblem, InvalidDefinition
from ivr.flow.loader.flows import load_flow
from ivr.flow.loader.prompts import load_catalog
from ivr.flow.model.flow import Catalog, Flow


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
