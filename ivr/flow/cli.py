"""`ivr flows …`: check flow and prompt files before they can reach callers.

Works without a database, Redis or a valid running app, so it can run in CI and
in the release step before anything else.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from ivr.config import PROJECT_ROOT
from ivr.flow.loader import check_definitions


@click.group("flows")
def flows() -> None:
    """Validate the call flows and their prompts."""


@flows.command("validate")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--prompts",
    "prompts_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=lambda: os.environ.get("IVR_PROMPTS_DIR") or str(PROJECT_ROOT / "prompts"),
    help="Prompt folder (default: IVR_PROMPTS_DIR or prompts/).",
)
@click.option(
    "--region",
    default=lambda: os.environ.get("IVR_DEFAULT_REGION") or "US",
    help="Region for phone numbers in transfer targets (default: IVR_DEFAULT_REGION or US).",
)
def validate(paths: tuple[Path, ...], prompts_dir: Path, region: str) -> None:
    """Check flow files (default: IVR_FLOWS_DIR or flows/); list every problem found."""
    if not paths:
        paths = (Path(os.environ.get("IVR_FLOWS_DIR") or PROJECT_ROOT / "flows"),)
    files: list[Path] = []
    for path in paths:
        files.extend(sorted(path.glob("*.yaml")) if path.is_dir() else [path])
    if not files:
        raise click.ClickException("no flow files (*.yaml) in " + ", ".join(map(str, paths)))
    definitions, problems = check_definitions(
        files[0].parent, prompts_dir, region.upper(), only=files
    )
    for problem in problems:
        click.echo(str(problem), err=True)
    if problems:
        raise click.ClickException(f"{len(problems)} problem(s) in {len(files)} flow file(s)")
    assert definitions is not None
    for flow in definitions.flows.values():
        click.echo(
            f"{flow.file}: ok — {len(flow.nodes)} nodes, "
            f"languages {', '.join(flow.languages)}, version {flow.version}"
        )
