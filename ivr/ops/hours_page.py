"""The line's emergency switch: `/ops/hours` shows whether the line is closed, since
when, by whom and with which message, and the closures before; ops close it (with a
message chosen among the live version's prompts) or open it again, without a publish.

Views are thin: closing and opening are `ivr.hours.closures` (the CLI's own
operations, which audit them, `line.closed` / `line.opened`, as `ops:<username>`).
Supervisors read the page; only ops switch; agents get nothing (the blueprint's
roles). Every POST redirects (post/redirect/get) unless the form has errors to show.
"""

from __future__ import annotations

from typing import Any

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from wtforms import HiddenField, IntegerField, SelectField
from wtforms.validators import AnyOf, Optional

from ivr.errors import InvalidDefinition
from ivr.flow.model import Catalog
from ivr.hours import closures, messages
from ivr.hours.status import CACHE_SECONDS
from ivr.ops.blueprint import bp, editable, readable, staff_name
from ivr.ops.draft_common import INVALID
from ivr.storage import db

CLOSE, OPEN = "close", "open"
CHOOSE = "Choose a message the live version has in every language."


class SwitchForm(FlaskForm):
    """Close (with a message) or open the line. The blueprint checks the CSRF token before
    any view runs, so the form carries none of its own."""

    action = HiddenField(validators=[AnyOf([CLOSE, OPEN])])
    # Opening: the closure the page showed, so a stale page cannot end a newer one.
    closure = IntegerField(validators=[Optional()])
    message = SelectField("Message callers hear", validate_choice=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, meta={"csrf": False}, **kwargs)


def _line() -> str:
    return str(current_app.config["IVR_SETTINGS"].flow)


def _catalog() -> tuple[str | None, Catalog | None]:
    """The live version and its prompts; (None, None) when it no longer loads."""
    try:
        return messages.live_catalog()
    except InvalidDefinition:
        return None, None


@bp.route("/hours", methods=["GET", "POST"])
@readable
def hours() -> Any:
    """The switch (GET); close or open the line (POST, ops only)."""
    if request.method == "POST":
        return _switch()
    return _page(SwitchForm())


@editable
def _switch() -> Any:
    form = SwitchForm()
    if not form.validate():
        abort(400, "The form was incomplete. Reload and try again.")
    session = db.session()
    if form.action.data == OPEN:
        try:
            closure = closures.reopen(session, _line(), staff_name(), form.closure.data)
        except closures.AlreadyOpen:
            flash("The line is open already; nothing was changed.", "error")
        except closures.ClosedAgain as exc:
            flash(f"{_sentence(str(exc))}; nothing was changed. Check and try again.", "error")
        else:
            flash(
                f"The line is open again (it was closed {closures.describe(closure)}). Every"
                f" server takes it within {CACHE_SECONDS:g} seconds.",
                "ok",
            )
        return redirect(url_for("ops.hours"), 303)
    version, catalog = _catalog()
    key = str(form.message.data or "").strip()
    if catalog is None:
        form.message.errors = ["The live version no longer loads; its prompts cannot be checked."]
        return _page(form, status=INVALID)
    if not key:
        form.message.errors = [CHOOSE]
        return _page(form, status=INVALID)
    try:
        messages.check(key, catalog)
    except messages.UnknownMessage as exc:
        form.message.errors = [f"{_sentence(str(exc))}. {CHOOSE}"]
        return _page(form, status=INVALID)
    try:
        closures.close(session, _line(), key, staff_name())
    except closures.AlreadyClosed as exc:
        flash(f"{_sentence(str(exc))}; nothing was changed.", "error")
        return redirect(url_for("ops.hours"), 303)
    flash(
        f"The line is closed: callers hear {key} (live version {version}). Every server"
        f" takes it within {CACHE_SECONDS:g} seconds.",
        "ok",
    )
    return redirect(url_for("ops.hours"), 303)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _page(form: SwitchForm, *, status: int = 200) -> Any:
    session = db.session()
    line = _line()
    version, catalog = _catalog()
    choices = messages.speakable(catalog) if catalog is not None else []
    form.message.choices = [("", "(choose a message)"), *((key, key) for key in choices)]
    now = closures.current(session, line)
    texts: dict[str, str] = {}
    if now is not None and catalog is not None:
        texts = {
            lang: prompts.texts[now.message]
            for lang, prompts in catalog.languages.items()
            if now.message in prompts.texts
        }
    # What each choice says, in the flow's first language, to choose by.
    first = next(iter(catalog.languages.values()), None) if catalog is not None else None
    previews = {key: first.texts[key] for key in choices} if first is not None else {}
    page = render_template(
        "ops/hours.html",
        line=line,
        closure=now,
        texts=texts,
        history=closures.history(session, line),
        form=form,
        version=version,
        previews=previews,
        cache_seconds=CACHE_SECONDS,
        iso=closures.iso,
    )
    return page, status
