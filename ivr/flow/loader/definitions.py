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
from ivr.flow.loader.files import Source, read_source
from ivr.flow.loader.flows import load_flow
from ivr.flow.loader.prompts import catalog_from_sources, load_catalog
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
    sources = [s for s in (read_source(path, problems) for path in flow_files) if s is not None]
    return _with_flows(sources, catalog, default_region, problems)


def check_sources(
    flow_sources: list[Source], prompt_sources: list[Source], default_region: str
) -> tuple[Definitions | None, list[DefinitionProblem]]:
    """The same as check_definitions, for files given as Sources (a stored version)."""
    catalog, problems = catalog_from_sources(prompt_sources)
    return _with_flows(flow_sources, catalog, default_region, problems)


def _with_flows(
    sources: list[Source], catalog: Catalog, default_region: str, problems: list[DefinitionProblem]
) -> tuple[Definitions | None, list[DefinitionProblem]]:
    flows: dict[str, Flow] = {}
    for source in sources:
        flow, flow_problems = load_flow(source, catalog, default_region)
        problems.extend(flow_problems)
        if flow is not None:
            flows[flow.name] = flow
    if problems:
        return None, problems
    return Definitions(MappingProxyType(flows), catalog), []
