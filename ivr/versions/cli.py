"""`ivr flows …`: validate the working files, publish them, see the history, roll back,
diff, export and show versions.

`validate` works without a database, Redis or a valid running app, so it can run in
CI and in the release step before anything else; the others use the app's storage.
Each takes `--json` where a machine may read the answer.
"""

from __future__ import annotations

import json
import os
from datetime import UTC
from pathlib import Path
from typing import Any

import click
from flask import current_app
from flask.cli import with_appcontext

from ivr.config import PROJECT_ROOT, Settings
from ivr.errors import InvalidDefinition
from ivr.flow.diff import diff_flows, render_text
from ivr.flow.loader import check_definitions
from ivr.flow.outline import outline
from ivr.storage import db, kv
from ivr.storage.models import FlowVersion
from ivr.versions import publish as lifecycle
from ivr.versions import store
from ivr.versions.store import LoadedFlow


@click.group("flows")
def flows() -> None:
    """Validate, publish, roll back and compare versions of the call flows."""


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


def _settings() -> Settings:
    settings: Settings = current_app.config["IVR_SETTINGS"]
    return settings


def _by() -> str:
    """Who publishes: IVR_OPERATOR, else the login name (audit records keep it)."""
    return (os.environ.get("IVR_OPERATOR") or os.environ.get("USER") or "cli")[:64]


def _emit(as_json: bool, data: Any, text: str) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True) if as_json else text)


def _refused(exc: InvalidDefinition) -> click.ClickException:
    for problem in exc.problems:
        click.echo(str(problem), err=True)
    return click.ClickException(f"refused: {len(exc.problems)} problem(s); nothing was published")


@flows.command("publish")
@click.argument("flow", required=False)
@click.option("-m", "--message", default="", help="Why: shown in the history and the audit.")
@click.option("--json", "as_json", is_flag=True, help="Print an object with flow and version.")
@with_appcontext
def publish_command(flow: str | None, message: str, as_json: bool) -> None:
    """Validate the working files of FLOW (default: IVR_FLOW) and make them live."""
    settings = _settings()
    name = flow or settings.flow
    session = db.session()
    # What is live as this command starts: a publish that lands in between is refused.
    live = store.live_row(session, name)
    try:
        outcome = lifecycle.publish(
            session,
            kv.client(),
            flows_dir=settings.flows_dir,
            prompts_dir=settings.prompts_dir,
            flow=name,
            region=settings.default_region,
            by=_by(),
            message=message,
            expected=live.version_row.version if live is not None else None,
        )
    except InvalidDefinition as exc:
        raise _refused(exc) from None
    except lifecycle.LiveChanged as exc:
        raise click.ClickException(str(exc)) from None
    texts = {
        lifecycle.PUBLISHED: f"published {name} version {outcome.version}; it is live",
        lifecycle.UNCHANGED: f"{name}: the working files are the live version {outcome.version};"
        " nothing new stored",
        lifecycle.RELIVE: f"{name}: the working files are version {outcome.version}, published"
        " before; it is live again",
    }
    data = {"flow": name, "version": outcome.version, "previous": outcome.previous}
    _emit(as_json, {**data, "status": outcome.status}, texts[outcome.status])
    _pointer_note(outcome)


def _pointer_note(outcome: lifecycle.Outcome) -> None:
    """Say so (on stderr: `--json` output stays one object) when Redis missed the pointer."""
    if not outcome.pointer_set:
        click.echo(
            f"note: {outcome.flow} {outcome.version} is live; {lifecycle.POINTER_NOTE}", err=True
        )


@flows.command("history")
@click.argument("flow", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print a list of objects.")
@with_appcontext
def history_command(flow: str | None, as_json: bool) -> None:
    """The versions of FLOW (default: IVR_FLOW), newest first, and which one is live."""
    name = flow or _settings().flow
    session = db.session()
    live = store.live_row(session, name)
    rows = store.history(session, name)
    if not rows:
        raise click.ClickException(f"flow {name!r} has no published version")
    items = [_described(row, live is not None and row.id == live.version_id) for row in rows]
    lines = [
        f"{'*' if item['live'] else ' '} {item['version']}  {item['published_at']}  "
        f"{item['by']}  {item['message']}"
        for item in items
    ]
    _emit(as_json, items, "\n".join([f"{name} (* live)", *lines]))


def _described(row: FlowVersion, live: bool) -> dict[str, Any]:
    published = row.published_at
    if published.tzinfo is None:  # SQLite hands back naive UTC
        published = published.replace(tzinfo=UTC)
    return {
        "flow": row.flow,
        "version": row.version,
        "live": live,
        "published_at": published.isoformat(timespec="seconds"),
        "by": row.published_by,
        "message": row.message,
    }


@flows.command("rollback")
@click.argument("flow", required=False)
@click.option("--to", "to", help="The version to make live (default: the one before).")
@click.option("--json", "as_json", is_flag=True, help="Print an object with flow and version.")
@with_appcontext
def rollback_command(flow: str | None, to: str | None, as_json: bool) -> None:
    """Make the version before the live one (or --to VERSION) of FLOW live again."""
    settings = _settings()
    name = flow or settings.flow
    session = db.session()
    live = store.live_row(session, name)
    try:
        outcome = lifecycle.rollback(
            session,
            kv.client(),
            flow=name,
            to=to,
            by=_by(),
            region=settings.default_region,
            expected=live.version_row.version if live is not None else None,
        )
    except lifecycle.NoLongerValid as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        raise click.ClickException(f"refused: {exc}; nothing was rolled back") from None
    except (LookupError, lifecycle.LiveChanged) as exc:
        raise click.ClickException(str(exc.args[0])) from None
    text = (
        f"{name}: version {outcome.version} is already live"
        if outcome.status == lifecycle.UNCHANGED
        else f"{name}: version {outcome.version} is live again (was {outcome.previous})"
    )
    data = {"flow": name, "version": outcome.version, "previous": outcome.previous}
    _emit(as_json, {**data, "status": outcome.status}, text)
    _pointer_note(outcome)


@flows.command("export")
@click.argument("version")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--flow", "flow", help="The flow (default: IVR_FLOW).")
@with_appcontext
def export_command(version: str, directory: Path, flow: str | None) -> None:
    """Write VERSION's files into DIRECTORY (flows/ and prompts/), byte for byte."""
    row = _version_row(flow or _settings().flow, version)
    for file in row.files:
        target = directory / file.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(file.content.encode("utf-8"))
        click.echo(f"wrote {target}")


@flows.command("show")
@click.argument("version", required=False)
@click.option("--flow", "flow", help="The flow (default: IVR_FLOW).")
@click.option("--language", help="Also print each node's prompt in this language.")
@with_appcontext
def show_command(version: str | None, flow: str | None, language: str | None) -> None:
    """An outline of VERSION (default: the live one; "working" for the working files)."""
    loaded = _loaded(flow or _settings().flow, version)
    click.echo(outline(loaded.flow, loaded.catalog, language))


@flows.command("diff")
@click.argument("old")
@click.argument("new", default="working")
@click.option("--flow", "flow", help="The flow (default: IVR_FLOW).")
@click.option("--json", "as_json", is_flag=True, help="Print the differences as an object.")
@with_appcontext
def diff_command(old: str, new: str, flow: str | None, as_json: bool) -> None:
    """What changed from OLD to NEW: versions, "live" or "working" (the default NEW)."""
    name = flow or _settings().flow
    before, after = _loaded(name, old), _loaded(name, new)
    changes = diff_flows((before.flow, before.catalog), (after.flow, after.catalog))
    labels = (_label(old, before), _label(new, after))
    _emit(as_json, changes.to_json(), render_text(changes, *labels))


def _label(given: str, loaded: LoadedFlow) -> str:
    return "working files" if given == "working" else f"v{loaded.flow.version}"


def _loaded(flow: str, version: str | None) -> LoadedFlow:
    """A version by id or prefix, "live" (the default) or "working" (the working files)."""
    settings = _settings()
    if version == "working":
        try:
            draft = store.read_draft(
                settings.flows_dir, settings.prompts_dir, flow, settings.default_region
            )
        except InvalidDefinition as exc:
            raise _refused(exc) from None
        return draft.loaded
    if version in (None, "live"):
        live = store.live_row(db.session(), flow)
        if live is None:
            raise click.ClickException(f"flow {flow!r} has no published version")
        row = live.version_row
    else:
        row = _version_row(flow, version)
    try:
        return store.load_version(row, settings.default_region)
    except InvalidDefinition as exc:
        raise _refused(exc) from None


def _version_row(flow: str, version: str) -> FlowVersion:
    row = store.find_version(db.session(), flow, version)
    if row is None:
        raise click.ClickException(
            f"flow {flow!r} has no version {version!r} (ids: ivr flows history {flow})"
        )
    return row
