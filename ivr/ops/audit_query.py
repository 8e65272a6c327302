"""Which audit events the ops console's audit page may show, and finding them: the
kinds, the people and flows the filters offer, and one page of events at a time.

The page reads the one audit trail (`audit_events`) but shows only what concerns the
console and its people — an allow-list of actions (`KINDS`): publishing and rolling
back (`flow.*`), the console's draft edits (`ops.*`), signing in and out and their
refusals (`agent.login*`, `agent.logout`, ...) and the staff accounts changed by
`ivr users`. What agents did on calls (screen pops, codes, checklists) names callers'
accounts, so it never shows there.

Every filter runs in SQL: the flow through SQLAlchemy's JSON index operator
(`details ->> 'flow'` on PostgreSQL, `JSON_EXTRACT` on SQLite), the person as the set
of actor names they appear under: `ops:<username>` in the console, `agent:<id>` once
signed in, the typed name on a refused sign-in, and the login name on the command line
(IVR_OPERATOR). Newest first, `PAGE_SIZE` a page, paged by id (keyset, so a page stays
right while new events arrive). Plain SQLAlchemy, no Flask: the view and its form are
`ivr.ops.audit_page`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.orm import Session

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
    "agent_user.line_pin_set",
    "agent_user.line_pin_cleared",
    "agent_user.line_phone_set",
    "agent_user.line_phone_cleared",
)
DRAFT_PREFIX = "ops."
LINE = ("line.closed", "line.opened")  # the emergency closure (`ivr hours`, /ops/hours)

# The kinds of the filter, in its order: value -> label.
KINDS: Mapping[str, str] = {
    "publishes": "Publishes and rollbacks",
    "drafts": "Draft edits",
    "sign_ins": "Sign-ins and sign-outs",
    "accounts": "Staff accounts",
    "line": "Line closures",
}


def _kind_of(action: str) -> ColumnElement[bool]:
    conditions = {
        "publishes": AuditEvent.action.in_(PUBLISHES),
        "drafts": AuditEvent.action.startswith(DRAFT_PREFIX, autoescape=True),
        "sign_ins": AuditEvent.action.in_(SIGN_INS),
        "accounts": AuditEvent.action.in_(ACCOUNTS),
        "line": AuditEvent.action.in_(LINE),
    }
    return conditions[action]


def shown() -> ColumnElement[bool]:
    """The events the audit page may show at all (everything else stays off it)."""
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


def matching(
    kind: str | None, actors: Iterable[str] | None, flow: str | None
) -> list[ColumnElement[bool]]:
    """The events shown, of `kind`, by one of `actors`, about `flow` (None: any)."""
    conditions = [shown()]
    if kind:
        conditions.append(_kind_of(kind))
    if actors is not None:
        conditions.append(AuditEvent.actor.in_(sorted(actors)))
    if flow:
        conditions.append(AuditEvent.details["flow"].as_string() == flow)
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


def usernames(session: Session, events: Iterable[AuditEvent]) -> dict[int, str]:
    """The usernames of the staff behind `agent:<id>` actors of these events, by id."""
    ids = {
        int(event.actor.removeprefix("agent:"))
        for event in events
        if event.actor.startswith("agent:") and event.actor.removeprefix("agent:").isdigit()
    }
    if not ids:
        return {}
    rows = session.execute(select(AgentUser.id, AgentUser.username).where(AgentUser.id.in_(ids)))
    return {user_id: username for user_id, username in rows}
