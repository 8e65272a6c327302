"""The audit page: publishes, rollbacks, draft edits and staff sign-ins, filterable by
person, flow and kind, each event read as a sentence.

`/ops/audit` shows the events `ivr.ops.audit_query` allows and finds (newest first,
paged by id: `?before=` / `?after=`). This module is the view, its filter form and how
an event reads: who did it and through what, a headline, the versions it names
(linked to their pages) and notes from its details. The filters are a GET form; a
value the page never offered is marked on it (400), never a 500 and never an
unfiltered list.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import current_app, render_template, request, url_for
from flask_wtf import FlaskForm
from wtforms import Field, IntegerField, StringField
from wtforms.validators import NumberRange, Optional, ValidationError

from ivr.calls.runtime import FIRST_START
from ivr.ops.audit_query import (
    DRAFT_PREFIX,
    KINDS,
    PAGE_SIZE,
    SIGN_INS,
    Page,
    Person,
    flows,
    matching,
    page_of,
    people,
    usernames,
)
from ivr.ops.blueprint import bp, readable
from ivr.storage import db
from ivr.storage.models import AuditEvent


class AuditFilter(FlaskForm):
    """The page's filters (a GET form, no CSRF: it changes nothing). Person and flow
    must be among those offered; the paging cursors are event ids."""

    class Meta:
        csrf = False

    person = StringField("Person")
    flow = StringField("Flow")
    kind = StringField("Kind")
    before = IntegerField(validators=[Optional(), NumberRange(min=1)])
    after = IntegerField(validators=[Optional(), NumberRange(min=1)])

    def __init__(self, *args: Any, people: Mapping[str, Person], flows: list[str], **kw: Any):
        super().__init__(*args, **kw)
        self.people = people
        self.flows = flows

    def validate_person(self, field: Field) -> None:
        """Someone the list offers (or nobody: everyone)."""
        if field.data and field.data not in self.people:
            raise ValidationError("Nobody by that name has done anything shown here.")

    def validate_flow(self, field: Field) -> None:
        """A flow the list offers (or none: every flow, and the events of no flow)."""
        if field.data and field.data not in self.flows:
            raise ValidationError("There is no flow by that name.")

    def validate_kind(self, field: Field) -> None:
        """One of KINDS (or none: every kind)."""
        if field.data and field.data not in KINDS:
            raise ValidationError(f"Choose one of: {', '.join(KINDS.values())}.")


# ---------------------------------------------------------------- how an event reads


_FAILED = {
    "wrong_password": "wrong password",
    "unknown_user": "no such user",
    "disabled": "the account is disabled",
    "too_many_attempts": "too many attempts",
    "no_second_factor": "no second factor set up",
    "wrong_code": "wrong code",
    "reused_code": "a code already used",
    "wrong_recovery_code": "wrong recovery code",
    "unreadable_code": "the second factor could not be read",
    "not_enrolled_code": "no second factor set up",
}
_EXPIRED = {"idle": "idle too long", "max_age": "signed in too long"}


@dataclass(frozen=True)
class Link:
    """A version an event names (from → to), linked to its page when the console has one."""

    text: str
    url: str | None = None


@dataclass(frozen=True)
class Entry:
    """One event as the page shows it."""

    id: int
    at: str
    action: str
    who: str
    via: str
    flow: str | None
    what: str
    versions: list[Link]
    notes: list[str]


def describe(event: AuditEvent, users: Mapping[int, str]) -> Entry:
    """How one event reads on the page: who, through what, and what happened."""
    details: dict[str, Any] = event.details if isinstance(event.details, dict) else {}
    flow = details.get("flow") if isinstance(details.get("flow"), str) else None
    who, via = _who(event.actor, event.action, users)
    what, versions, notes = _what(event.action, details, flow)
    return Entry(event.id, _when(event.at), event.action, who, via, flow, what, versions, notes)


def _when(at: datetime) -> str:
    moment = at if at.tzinfo is not None else at.replace(tzinfo=UTC)  # SQLite: naive UTC
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _who(actor: str, action: str, users: Mapping[int, str]) -> tuple[str, str]:
    """Who did it (a username where there is one), and through what."""
    if actor.startswith("ops:"):
        return actor.removeprefix("ops:"), "console"
    if actor.startswith("agent:"):
        number = actor.removeprefix("agent:")
        name = users.get(int(number)) if number.isdigit() else None
        return (name or f"staff #{number} (gone)"), ""
    if action in SIGN_INS or actor == FIRST_START:  # the name typed at a refused sign-in
        return actor, ""
    return actor, "command line"


def _version_link(flow: str | None, version: Any) -> Link:
    if not isinstance(version, str) or not version:
        return Link("nothing live")
    url = None
    if flow and "ops.flow" in current_app.view_functions:
        url = url_for("ops.flow", flow=flow, version=version)
    return Link(f"version {version[:12]}", url)


def _what(
    action: str, details: dict[str, Any], flow: str | None
) -> tuple[str, list[Link], list[str]]:
    """A headline, the versions it names (from → to) and notes, from an event's details."""
    message = details.get("message")
    notes = [f"“{message}”"] if isinstance(message, str) and message else []
    if action == "flow.published":
        parts = [_version_link(flow, details.get("from")), _version_link(flow, details.get("to"))]
        return "Published", parts, notes
    if action == "flow.rolled_back":  # the message is the one the version was published with
        parts = [_version_link(flow, details.get("from")), _version_link(flow, details.get("to"))]
        return "Rolled back", parts, [f"published as {note}" for note in notes]
    if action in ("line.closed", "line.opened"):
        # The message here is a prompt key (the closure's words), not a publish message.
        key = details.get("message")
        said = [f"message {key}"] if isinstance(key, str) and key else []
        return ("Closed the line" if action == "line.closed" else "Opened the line again"), [], said
    if action == "ops.draft_started":
        return "Started a draft from", [_version_link(flow, details.get("based_on"))], []
    if action == "ops.draft_discarded":
        return "Discarded the draft", [], _revision(details)
    if action == "ops.draft_edited":
        return _draft_edit(details)
    if action.startswith(DRAFT_PREFIX):
        return action.removeprefix(DRAFT_PREFIX).replace("_", " ").capitalize(), [], _plain(details)
    return _staff(action, details)


def _revision(details: Mapping[str, Any]) -> list[str]:
    revision = details.get("revision")
    return [f"revision {revision}"] if revision is not None else []


def _draft_edit(details: Mapping[str, Any]) -> tuple[str, list[Link], list[str]]:
    notes = []
    if isinstance(details.get("node"), str):
        fields = details.get("fields")
        what = f"Edited node {details['node']}"
        if isinstance(fields, list) and fields:
            notes.append("fields: " + ", ".join(str(name) for name in fields))
    elif isinstance(details.get("prompt"), str):
        what = f"Edited prompt {details['prompt']}"
        texts = details.get("texts")
        if isinstance(texts, dict):
            notes += [f"{language}: “{text}”" for language, text in sorted(texts.items())]
    else:
        what = "Edited the draft"
    return what, [], notes + _revision(details)


def _staff(action: str, details: Mapping[str, Any]) -> tuple[str, list[Link], list[str]]:
    client = details.get("client")
    notes = [f"from {client}"] if isinstance(client, str) and client else []
    reason = details.get("reason")
    if action == "agent.login":
        factor = details.get("second_factor")
        how = "password only" if factor == "none" else f"password and {factor}".replace("_", " ")
        return "Signed in", [], [f"{details.get('role', '?')}, {how}", *notes]
    if action == "agent.login_failed":
        why = _FAILED.get(str(reason), str(reason).replace("_", " "))
        if reason == "too_many_attempts":
            why += f" (per {details.get('throttled')}, wait {details.get('wait')} s)"
        return "Sign-in refused", [], [why, *notes]
    if action == "agent.logout":
        return "Signed out", [], notes
    if action == "agent.session_expired":
        return "Session ended", [], [_EXPIRED.get(str(reason), str(reason).replace("_", " "))]
    if action == "agent.recovery_code_used":
        return "Used a recovery code", [], [f"{details.get('left')} left"]
    subject = details.get("username", "?")
    headline = {
        "agent_user.added": f"Added {details.get('role', 'staff')} {subject}",
        "agent_user.disabled": f"Disabled {subject}",
        "agent_user.enabled": f"Enabled {subject}",
        "agent_user.signed_out": f"Signed {subject} out everywhere",
        "agent_user.totp_reset": f"Reset the second factor of {subject}",
        "agent_user.line_pin_set": f"Set the agent-line PIN of {subject}",
        "agent_user.line_pin_cleared": f"Cleared the agent-line PIN of {subject}",
        "agent_user.line_phone_set": f"Set the agent-line phone of {subject}",
        "agent_user.line_phone_cleared": f"Cleared the agent-line phone of {subject}",
    }.get(action, action)
    ended = details.get("sessions_ended")
    return headline, [], [f"{ended} session(s) ended"] if ended else []


def _plain(details: Mapping[str, Any]) -> list[str]:
    return [f"{key}: {value}" for key, value in sorted(details.items()) if key != "flow"]


# ---------------------------------------------------------------- the view


@bp.get("/audit")
@readable
def audit_log() -> Any:
    """The audit trail of the console and its people, newest first, filtered."""
    session = db.session()
    form = AuditFilter(request.args, people=people(session), flows=flows(session))
    if not form.validate():
        return _render(form, None), 400
    person = form.people[form.person.data] if form.person.data else None
    conditions = matching(form.kind.data, person.actors if person else None, form.flow.data)
    found = page_of(session, conditions, before=form.before.data, after=form.after.data)
    return _render(form, found)


def _render(form: AuditFilter, found: Page | None) -> str:
    users = usernames(db.session(), found.events if found else [])
    entries = [describe(event, users) for event in found.events] if found else []
    filters = {
        name: value
        for name, value in (
            ("person", form.person.data),
            ("flow", form.flow.data),
            ("kind", form.kind.data),
        )
        if value
    }
    newer = older = None
    if found is not None and entries:
        if found.newer:
            newer = url_for("ops.audit_log", **filters, after=entries[0].id)
        if found.older:
            older = url_for("ops.audit_log", **filters, before=entries[-1].id)
    return render_template(
        "ops/audit.html",
        form=form,
        kinds=KINDS,
        entries=entries,
        refused=found is None,
        filtered=bool(filters),
        newest=url_for("ops.audit_log", **filters),
        newer=newer,
        older=older,
        page_size=PAGE_SIZE,
    )
