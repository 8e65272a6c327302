"""The flows page: each flow with its live version (who published it, when), the flow
drawn as a diagram, and a node's fields and prompts when one is chosen.

`/ops/` lists the flows: those in IVR_FLOWS_DIR and any other with versions in the
store. `/ops/flows/<flow>` shows the live version (`?version=` any stored one, by id
or its first digits; a flow never published shows its working files), and with
`?node=` that node's panel: its fields, where each exit leads, and every prompt it
speaks in every language of the flow, each with a Speak button (the browser's speech
synthesis, `static/speak.js`). Read-only: nothing here changes anything.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import abort, current_app, render_template, request, url_for
from sqlalchemy import select

from ivr.config import Settings
from ivr.errors import DefinitionProblem, InvalidDefinition
from ivr.flow.layout import exit_name, node_spec
from ivr.flow.model import LANGUAGE, NODE, PROMPT
from ivr.flow.outline import OutlineRow, outline_rows
from ivr.ops.blueprint import bp, readable
from ivr.ops.diagram_view import render_diagram
from ivr.storage import db
from ivr.storage.models import FlowDraft, FlowVersion, LiveFlow
from ivr.versions import store
from ivr.versions.store import LoadedFlow

# Fields the panel shows in sections of their own (or not at all: set by the loader).
_SHOWN_ELSEWHERE = frozenset({"id", "target", "destination"})


@dataclass(frozen=True)
class FlowSummary:
    """One row of the flows list."""

    name: str
    live: LiveFlow | None
    draft: FlowDraft | None
    is_service_flow: bool


@dataclass(frozen=True)
class Shown:
    """The version a flow page shows: its row (None: the working files, never
    published), whether it is live, and the loaded flow or the problems loading it."""

    row: FlowVersion | None
    live: bool
    loaded: LoadedFlow | None
    problems: list[DefinitionProblem]


@dataclass(frozen=True)
class PromptText:
    """A prompt's text in one language."""

    language: str
    text: str | None  # None: the language's prompt file lacks it


@dataclass(frozen=True)
class NodePrompt:
    """A prompt a node speaks: the field naming it, its key, its text in each language."""

    field: str
    key: str
    texts: list[PromptText]


@dataclass(frozen=True)
class NodePanel:
    """What the panel beside the diagram shows of one node."""

    id: str
    row: OutlineRow
    exits: list[tuple[str, str]]  # (exit as the diagram names it, target node)
    languages: list[tuple[str, str]]  # language options: (key, language)
    fields: list[tuple[str, str]]  # limits and other settings: (field, value)
    prompts: list[NodePrompt]
    incoming: list[tuple[str, str]]  # (source node, exit) of every edge into the node


def _settings() -> Settings:
    settings: Settings = current_app.config["IVR_SETTINGS"]
    return settings


def flow_names(settings: Settings) -> list[str]:
    """Every flow: the service's own first, then those with working files or stored
    versions, by name."""
    names = {path.stem for path in settings.flows_dir.glob("*.yaml")}
    names.update(db.session().scalars(select(FlowVersion.flow).distinct()))
    names.discard(settings.flow)
    return [settings.flow, *sorted(names)]


@bp.get("/")
@readable
def index() -> Any:
    """The console's home: the flows, each with its live version and draft."""
    settings = _settings()
    session = db.session()
    flows = [
        FlowSummary(
            name=name,
            live=store.live_row(session, name),
            draft=session.get(FlowDraft, name),
            is_service_flow=name == settings.flow,
        )
        for name in flow_names(settings)
    ]
    views = current_app.view_functions
    return render_template(
        "ops/flows.html",
        flows=flows,
        drafts_page="ops.draft" in views,
        history_page="ops.history" in views,
        when=when,
    )


@bp.get("/flows/<flow>", endpoint="flow")
@readable
def flow_page(flow: str) -> Any:
    """A version of a flow drawn as a diagram, with the chosen node's panel."""
    settings = _settings()
    if flow not in flow_names(settings):
        abort(404, f"There is no flow named {flow!r}.")
    asked = request.args.get("version", "").strip() or None
    shown = shown_version(settings, flow, asked)
    node_id = request.args.get("node", "").strip() or None
    panel = None
    if shown.loaded is not None and node_id is not None and node_id in shown.loaded.flow.nodes:
        panel = node_panel(shown.loaded, node_id)

    def link(target: str) -> str:
        return url_for("ops.flow", flow=flow, version=asked, node=target)

    diagram = None
    if shown.loaded is not None:
        diagram = render_diagram(shown.loaded.flow, link=link, selected=node_id)
    views = current_app.view_functions
    return render_template(
        "ops/flow.html",
        name=flow,
        asked=asked,
        shown=shown,
        flow=shown.loaded.flow if shown.loaded else None,
        diagram=diagram,
        node_id=node_id,
        panel=panel,
        link=link,
        when=when,
        draft=db.session().get(FlowDraft, flow),
        drafts_page="ops.draft" in views,
        history_page="ops.history" in views,
        simulator_page="ops.simulator" in views,
    )


def shown_version(settings: Settings, flow: str, asked: str | None) -> Shown:
    """The version asked for (404 when there is none), else the live one, else the
    working files."""
    session = db.session()
    live = store.live_row(session, flow)
    row: FlowVersion | None
    if asked is not None:
        row = store.find_version(session, flow, asked)
        if row is None:
            if len(asked) < 4:
                abort(404, f"Version {asked!r} is too short: give at least 4 characters of an id.")
            abort(
                404,
                f"Flow {flow!r} has no version {asked!r} (none, or several, start with it)."
                " Its versions are listed in its history.",
            )
    else:
        row = live.version_row if live is not None else None
    is_live = row is not None and live is not None and live.version_id == row.id
    try:
        if row is not None:
            loaded = store.load_version(row, settings.default_region)
        else:
            loaded = store.read_draft(
                settings.flows_dir, settings.prompts_dir, flow, settings.default_region
            ).loaded
    except InvalidDefinition as exc:
        return Shown(row, is_live, None, exc.problems)
    return Shown(row, is_live, loaded, [])


def node_panel(loaded: LoadedFlow, node_id: str) -> NodePanel:
    """One node's fields, exits and prompts (in every language of the flow)."""
    flow, catalog = loaded.flow, loaded.catalog
    row = next(row for row in outline_rows(flow, catalog) if row.node == node_id)
    node = flow.nodes[node_id]
    fields = []
    for spec in dataclasses.fields(node):
        value = getattr(node, spec.name)
        if (
            spec.name in _SHOWN_ELSEWHERE
            or not spec.compare
            or spec.metadata.get("internal")
            or spec.metadata.get("ref") in (NODE, PROMPT, LANGUAGE)
            or spec.metadata.get("choices")
            or value is None
        ):
            continue
        fields.append((spec.name, str(value)))
    exits = [(exit_name(port.exit), port.target) for port in node_spec(node).ports]
    prompts = [
        NodePrompt(
            field,
            key,
            [
                PromptText(language, catalog.languages[language].texts.get(key))
                for language in flow.languages
            ],
        )
        for field, key in row.prompts.items()
    ]
    incoming = [
        (source, name)
        for source, other in flow.nodes.items()
        for name, target in other.transitions().items()
        if target == node_id
    ]
    return NodePanel(
        id=node_id,
        row=row,
        exits=exits,
        languages=[(key, value) for key, value in row.keys.items() if value not in flow.nodes],
        fields=fields,
        prompts=prompts,
        incoming=incoming,
    )


def when(moment: datetime | None) -> str:
    """A stored time as the console shows it (UTC; SQLite hands back naive UTC)."""
    if moment is None:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
