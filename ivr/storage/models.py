"""Typed SQLAlchemy 2.0 models: customers, accounts, phone numbers, number changes, audit,
agents (staff accounts and their recovery codes), the published versions of the flows and
the drafts the ops console edits.

A phone number is its own row so that several accounts can share one (a family
line) and so caller identification is a single indexed lookup.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ivr.storage.db import Base


def utcnow() -> datetime:
    """Timezone-aware now; passed as a callable so each row gets its own time."""
    return datetime.now(UTC)


class Customer(Base):
    __tablename__ = "customers"
    # The importer matches customers by email, case-insensitively.
    __table_args__ = (Index("ix_customers_email_lower", func.lower(text("email"))),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    accounts: Mapped[list[Account]] = relationship(back_populates="customer")

    @property
    def first_name(self) -> str:
        return self.name.split()[0] if self.name.strip() else ""


class PhoneNumber(Base):
    __tablename__ = "phone_numbers"

    id: Mapped[int] = mapped_column(primary_key=True)
    e164: Mapped[str] = mapped_column(String(16), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    accounts: Mapped[list[Account]] = relationship(back_populates="phone")


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    phone_id: Mapped[int] = mapped_column(ForeignKey("phone_numbers.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )

    # When the number on file last changed by a caller (None: never); drives the
    # cooling-off flag without reading the history.
    phone_changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)

    customer: Mapped[Customer] = relationship(back_populates="accounts")
    phone: Mapped[PhoneNumber] = relationship(back_populates="accounts")
    phone_changes: Mapped[list[PhoneChange]] = relationship(
        back_populates="account",
        order_by="PhoneChange.changed_at, PhoneChange.id",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )


class PhoneChange(Base):
    """One change of an account's number on file, oldest first in `Account.phone_changes`.

    The numbers are stored in full (not as PhoneNumber ids) because the history must
    survive the old number's row being reused or removed; it is customer data, erased
    with the account, while the matching audit event keeps only masked values.
    """

    __tablename__ = "phone_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    old_e164: Mapped[str] = mapped_column(String(16))
    new_e164: Mapped[str] = mapped_column(String(16))
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    call_sid: Mapped[str | None] = mapped_column(String(64), default=None)
    # How ownership of the new number was proven, e.g. "callback_on_line".
    mode: Mapped[str] = mapped_column(String(32))

    account: Mapped[Account] = relationship(back_populates="phone_changes")


class AuditEvent(Base):
    """An append-only record of something that happened; masked values only.

    `dedupe_key` makes a write idempotent: a replayed webhook that would write the
    same event again hits the unique index and is recognised as a duplicate.
    """

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_call_sid", "call_sid"),
        # The ops console's audit page: the newest events of a few actions, filtered
        # by kind, without scanning every call's events.
        Index("ix_audit_events_action_id", "action", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    action: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(64))
    call_sid: Mapped[str | None] = mapped_column(String(64), default=None)
    account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), default=None, index=True
    )
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    dedupe_key: Mapped[str | None] = mapped_column(String(160), unique=True, default=None)


class AgentUser(Base):
    """Someone who signs in to the agent page: an agent, or a supervisor they escalate to.

    `target` is the transfer target whose calls they take (e.g. "queue:support"), in
    the canonical form of `ivr.agent.transfers.canonical_target`. Only a password hash
    is stored (werkzeug's scrypt by default); a disabled user can no longer sign in.

    `totp_secret` is the base32 TOTP secret of their authenticator app, sealed (Fernet
    under a key derived from IVR_SECRET_KEY, `ivr.staff.sealing`); None: no second
    factor set up. `totp_last_step` is the time step of the last code
    accepted, so a code is never accepted twice (pyotp does not remember).
    """

    __tablename__ = "agent_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    totp_secret: Mapped[str | None] = mapped_column(String(255), default=None)
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger, default=None)
    # Sessions started at or before this time (epoch seconds) are over: set by disable,
    # signout and totp-reset, so revocation holds even when Redis missed the deletion.
    sessions_valid_after: Mapped[float | None] = mapped_column(Float, default=None)
    # The agent line (issue 15): a hash of their keypad PIN (werkzeug, like the password;
    # None: no PIN, they cannot use the agent line by PIN) and the phone the agent page's
    # "take next call" rings (E.164; or "client:NAME" for a Twilio Client identity).
    line_pin_hash: Mapped[str | None] = mapped_column(String(255), default=None)
    line_phone: Mapped[str | None] = mapped_column(String(64), default=None)


class StaffRecoveryCode(Base):
    """One recovery code of a staff account: a keyed hash (HMAC with the app secret) only,
    shown once when made; `used_at` is set when it signs someone in, and it never works again.
    """

    __tablename__ = "agent_recovery_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("agent_users.id", ondelete="CASCADE"), index=True
    )
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class FlowVersion(Base):
    """One published version of a flow: immutable, identified by its content hash.

    Its files (the flow file and the prompt file of each of its languages) are kept
    byte for byte, so the version loads, and exports, exactly as it was published.
    """

    __tablename__ = "flow_versions"
    __table_args__ = (UniqueConstraint("flow", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    flow: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[str] = mapped_column(String(64))  # the content hash (Flow.version)
    published_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    published_by: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(String(500), default="")

    files: Mapped[list[FlowVersionFile]] = relationship(
        back_populates="version_row", order_by="FlowVersionFile.path", cascade="all"
    )


class FlowVersionFile(Base):
    """One file of a published version: `flows/<flow>.yaml` or `prompts/<language>.yaml`."""

    __tablename__ = "flow_version_files"
    __table_args__ = (UniqueConstraint("version_id", "path"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("flow_versions.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(String(255))
    content: Mapped[str] = mapped_column(Text)

    version_row: Mapped[FlowVersion] = relationship(back_populates="files")


class LiveFlow(Base):
    """Which version of a flow new calls start on: one row per flow name."""

    __tablename__ = "live_flows"

    flow: Mapped[str] = mapped_column(String(64), primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("flow_versions.id"))
    since: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    by: Mapped[str] = mapped_column(String(64))

    version_row: Mapped[FlowVersion] = relationship()


class FlowDraft(Base):
    """The ops console's draft of one flow: the files a publish would store, edited in the
    browser, kept in the database (never on one web node's disk).

    Started from the live version's files (`based_on` names it); `files` maps a stored
    path (`flows/<flow>.yaml`, `prompts/<language>.yaml`) to its exact text, as a
    version keeps them. `revision` goes up by one on every save: a save names the
    revision it edited, so two people editing at once cannot overwrite each other.
    """

    __tablename__ = "flow_drafts"

    flow: Mapped[str] = mapped_column(String(64), primary_key=True)
    based_on: Mapped[str | None] = mapped_column(String(64), default=None)
    files: Mapped[dict[str, str]] = mapped_column(JSON)
    revision: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(64))


class CallRecord(Base):
    """One call that ended: its summary, written with its steps when it ended (or when
    the sweeper closed it because its status callback never came).

    Masked caller only; no digits, codes or full numbers (`ivr.flow.timeline` says what
    a step may hold). Kept IVR_CALL_HISTORY_DAYS, then pruned (`ivr calls prune`).
    """

    __tablename__ = "calls"
    __table_args__ = (
        # Lists (newest first, by period) and the funnel (a flow's calls in a period).
        Index("ix_calls_started_at", "started_at"),
        Index("ix_calls_flow_started_at", "flow", "started_at"),
    )

    call_sid: Mapped[str] = mapped_column(String(64), primary_key=True)
    flow: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Twilio's CallDuration when the status callback came; else from the timeline.
    duration: Mapped[int | None] = mapped_column(default=None)
    # Seconds in the IVR: until the first transfer began, or the whole call without one.
    ivr_seconds: Mapped[float | None] = mapped_column(Float, default=None)
    # Twilio's final CallStatus, or "unknown" when the sweeper closed the call.
    status: Mapped[str] = mapped_column(String(20))
    outcome: Mapped[str] = mapped_column(String(20))  # transferred | ended | abandoned
    verification: Mapped[str] = mapped_column(String(10), default="none")
    methods: Mapped[list[str]] = mapped_column(JSON, default=list)
    identity: Mapped[str] = mapped_column(String(32), default="")
    caller: Mapped[str] = mapped_column(String(32), default="")  # masked
    account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), default=None, index=True
    )
    language: Mapped[str] = mapped_column(String(16), default="")
    # Node ids and reasons are the flow author's words, of no fixed length.
    transfer_reason: Mapped[str | None] = mapped_column(String(200), default=None)
    failure: Mapped[str | None] = mapped_column(String(64), default=None)
    last_node: Mapped[str | None] = mapped_column(String(200), default=None)
    flags: Mapped[list[str]] = mapped_column(JSON, default=list)
    # A keyed hash of the caller's full number (`timeline.caller_key`): a customer's
    # export and erasure find their unidentified calls by it, never by the mask.
    caller_key: Mapped[str | None] = mapped_column(String(64), default=None, index=True)

    steps: Mapped[list[CallStep]] = relationship(
        back_populates="call",
        order_by="CallStep.seq",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )


class CallStep(Base):
    """One step of a call's timeline (`ivr.flow.timeline`): `node` and `exit` as columns
    for the funnel's counts, the rest of the step's fields in `detail`."""

    __tablename__ = "call_steps"
    __table_args__ = (Index("ix_call_steps_node_event", "node", "event"),)

    call_sid: Mapped[str] = mapped_column(
        ForeignKey("calls.call_sid", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    at_ms: Mapped[int] = mapped_column(BigInteger)
    event: Mapped[str] = mapped_column(String(20))
    node: Mapped[str | None] = mapped_column(String(200), default=None)
    exit: Mapped[str | None] = mapped_column(String(200), default=None)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    call: Mapped[CallRecord] = relationship(back_populates="steps")


# ---- voicemail


# What a voicemail's recording is: being recorded (the action came, Twilio has not said
# it is stored), ready, failed at Twilio, erased (a customer's erasure cleared the row;
# the recording at Twilio is deleted next) or deleted (gone at Twilio; the row follows).
VOICEMAIL_STATUSES = ("recording", "ready", "failed", "erased", "deleted")


class Voicemail(Base):
    """A message a caller left at a `voicemail` node (`ivr.voicemail`).

    The audio stays at Twilio (`recording_sid`; its URL needs the account's credentials,
    so agents play it through the agent page) until IVR_VOICEMAIL_DAYS have passed or
    the customer is erased. The caller is kept masked, with the keyed hash of the full
    number (`caller_key`, as in `calls`) for a customer's export and erasure; the
    account only when the call was verified (`verification`, `methods`).
    """

    __tablename__ = "voicemails"
    __table_args__ = (Index("ix_voicemails_created_at", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    call_sid: Mapped[str] = mapped_column(String(64), index=True)
    recording_sid: Mapped[str] = mapped_column(String(64), unique=True)
    recording_url: Mapped[str] = mapped_column(String(500), default="")
    duration: Mapped[int | None] = mapped_column(default=None)  # seconds
    caller: Mapped[str] = mapped_column(String(32), default="")  # masked
    caller_key: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), default=None, index=True
    )
    verification: Mapped[str] = mapped_column(String(10), default="none")
    methods: Mapped[list[str]] = mapped_column(JSON, default=list)
    language: Mapped[str] = mapped_column(String(16), default="")
    flow: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    status: Mapped[str] = mapped_column(String(16), default="recording")
    handled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    handled_by: Mapped[str | None] = mapped_column(String(64), default=None)


# ---- the line's emergency closures


class LineClosure(Base):
    """An emergency closure of the line (`ivr hours close`, the console's switch): who
    closed it, when, and the prompt key of the message callers hear meanwhile; who
    opened it again and when. Rows are kept as the line's history.

    `line` is the flow name the service answers with (IVR_FLOW). At most one closure
    of a line is open at a time (the partial unique index), so two people closing at
    once cannot both succeed.
    """

    __tablename__ = "line_closures"
    __table_args__ = (
        Index(
            "uq_line_closures_current",
            "line",
            unique=True,
            sqlite_where=text("opened_at IS NULL"),
            postgresql_where=text("opened_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    line: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(String(100))  # a prompt key
    closed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    closed_by: Mapped[str] = mapped_column(String(64))
    opened_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    opened_by: Mapped[str | None] = mapped_column(String(64), default=None)


# ---- the agent line
# No table: staff PINs and phones are AgentUser.line_pin_hash / line_phone; sessions,
# claims and joins of the agent line live briefly in Redis (ivr.queues.claims).
