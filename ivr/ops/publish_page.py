"""Publishing a flow's draft and going back: the review (the semantic diff against the
live version, and why a publish would be refused now), publish, the history of
published versions with a diff against the live one, and rollback.

Views are thin: publishing and rollback are `ivr.versions.publish` (the CLI's own
operations, which audit them); the draft is `ivr.versions.drafts`, reached through
`ivr.ops.draft_common` like the editing pages. Every POST redirects
(post/redirect/get) unless the form has errors to show.

Both make a version live only if the live version is still the one the person saw
(the draft's `based_on`; the version the confirmation page named), checked in the
database as it writes; and a stored version that fails today's checks is marked in
the history and never offered, since every new call would fail on it.
"""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for

from ivr.errors import InvalidDefinition
from ivr.flow.diff import FlowDiff, diff_flows
from ivr.ops import draft_common as common
from ivr.ops.blueprint import bp, editable, readable, staff_name
from ivr.ops.draft_forms import ReviewForm, RollbackForm
from ivr.storage import db, kv
from ivr.storage.models import FlowDraft, FlowVersion, LiveFlow
from ivr.versions import drafts, publish, store

# ---------------------------------------------------------------- review and publish


def _live_loaded(flow: str) -> tuple[Any, store.LoadedFlow | None]:
    live = store.live_row(db.session(), flow)
    if live is None:
        return None, None
    try:
        return live, store.load_version(live.version_row, common.region())
    except InvalidDefinition:
        return live, None


def _review_state(row: FlowDraft) -> tuple[Any, FlowDiff | None, list[str], list[Any]]:
    """The live row, the diff, why a publish would be refused now, and the problems."""
    live, live_loaded = _live_loaded(row.flow)
    reasons: list[str] = []
    items: list[Any] = []
    changes = None
    try:
        checked = drafts.loaded(row, common.region())
    except InvalidDefinition as exc:
        items = common.problem_items(row, exc.problems)
        reasons.append(f"The draft has {len(exc.problems)} problem(s); fix them first.")
        checked = None
    if live is not None and row.based_on != live.version_row.version:
        reasons.append(
            f"The live version changed since this draft was started (from {common.based(row)}; live"
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
    row = common.draft_or_404(flow)
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
    row = common.draft_or_404(flow)
    form = ReviewForm()
    if not form.validate():
        return _review_page(row, form, status=common.INVALID)
    _, _, reasons, _ = _review_state(row)
    if form.revision.data != row.revision:
        reasons.insert(0, drafts.STALE + " and review the changes again.")
    if reasons:
        return _review_page(row, form, status=409, refused=reasons)
    checked = drafts.loaded(row, common.region())
    # The draft goes in the publish's own transaction: a version is live and its draft
    # gone, or neither. (Removed rather than kept as "published": the version keeps the
    # files, and the next draft must start from whatever is live then.)
    try:
        drafts.take(session, flow, revision=row.revision)
        outcome = publish.publish_draft(
            session,
            kv.client(),
            checked,
            by=staff_name(),
            message=form.message.data.strip(),
            expected=row.based_on,
        )
    except drafts.StaleDraft:
        return _review_page(row, form, status=409, refused=[drafts.STALE])
    except publish.LiveChanged as exc:  # another publish landed since the checks above
        return _review_page(row, form, status=409, refused=[_sentence(str(exc))])
    except Exception:
        session.rollback()
        raise
    if outcome.status == publish.UNCHANGED:  # the checks above make this a race
        session.rollback()
        flash("The live version already has this content; nothing was published.", "error")
        return redirect(url_for("ops.review", flow=flow), 303)
    flash(f"Version {outcome.version} is live.{_pointer_note(outcome)}", "ok")
    return redirect(url_for("ops.history", flow=flow), 303)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


def _pointer_note(outcome: publish.Outcome) -> str:
    """What to add to the success message when Redis did not take the live pointer."""
    return "" if outcome.pointer_set else f" Note: {publish.POINTER_NOTE}."


# ---------------------------------------------------------------- history and rollback


@bp.get("/flows/<flow>/history")
@readable
def history(flow: str) -> Any:
    """Every published version, the live one marked, and those that no longer pass
    today's checks (never offered to go live); `?diff=<version>` compares one with the
    live version."""
    session = db.session()
    rows = store.history(session, flow)
    if not rows:
        common.known_flow(flow)
    live = store.live_row(session, flow)
    changes = None
    compared = request.args.get("diff")
    if compared and live is not None:
        target = store.find_version(session, flow, compared)
        if target is None:
            abort(404, f"{flow} has no version {compared!r}.")
        try:
            old = store.load_version(target, common.region())
            new = store.load_version(live.version_row, common.region())
        except InvalidDefinition:
            abort(409, f"Version {compared} no longer loads; it cannot be compared.")
        changes = diff_flows((old.flow, old.catalog), (new.flow, new.catalog))
    live_at = next((i for i, r in enumerate(rows) if live and r.id == live.version_id), None)
    return render_template(
        "ops/history.html",
        flow=flow,
        rows=rows,
        live=live,
        changes=changes,
        compared=compared,
        # Newest first: the versions listed above the live one were published after it.
        newer={r.id for r in rows[:live_at]} if live_at is not None else set(),
        # The live one too: a rule added since it was published can leave it unloadable
        # (new calls then get the apology), and ops must see that here.
        refusals={r.id: _refusal(r) for r in rows},
        view_url=lambda version: common.link("ops.flow", flow=flow, version=version),
    )


def _refusal(row: FlowVersion) -> list[str]:
    """Why `row` cannot be made live today (empty: it can)."""
    return [str(problem) for problem in store.version_problems(row, common.region())]


def _newer_than_live(row: FlowVersion, live: LiveFlow) -> bool:
    current = live.version_row
    return (row.published_at, row.id) > (current.published_at, current.id)


@bp.route("/flows/<flow>/history/<version>/rollback", methods=["GET", "POST"])
@readable
def rollback(flow: str, version: str) -> Any:
    """Confirm (GET), then make `version` live (again) (POST, ops only); a version that
    no longer passes today's checks is refused on both."""
    session = db.session()
    target = store.find_version(session, flow, version)
    live = store.live_row(session, flow)
    if target is None or live is None:
        abort(404, f"{flow} has no version {version!r} to roll back to.")
    if request.method == "POST":
        return _rollback(flow, target.version)
    form = RollbackForm(data={"live": live.version_row.version})
    refusal = [] if target.id == live.version_id else _refusal(target)
    page = render_template(
        "ops/history.html",
        flow=flow,
        confirm=target,
        live=live,
        form=form,
        newer=_newer_than_live(target, live),
        refusal=refusal,
    )
    return page, 409 if refusal else 200


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
        outcome = publish.rollback(
            session,
            kv.client(),
            flow=flow,
            to=version,
            by=staff_name(),
            region=common.region(),
            expected=form.live.data,
        )
    except publish.NoLongerValid as exc:
        flash(f"Refused: {exc}; nothing was changed (the reasons are in the history).", "error")
        return redirect(url_for("ops.history", flow=flow), 303)
    except (LookupError, publish.LiveChanged) as exc:
        flash(_sentence(str(exc.args[0])), "error")
        return redirect(url_for("ops.history", flow=flow), 303)
    if outcome.status == publish.UNCHANGED:
        flash(f"Version {outcome.version} is live already.", "ok")
    else:
        flash(
            f"Version {outcome.version} is live again (was {outcome.previous})."
            f"{_pointer_note(outcome)}",
            "ok",
        )
    return redirect(url_for("ops.history", flow=flow), 303)
