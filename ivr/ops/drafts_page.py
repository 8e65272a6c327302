"""Editing a flow's draft in the browser: prompts per language and node fields through
forms, validated on every save, and starting or discarding the draft.

Views are thin: the draft and its edits are `ivr.versions.drafts`. Reviewing,
publishing, the history and rollback are `ivr.ops.publish_page`; what both pages need
(the flow and its draft, 404s, problems with links) is `ivr.ops.draft_common`.
Every POST redirects (post/redirect/get) unless the form has errors to show.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from markupsafe import Markup

from ivr.errors import DefinitionProblem, InvalidDefinition
from ivr.flow.loader.prompts import allowed_placeholders
from ivr.flow.model import Flow, Node
from ivr.ops import diagram_view
from ivr.ops import draft_common as common
from ivr.ops.blueprint import bp, editable, readable, staff_name
from ivr.ops.draft_forms import (
    EXTRA_ROWS,
    RevisionForm,
    is_mapping,
    mapping_rows,
    node_form,
    prompt_form,
)
from ivr.storage import db
from ivr.storage.models import FlowDraft
from ivr.versions import draft_reading, drafts, store


def _diagram(flow: Flow | None, problems: list[DefinitionProblem], link: Any) -> Markup | None:
    if flow is None:
        return None
    return diagram_view.render_diagram(
        flow, link=link, findings=diagram_view.findings_of(problems, flow)
    )


# ---------------------------------------------------------------- the draft


@bp.get("/flows/<flow>/draft")
@readable
def draft(flow: str) -> Any:
    """The draft of a flow: its problems, its diagram, its nodes and prompts to edit."""
    common.known_flow(flow)
    session = db.session()
    row = drafts.get(session, flow)
    live = store.live_row(session, flow)
    if row is None:
        return render_template("ops/draft.html", flow=flow, row=None, live=live)
    problems = drafts.problems_of(row, common.region())
    shown = (
        drafts.loaded(row, common.region()).loaded.flow
        if not problems
        else draft_reading.sketch(row)
    )
    diagram = _diagram(
        shown, problems, lambda node_id: url_for("ops.draft_node", flow=flow, node_id=node_id)
    )
    users = draft_reading.prompt_users(row)
    languages = draft_reading.languages(row)
    system = sorted(
        {k for language in languages for k in draft_reading.prompt_texts(row, language)}
        - set(users)
    )
    return render_template(
        "ops/draft.html",
        flow=flow,
        row=row,
        live=live,
        problems=common.problem_items(row, problems),
        diagram=diagram,
        nodes={node_id: raw.get("type") for node_id, raw in draft_reading.raw_nodes(row).items()},
        users=users,
        system=system,
        confirm_discard=request.args.get("discard") == "1",
        simulator=common.link("ops.simulator", flow=flow, version="draft"),
        form=RevisionForm(data={"revision": row.revision}),
    )


@bp.post("/flows/<flow>/draft")
@editable
def draft_start(flow: str) -> Any:
    """Start the draft from the live version (or the working files before any publish)."""
    common.known_flow(flow)
    settings = common.settings()
    try:
        row = drafts.start(
            db.session(),
            flow,
            staff_name(),
            flows_dir=settings.flows_dir,
            prompts_dir=settings.prompts_dir,
            region=settings.default_region,
            note=drafts.Note("ops.draft_started", {"flow": flow}),
        )
    except drafts.DraftError as exc:
        flash(str(exc), "error")
        return redirect(url_for("ops.draft", flow=flow), 303)
    except InvalidDefinition as exc:
        flash(f"The working files of {flow} do not load ({len(exc.problems)} problem(s)).", "error")
        return redirect(url_for("ops.draft", flow=flow), 303)
    flash(f"Draft started from {common.based(row)}.", "ok")
    return redirect(url_for("ops.draft", flow=flow), 303)


@bp.post("/flows/<flow>/draft/discard")
@editable
def draft_discard(flow: str) -> Any:
    """Discard the draft (after the confirmation step on the draft page)."""
    common.draft_or_404(flow)
    form = RevisionForm()
    if not form.validate():
        abort(400, "The discard form was incomplete. Reload and try again.")
    try:
        drafts.discard(
            db.session(),
            flow,
            revision=form.revision.data,
            by=staff_name(),
            note=drafts.Note("ops.draft_discarded", {"flow": flow}),
        )
    except drafts.DraftError as exc:
        flash(str(exc), "error")
        return redirect(url_for("ops.draft", flow=flow), 303)
    flash("Draft discarded.", "ok")
    return redirect(url_for("ops.draft", flow=flow), 303)


# ---------------------------------------------------------------- a node


@bp.route("/flows/<flow>/draft/nodes/<node_id>", methods=["GET", "POST"])
@readable
def draft_node(flow: str, node_id: str) -> Any:
    """A node's fields as a form (GET for everyone, POST saves: ops only)."""
    if request.method == "POST":
        return _save_node(flow, node_id)
    row = common.draft_or_404(flow)
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
    row = common.draft_or_404(flow)
    raw = _raw_node(row, node_id)
    form = _node_form(row, node_id)
    valid = form.validate()
    mappings = {name: mapping_rows(form, name) for name, s in form.specs.items() if is_mapping(s)}
    if not valid or any(value is None for value in mappings.values()):
        return _node_page(row, node_id, form, status=common.INVALID)
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
            region=common.region(),
            note=drafts.Note(
                "ops.draft_edited",
                {
                    "flow": flow,
                    "node": node_id,
                    "fields": sorted(changes),
                    "values": {name: _brief(value) for name, value in changes.items()},
                },
            ),
        )
    except drafts.DraftError as exc:
        return _node_page(row, node_id, form, status=409, refused=str(exc))
    _flash_saved(saved)
    return redirect(url_for("ops.draft_node", flow=flow, node_id=node_id), 303)


def _brief(value: Any) -> Any:
    """A changed value for the audit record: as set (None: removed), long text cut."""
    if isinstance(value, Mapping):
        return {str(k): _brief(v) for k, v in value.items()}
    return value[:200] if isinstance(value, str) else value


def _raw_node(row: FlowDraft, node_id: str) -> Mapping[str, Any]:
    raw = draft_reading.raw_nodes(row).get(node_id)
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
    languages = draft_reading.languages(row)
    keys = sorted({k for language in languages for k in draft_reading.prompt_texts(row, language)})
    return node_form(
        node_class,
        node_ids=list(draft_reading.raw_nodes(row)),
        languages=languages,
        prompt_keys=keys,
        region=common.region(),
        **kwargs,
    )


def _node_page(
    row: FlowDraft, node_id: str, form: Any, *, status: int = 200, refused: str | None = None
) -> Any:
    problems = [p for p in drafts.problems_of(row, common.region()) if p.where == node_id]
    node = draft_reading.parsed_nodes(row).get(node_id)
    prompts = sorted(set(node.prompts().values())) if node is not None else []
    languages = draft_reading.languages(row)
    texts = {language: draft_reading.prompt_texts(row, language) for language in languages}
    page = render_template(
        "ops/draft_node.html",
        flow=row.flow,
        row=row,
        node_id=node_id,
        node_type=_raw_node(row, node_id).get("type"),
        form=form,
        problems=common.problem_items(row, problems),
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
    row = common.draft_or_404(flow)
    languages, present = _prompt_languages(row, key)
    data: dict[str, Any] = {"revision": row.revision}
    for index, language in enumerate(languages):
        data[f"text_{index}"] = present.get(language) or ""
    form = prompt_form(languages, {lang: lang in present for lang in languages}, data=data)
    return _prompt_page(row, key, form)


@editable
def _save_prompt(flow: str, key: str) -> Any:
    row = common.draft_or_404(flow)
    languages, present = _prompt_languages(row, key)
    form = prompt_form(languages, {lang: lang in present for lang in languages})
    if not form.validate():
        return _prompt_page(row, key, form, status=common.INVALID)
    texts = {}
    for index, language in enumerate(languages):
        text = str(form[f"text_{index}"].data or "").strip()
        if text:
            texts[language] = text
    changed = {
        language: text[:200]
        for language, text in texts.items()
        if " ".join(text.split()) != " ".join((present.get(language) or "").split())
    }
    try:
        saved = drafts.set_prompts(
            db.session(),
            row,
            key,
            texts,
            revision=form.revision.data,
            by=staff_name(),
            region=common.region(),
            note=drafts.Note("ops.draft_edited", {"flow": flow, "prompt": key, "texts": changed}),
        )
    except drafts.DraftError as exc:
        return _prompt_page(row, key, form, status=409, refused=str(exc))
    _flash_saved(saved)
    return redirect(url_for("ops.draft_prompt", flow=flow, key=key), 303)


def _prompt_languages(row: FlowDraft, key: str) -> tuple[list[str], dict[str, str]]:
    """The flow's languages and the prompt's text in those that have it (404: unknown)."""
    languages = draft_reading.languages(row)
    present = {}
    for language in languages:
        text = draft_reading.prompt_texts(row, language).get(key)
        if text is not None:
            present[language] = " ".join(text.split())
    if not present and key not in draft_reading.prompt_users(row):
        abort(404, f"No node of {row.flow} uses a prompt {key!r} and no language has it.")
    return languages, present


def _prompt_page(
    row: FlowDraft, key: str, form: Any, *, status: int = 200, refused: str | None = None
) -> Any:
    languages = draft_reading.languages(row)
    users = draft_reading.prompt_users(row).get(key, [])
    nodes = draft_reading.parsed_nodes(row)
    beside: dict[str, list[dict[str, Any]]] = {language: [] for language in languages}
    general = []
    for item in common.problem_items(row, drafts.problems_of(row, common.region())):
        problem = item["problem"]
        if problem.file.startswith("prompts/") and problem.where == key:
            language = problem.file.removeprefix("prompts/").removesuffix(".yaml")
            beside.setdefault(language, []).append(item)
        elif (
            problem.where in users
            and common.prompt_of(nodes.get(problem.where), problem.field) == key
        ):
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
        allowed=sorted(allowed_placeholders(key)),
        refused=refused,
    )
    return page, status
