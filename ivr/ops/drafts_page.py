"""Editing a flow's draft in the browser: prompts per language and node fields through
forms, validated on every save; the review (semantic diff against the live version) and
publish; the history with rollback.

Views are thin: the draft and its edits are `ivr.versions.drafts`, publishing and
rollback are `ivr.versions.publish` (the CLI's own operations, which audit them).
Every POST redirects (post/redirect/get) unless the form has errors to show.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from markupsafe import Markup

from ivr.config import Settings
from ivr.errors import DefinitionProblem, InvalidDefinition
from ivr.flow.diff import FlowDiff, diff_flows
from ivr.flow.model import Flow, Node
from ivr.ops import diagram_view
from ivr.ops.blueprint import audit, bp, editable, readable, staff_name
from ivr.ops.draft_forms import (
    EXTRA_ROWS,
    ReviewForm,
    RevisionForm,
    RollbackForm,
    is_mapping,
    mapping_rows,
    node_form,
    prompt_form,
)
from ivr.storage import db, kv
from ivr.storage.models import FlowDraft
from ivr.versions import drafts, publish, store

INVALID = 422  # a form with errors, shown again
FLOW_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _settings() -> Settings:
    settings: Settings = current_app.config["IVR_SETTINGS"]
    return settings


def _region() -> str:
    return _settings().default_region


def _link(endpoint: str, **values: Any) -> str | None:
    """A URL to another page of the console, or None while that page is not wired in."""
    return url_for(endpoint, **values) if endpoint in current_app.view_functions else None


def _draft_or_404(flow: str) -> FlowDraft:
    row = drafts.get(db.session(), flow)
    if row is None:
        abort(404, f"Flow {flow!r} has no draft. Start one from the draft page.")
    return row


def _known_flow(flow: str) -> None:
    """404 unless `flow` is published, drafted or a working file."""
    session = db.session()
    if not FLOW_NAME.match(flow) or (
        store.live_row(session, flow) is None
        and drafts.get(session, flow) is None
        and not (_settings().flows_dir / f"{flow}.yaml").is_file()
    ):
        abort(404, f"There is no flow {flow!r}.")


# ---------------------------------------------------------------- problems


def _problem_items(row: FlowDraft, problems: list[DefinitionProblem]) -> list[dict[str, Any]]:
    """Each problem with links to the node and the prompt it concerns."""
    nodes = drafts.parsed_nodes(row)
    raw_ids = set(drafts.raw_nodes(row))
    items = []
    for problem in problems:
        node_url = prompt_url = None
        if problem.file == drafts.flow_file(row) and problem.where in raw_ids:
            node_url = url_for("ops.draft_node", flow=row.flow, node_id=problem.where)
            key = _prompt_of(nodes.get(problem.where), problem.field)
            if key:
                prompt_url = url_for("ops.draft_prompt", flow=row.flow, key=key)
        elif problem.file.startswith("prompts/") and drafts.PROMPT_KEY.match(problem.where):
            prompt_url = url_for("ops.draft_prompt", flow=row.flow, key=problem.where)
        items.append({"problem": problem, "node_url": node_url, "prompt_url": prompt_url})
    return items


def _prompt_of(node: Any, field: str) -> str | None:
    if node is None or not field:
        return None
    key: str | None = node.prompts().get(field)
    return key


def _has_static(name: str) -> bool:
    return bp.static_folder is not None and (Path(bp.static_folder) / name).is_file()


def _findings(problems: list[DefinitionProblem], flow: Flow) -> Any:
    findings_of = getattr(diagram_view, "findings_of", None)
    return findings_of(problems, flow) if findings_of is not None else ()


def _diagram(flow: Flow | None, problems: list[DefinitionProblem], link: Any) -> Markup | None:
    if flow is None:
        return None
    return diagram_view.render_diagram(flow, link=link, findings=_findings(problems, flow))


# ---------------------------------------------------------------- the draft


@bp.get("/flows/<flow>/draft")
@readable
def draft(flow: str) -> Any:
    """The draft of a flow: its problems, its diagram, its nodes and prompts to edit."""
    _known_flow(flow)
    session = db.session()
    row = drafts.get(session, flow)
    live = store.live_row(session, flow)
    if row is None:
        return render_template("ops/draft.html", flow=flow, row=None, live=live)
    problems = drafts.problems_of(row, _region())
    shown = drafts.loaded(row, _region()).loaded.flow if not problems else drafts.sketch(row)
    diagram = _diagram(
        shown, problems, lambda node_id: url_for("ops.draft_node", flow=flow, node_id=node_id)
    )
    users = drafts.prompt_users(row)
    languages = drafts.languages(row)
    system = sorted(
        {k for language in languages for k in drafts.prompt_texts(row, language)} - set(users)
    )
    return render_template(
        "ops/draft.html",
        flow=flow,
        row=row,
        live=live,
        problems=_problem_items(row, problems),
        diagram=diagram,
        nodes={node_id: raw.get("type") for node_id, raw in drafts.raw_nodes(row).items()},
        users=users,
        system=system,
        confirm_discard=request.args.get("discard") == "1",
        simulator=_link("ops.simulator", flow=flow, version="draft"),
        diagram_js=_has_static("diagram.js"),
        form=RevisionForm(data={"revision": row.revision}),
    )


@bp.post("/flows/<flow>/draft")
@editable
def draft_start(flow: str) -> Any:
    """Start the draft from the live version (or the working files before any publish)."""
    _known_flow(flow)
    settings = _settings()
    try:
        row = drafts.start(
            db.session(),
            flow,
            staff_name(),
            flows_dir=settings.flows_dir,
            prompts_dir=settings.prompts_dir,
            region=settings.default_region,
        )
    except drafts.DraftError as exc:
        flash(str(exc), "error")
        return redirect(url_for("ops.draft", flow=flow), 303)
    except InvalidDefinition as exc:
        flash(f"The working files of {flow} do not load ({len(exc.problems)} problem(s)).", "error")
        return redirect(url_for("ops.draft", flow=flow), 303)
    audit("ops.draft_started", {"flow": flow, "based_on": row.based_on})
    flash(f"Draft started from {_based(row)}.", "ok")
    return redirect(url_for("ops.draft", flow=flow), 303)


@bp.post("/flows/<flow>/draft/discard")
@editable
def draft_discard(flow: str) -> Any:
    """Discard the draft (after the confirmation step on the draft page)."""
    row = _draft_or_404(flow)
    form = RevisionForm()
    if not form.validate():
        abort(400, "The discard form was incomplete. Reload and try again.")
    try:
        drafts.discard(db.session(), flow, revision=form.revision.data)
    except drafts.DraftError as exc:
        flash(str(exc), "error")
        return redirect(url_for("ops.draft", flow=flow), 303)
    audit("ops.draft_discarded", {"flow": flow, "revision": row.revision})
    flash("Draft discarded.", "ok")
    return redirect(url_for("ops.draft", flow=flow), 303)


def _based(row: FlowDraft) -> str:
    return f"version {row.based_on}" if row.based_on else "the working files"


# ---------------------------------------------------------------- a node


@bp.route("/flows/<flow>/draft/nodes/<node_id>", methods=["GET", "POST"])
@readable
def draft_node(flow: str, node_id: str) -> Any:
    """A node's fields as a form (GET for everyone, POST saves: ops only)."""
    if request.method == "POST":
        return _save_node(flow, node_id)
    row = _draft_or_404(flow)
    raw = _raw_node(row, node_id)
    data: dict[str, Any] = {"revision": row.revision}
    for spec in fields(_node_class(row, node_id)):
        value = raw.get(spec.name)
        if is_mapping(spec):
            written = value.items() if isinstance(value, Mapping) else ()
            rows = [{"key": k, "value": v} for k, v in written]
            data[spec.name] = rows + [{"key": "", "value": ""}] * EXTRA_ROWS
        elif value is not None and not spec.metadata.get("internal"):
            data[spec.name] = value
    return _node_page(row, node_id, _node_form(row, node_id, data=data))


@editable
def _save_node(flow: str, node_id: str) -> Any:
    row = _draft_or_404(flow)
    raw = _raw_node(row, node_id)
    form = _node_form(row, node_id)
    valid = form.validate()
    mappings = {name: mapping_rows(form, name) for name, s in form.specs.items() if is_mapping(s)}
    if not valid or any(value is None for value in mappings.values()):
        return _node_page(row, node_id, form, status=INVALID)
    changes: dict[str, Any] = {}
    for name, spec in form.specs.items():
        if is_mapping(spec):
            value: Any = mappings[name] or None
        else:
            value = form[name].data
            if isinstance(value, str):
                value = value.strip() or None
        old = raw.get(name)
        if (dict(old) if isinstance(old, Mapping) else old) != value:
            changes[name] = value
    try:
        saved = drafts.set_node_fields(
            db.session(),
            row,
            node_id,
            changes,
            revision=form.revision.data,
            by=staff_name(),
            region=_region(),
        )
    except drafts.DraftError as exc:
        return _node_page(row, node_id, form, status=409, refused=str(exc))
    if saved.changed:
        audit(
            "ops.draft_edited",
            {
                "flow": flow,
                "node": node_id,
                "fields": sorted(changes),
                "values": {name: _brief(value) for name, value in changes.items()},
                "revision": saved.revision,
            },
        )
    _flash_saved(saved)
    return redirect(url_for("ops.draft_node", flow=flow, node_id=node_id), 303)


def _brief(value: Any) -> Any:
    """A changed value for the audit record: as set (None: removed), long text cut."""
    if isinstance(value, Mapping):
        return {str(k): _brief(v) for k, v in value.items()}
    return value[:200] if isinstance(value, str) else value


def _raw_node(row: FlowDraft, node_id: str) -> Mapping[str, Any]:
    raw = drafts.raw_nodes(row).get(node_id)
    if not isinstance(raw, Mapping):
        abort(404, f"The draft of {row.flow} has no node {node_id!r}.")
    return raw


def _node_class(row: FlowDraft, node_id: str) -> type[Node]:
    try:
        return drafts.node_type(row, node_id)
    except drafts.DraftError as exc:
        abort(404, str(exc))


def _node_form(row: FlowDraft, node_id: str, **kwargs: Any) -> Any:
    node_class = _node_class(row, node_id)
    languages = drafts.languages(row)
    keys = sorted({k for language in languages for k in drafts.prompt_texts(row, language)})
    return node_form(
        node_class,
        node_ids=list(drafts.raw_nodes(row)),
        languages=languages,
        prompt_keys=keys,
        region=_region(),
        **kwargs,
    )


def _node_page(
    row: FlowDraft, node_id: str, form: Any, *, status: int = 200, refused: str | None = None
) -> Any:
    problems = [p for p in drafts.problems_of(row, _region()) if p.where == node_id]
    node = drafts.parsed_nodes(row).get(node_id)
    prompts = sorted(set(node.prompts().values())) if node is not None else []
    languages = drafts.languages(row)
    texts = {language: drafts.prompt_texts(row, language) for language in languages}
    page = render_template(
        "ops/draft_node.html",
        flow=row.flow,
        row=row,
        node_id=node_id,
        node_type=_raw_node(row, node_id).get("type"),
        form=form,
        problems=_problem_items(row, problems),
        prompts=prompts,
        languages=languages,
        texts=texts,
        refused=refused,
    )
    return page, status


def _flash_saved(saved: drafts.Saved) -> None:
    if not saved.changed:
        flash("Nothing changed.", "ok")
    elif saved.problems:
        flash(
            f"Saved (revision {saved.revision}), with {len(saved.problems)} problem(s) to fix"
            " before it can be published.",
            "error",
        )
    else:
        flash(f"Saved (revision {saved.revision}). The draft passes every check.", "ok")


# ---------------------------------------------------------------- a prompt


@bp.route("/flows/<flow>/draft/prompts/<key>", methods=["GET", "POST"])
@readable
def draft_prompt(flow: str, key: str) -> Any:
    """A prompt's text in every language of the flow, on one form."""
    if request.method == "POST":
        return _save_prompt(flow, key)
    row = _draft_or_404(flow)
    languages, present = _prompt_languages(row, key)
    data: dict[str, Any] = {"revision": row.revision}
    for index, language in enumerate(languages):
        data[f"text_{index}"] = present.get(language) or ""
    form = prompt_form(languages, {lang: lang in present for lang in languages}, data=data)
    return _prompt_page(row, key, form)


@editable
def _save_prompt(flow: str, key: str) -> Any:
    row = _draft_or_404(flow)
    languages, present = _prompt_languages(row, key)
    form = prompt_form(languages, {lang: lang in present for lang in languages})
    if not form.validate():
        return _prompt_page(row, key, form, status=INVALID)
    texts = {}
    for index, language in enumerate(languages):
        text = str(form[f"text_{index}"].data or "").strip()
        if text:
            texts[language] = text
    try:
        saved = drafts.set_prompts(
            db.session(),
            row,
            key,
            texts,
            revision=form.revision.data,
            by=staff_name(),
            region=_region(),
        )
    except drafts.DraftError as exc:
        return _prompt_page(row, key, form, status=409, refused=str(exc))
    if saved.changed:
        changed = {
            language: text[:200]
            for language, text in texts.items()
            if " ".join(text.split()) != " ".join((present.get(language) or "").split())
        }
        audit(
            "ops.draft_edited",
            {"flow": flow, "prompt": key, "texts": changed, "revision": saved.revision},
        )
    _flash_saved(saved)
    return redirect(url_for("ops.draft_prompt", flow=flow, key=key), 303)


def _prompt_languages(row: FlowDraft, key: str) -> tuple[list[str], dict[str, str]]:
    """The flow's languages and the prompt's text in those that have it (404: unknown)."""
    languages = drafts.languages(row)
    present = {}
    for language in languages:
        text = drafts.prompt_texts(row, language).get(key)
        if text is not None:
            present[language] = " ".join(text.split())
    if not present and key not in drafts.prompt_users(row):
        abort(404, f"No node of {row.flow} uses a prompt {key!r} and no language has it.")
    return languages, present


def _prompt_page(
    row: FlowDraft, key: str, form: Any, *, status: int = 200, refused: str | None = None
) -> Any:
    languages = drafts.languages(row)
    users = drafts.prompt_users(row).get(key, [])
    nodes = drafts.parsed_nodes(row)
    beside: dict[str, list[dict[str, Any]]] = {language: [] for language in languages}
    general = []
    for item in _problem_items(row, drafts.problems_of(row, _region())):
        problem = item["problem"]
        if problem.file.startswith("prompts/") and problem.where == key:
            language = problem.file.removeprefix("prompts/").removesuffix(".yaml")
            beside.setdefault(language, []).append(item)
        elif problem.where in users and _prompt_of(nodes.get(problem.where), problem.field) == key:
            spoken_in = [lang for lang in languages if lang in problem.message]
            for language in spoken_in or languages:
                beside[language].append(item)
            if not spoken_in:
                general.append(item)
    page = render_template(
        "ops/draft_prompt.html",
        flow=row.flow,
        row=row,
        key=key,
        form=form,
        languages=languages,
        users=users,
        beside=beside,
        general=general,
        allowed=sorted(drafts.allowed_placeholders(key)),
        refused=refused,
    )
    return page, status


# ---------------------------------------------------------------- review and publish


def _live_loaded(flow: str) -> tuple[Any, store.LoadedFlow | None]:
    live = store.live_row(db.session(), flow)
    if live is None:
        return None, None
    try:
        return live, store.load_version(live.version_row, _region())
    except InvalidDefinition:
        return live, None


def _review_state(row: FlowDraft) -> tuple[Any, FlowDiff | None, list[str], list[Any]]:
    """The live row, the diff, why a publish would be refused now, and the problems."""
    live, live_loaded = _live_loaded(row.flow)
    reasons: list[str] = []
    items: list[Any] = []
    changes = None
    try:
        checked = drafts.loaded(row, _region())
    except InvalidDefinition as exc:
        items = _problem_items(row, exc.problems)
        reasons.append(f"The draft has {len(exc.problems)} problem(s); fix them first.")
        checked = None
    if live is not None and row.based_on != live.version_row.version:
        reasons.append(
            f"The live version changed since this draft was started (from {_based(row)}; live"
            f" is now {live.version_row.version}). Discard it and start again."
        )
    if checked is not None and live_loaded is not None:
        changes = diff_flows(
            (live_loaded.flow, live_loaded.catalog),
            (checked.loaded.flow, checked.loaded.catalog),
        )
        if checked.loaded.flow.version == live.version_row.version or changes.is_empty:
            reasons.append("The draft is the live version: nothing to publish.")
    return live, changes, reasons, items


@bp.route("/flows/<flow>/review", methods=["GET", "POST"])
@readable
def review(flow: str) -> Any:
    """The draft's diff against the live version, a message, and Publish (ops only)."""
    if request.method == "POST":
        return _publish(flow)
    row = _draft_or_404(flow)
    form = ReviewForm(data={"revision": row.revision})
    return _review_page(row, form)


def _review_page(
    row: FlowDraft, form: ReviewForm, *, status: int = 200, refused: list[str] | None = None
) -> Any:
    live, changes, reasons, items = _review_state(row)
    page = render_template(
        "ops/review.html",
        flow=row.flow,
        row=row,
        live=live,
        changes=changes,
        reasons=reasons,
        problems=items,
        form=form,
        refused=refused,
        node_link=lambda node_id: url_for("ops.draft_node", flow=row.flow, node_id=node_id),
    )
    return page, status


@editable
def _publish(flow: str) -> Any:
    session = db.session()
    row = _draft_or_404(flow)
    form = ReviewForm()
    if not form.validate():
        return _review_page(row, form, status=INVALID)
    _, _, reasons, _ = _review_state(row)
    if form.revision.data != row.revision:
        reasons.insert(0, drafts.STALE + " and review the changes again.")
    if reasons:
        return _review_page(row, form, status=409, refused=reasons)
    checked = drafts.loaded(row, _region())
    # The draft goes in the publish's own transaction: a version is live and its draft
    # gone, or neither. (Removed rather than kept as "published": the version keeps the
    # files, and the next draft must start from whatever is live then.)
    try:
        drafts.take(session, flow, revision=row.revision)
        outcome = publish.publish_draft(
            session, kv.client(), checked, by=staff_name(), message=form.message.data.strip()
        )
    except drafts.StaleDraft:
        return _review_page(row, form, status=409, refused=[drafts.STALE])
    except Exception:
        session.rollback()
        raise
    if outcome.status == publish.UNCHANGED:  # the checks above make this a race
        session.rollback()
        flash("The live version already has this content; nothing was published.", "error")
        return redirect(url_for("ops.review", flow=flow), 303)
    flash(f"Version {outcome.version} is live.", "ok")
    return redirect(url_for("ops.history", flow=flow), 303)


# ---------------------------------------------------------------- history and rollback


@bp.get("/flows/<flow>/history")
@readable
def history(flow: str) -> Any:
    """Every published version, the live one marked; `?diff=<version>` compares one
    with the live version."""
    session = db.session()
    rows = store.history(session, flow)
    if not rows:
        _known_flow(flow)
    live = store.live_row(session, flow)
    changes = None
    compared = request.args.get("diff")
    if compared and live is not None:
        target = store.find_version(session, flow, compared)
        if target is None:
            abort(404, f"{flow} has no version {compared!r}.")
        try:
            old = store.load_version(target, _region())
            new = store.load_version(live.version_row, _region())
        except InvalidDefinition:
            abort(409, f"Version {compared} no longer loads; it cannot be compared.")
        changes = diff_flows((old.flow, old.catalog), (new.flow, new.catalog))
    return render_template(
        "ops/history.html",
        flow=flow,
        rows=rows,
        live=live,
        changes=changes,
        compared=compared,
        view_url=lambda version: _link("ops.flow", flow=flow, version=version),
    )


@bp.route("/flows/<flow>/history/<version>/rollback", methods=["GET", "POST"])
@readable
def rollback(flow: str, version: str) -> Any:
    """Confirm (GET), then make `version` live again (POST, ops only)."""
    session = db.session()
    target = store.find_version(session, flow, version)
    live = store.live_row(session, flow)
    if target is None or live is None:
        abort(404, f"{flow} has no version {version!r} to roll back to.")
    if request.method == "POST":
        return _rollback(flow, target.version)
    form = RollbackForm(data={"live": live.version_row.version})
    return render_template("ops/history.html", flow=flow, confirm=target, live=live, form=form)


@editable
def _rollback(flow: str, version: str) -> Any:
    session = db.session()
    form = RollbackForm()
    live = store.live_row(session, flow)
    if not form.validate() or live is None:
        abort(400, "The rollback form was incomplete. Reload and try again.")
    if form.live.data != live.version_row.version:
        flash(
            f"The live version changed meanwhile (now {live.version_row.version}); nothing was"
            " rolled back. Check the history and try again.",
            "error",
        )
        return redirect(url_for("ops.history", flow=flow), 303)
    try:
        outcome = publish.rollback(session, kv.client(), flow=flow, to=version, by=staff_name())
    except LookupError as exc:
        flash(str(exc.args[0]), "error")
        return redirect(url_for("ops.history", flow=flow), 303)
    if outcome.status == publish.UNCHANGED:
        flash(f"Version {outcome.version} is live already.", "ok")
    else:
        flash(f"Version {outcome.version} is live again (was {outcome.previous}).", "ok")
    return redirect(url_for("ops.history", flow=flow), 303)
