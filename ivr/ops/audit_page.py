"""The audit page: publishes, rollbacks, draft edits and staff sign-ins, filterable by
person, flow and kind.

`/ops/audit` reads the one audit trail (`audit_events`) but shows only what concerns
the console and its people — an allow-list of actions (`KINDS`): publishing and
rolling back (`flow.*`), the console's draft edits (`ops.*`), signing in and out and
their refusals (`agent.login*`, `agent.logout`, ...) and the staff accounts changed by
`ivr users`. What agents did on calls (screen pops, codes, checklists) names callers'
accounts, so it never shows here.

Newest first, `PAGE_SIZE` a page, paged by id (`?before=` / `?after=`: keyset, so a
page stays right while new events arrive). Every filter runs in SQL: the flow through
SQLAlchemy's JSON index operator (`details ->> 'flow'` on PostgreSQL, `JSON_EXTRACT`
on SQLite), the person as the set of actor names they appear under: `ops:<username>`
in the console, `agent:<id>` once signed in, the typed name on a refused sign-in, and
the login name on the command line (IVR_OPERATOR). The filters are a GET form; a value
the page never offered is marked on it (400), never a 500 and never an unfiltered list.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flask import current_app, render_template, request, url_for
from flask_wtf import FlaskForm
from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.orm import Session
from wtforms import Field, IntegerField, StringField
from wtforms.validators import NumberRange, Optional, ValidationError

from ivr.calls.runtime import FIRST_START
from ivr.ops.blueprint import bp, readable
from ivr.storage import db
from ivr.storage.models import AgentUser, AuditEvent, FlowDraft, FlowVersion

PAGE_SIZE = 50
PEOPLE_MAX = 500  # actor names offered in the person filter (the staff come first)

PUBLISHES = ("flow.published", "flow.rolled_back")
SIGN_INS = (
    "agent.login",
    "agent.login_failed",
    "agent.logout",
    "agent.session_expired",
    "agent.recovery_code_used",
)
ACCOUNTS = (
    "agent_user.added",
    "agent_user.disabled",
    "agent_user.enabled",
    "agent_user.signed_out",
    "agent_user.totp_reset",
)
DRAFT_PREFIX = "ops."

# The kinds of the filter, in its order: value -> label.
KINDS: Mapping[str, str] = {
    "publishes": "Publishes and rollbacks",
    "drafts": "Draft edits",
    "sign_ins": "Sign-ins and sign-outs",
    "accounts": "Staff accounts",
}

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


def _kind_of(action: str) -> ColumnElement[bool]:
    conditions = {
        "publishes": AuditEvent.action.in_(PUBLISHES),
        "drafts": AuditEvent.action.startswith(DRAFT_PREFIX, autoescape=True),
        "sign_ins": AuditEvent.action.in_(SIGN_INS),
        "accounts": AuditEvent.action.in_(ACCOUNTS),
    }
    return conditions[action]


def shown() -> ColumnElement[bool]:
    """The events this page may show at all (everything else stays off it)."""
    return or_(*(_kind_of(kind) for kind in KINDS))


# ---------------------------------------------------------------- the filters


@dataclass
class Person:
    """Someone in the person filter: a staff member, or a name from the command line,
    with every actor name their events carry."""

    name: str
    label: str
    actors: set[str] = field(default_factory=set)


def people(session: Session) -> dict[str, Person]:
    """Everyone the person filter offers, by name: the staff accounts, then the other
    names that published, rolled back or changed accounts (typed names of refused
    sign-ins are not listed: anyone can type anything there)."""
    found: dict[str, Person] = {}
    for user_id, username, role in session.execute(
        select(AgentUser.id, AgentUser.username, AgentUser.role).order_by(AgentUser.username)
    ):
        actors = {f"ops:{username}", f"agent:{user_id}", username}
        found[username] = Person(username, f"{username} ({role})", actors)
    others = session.scalars(
        select(AuditEvent.actor)
        .where(or_(_kind_of("publishes"), _kind_of("drafts"), _kind_of("accounts")))
        .distinct()
        .order_by(AuditEvent.actor)
        .limit(PEOPLE_MAX)
    )
    for actor in others:
        if actor.startswith("agent:"):
            continue  # a signed-in staff member: listed above
        name = actor.removeprefix("ops:")
        if name not in found:
            found[name] = Person(name, f"{name} (command line)", set())
        found[name].actors |= {actor, name}
    return found


def flows(session: Session) -> list[str]:
    """The flows the flow filter offers: every flow with a version or a draft."""
    names = set(session.scalars(select(FlowVersion.flow).distinct()))
    names |= set(session.scalars(select(FlowDraft.flow)))
    return sorted(names)


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


def _conditions(form: AuditFilter) -> list[ColumnElement[bool]]:
    conditions = [shown()]
    if form.kind.data:
        conditions.append(_kind_of(form.kind.data))
    if form.person.data:
        conditions.append(AuditEvent.actor.in_(sorted(form.people[form.person.data].actors)))
    if form.flow.data:
        conditions.append(AuditEvent.details["flow"].as_string() == form.flow.data)
    return conditions


# ---------------------------------------------------------------- one page of events


@dataclass(frozen=True)
class Page:
    """The events of one page, newest first, and whether there are newer or older ones."""

    events: list[AuditEvent]
    newer: bool
    older: bool


def page_of(
    session: Session,
    conditions: list[ColumnElement[bool]],
    *,
    before: int | None,
    after: int | None,
) -> Page:
    """The page of events matching `conditions` just older than `before`, or just newer
    than `after`, or the newest."""
    where = and_(*conditions)
    query = select(AuditEvent).where(where)
    if after is not None:
        rows = list(
            session.scalars(
                query.where(AuditEvent.id > after).order_by(AuditEvent.id).limit(PAGE_SIZE + 1)
            )
        )
        more_newer = len(rows) > PAGE_SIZE
        events = rows[:PAGE_SIZE][::-1]
    else:
        if before is not None:
            query = query.where(AuditEvent.id < before)
        rows = list(session.scalars(query.order_by(AuditEvent.id.desc()).limit(PAGE_SIZE + 1)))
        more_newer = False
        events = rows[:PAGE_SIZE]
    if not events:
        return Page([], newer=False, older=False)

    def exists(condition: ColumnElement[bool]) -> bool:
        found = session.scalars(select(AuditEvent.id).where(where, condition).limit(1)).first()
        return found is not None

    if after is not None:
        return Page(events, newer=more_newer, older=exists(AuditEvent.id < events[-1].id))
    newer = before is not None and exists(AuditEvent.id > events[0].id)
    return Page(events, newer=newer, older=len(rows) > PAGE_SIZE)


# ---------------------------------------------------------------- how an event reads


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
    found = page_of(session, _conditions(form), before=form.before.data, after=form.after.data)
    return _render(form, found)


def _render(form: AuditFilter, found: Page | None) -> str:
    users = _usernames(db.session(), found.events if found else [])
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


def _usernames(session: Session, events: Iterable[AuditEvent]) -> dict[int, str]:
    ids = {
        int(event.actor.removeprefix("agent:"))
        for event in events
        if event.actor.startswith("agent:") and event.actor.removeprefix("agent:").isdigit()
    }
    if not ids:
        return {}
    rows = session.execute(select(AgentUser.id, AgentUser.username).where(AgentUser.id.in_(ids)))
    return {user_id: username for user_id, username in rows}
