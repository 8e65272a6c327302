"""Who may use the agent line, checked at sign-in and again at every step.

A caller ID (or a Twilio Client identity) names at most one staff account: its
`line_phone`. A PIN keyed from an allowed phone is checked against that account's PIN
only, plus the shared IVR_AGENT_PIN — one slow hash per attempt, never a search
through every account's PIN. A session remembers who signed in and how; each later
step reloads the account and ends the session when it was disabled, lost its role,
had its sessions ended, or its PIN or line phone changed since.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from ivr.agent.users import AGENT_PAGE_ROLES, line_account, line_pin_matches
from ivr.config import Settings
from ivr.storage import db
from ivr.storage.models import AgentUser

PIN, CLIENT, PAGE, SHARED = "pin", "client", "page", "shared"  # how a session signed in


def pin_owner(settings: Settings, number: str, digits: str) -> tuple[AgentUser | None, bool]:
    """(the account whose PIN this is, or None for the shared PIN; whether it matched).
    Only the account whose line phone is `number` is checked, then the shared PIN."""
    account = line_account(db.session(), number)
    if line_pin_matches(account, digits) and digits:
        return account, True
    shared = settings.line.agent_pin
    if shared and digits and hmac.compare_digest(shared.encode(), digits.encode()):
        return None, True
    return None, False


def client_account(identity: str) -> AgentUser | None:
    """The account whose configured line phone is `client:identity` (`ivr users phone
    NAME client:…`), never an account found by its username alone."""
    return line_account(db.session(), "client:" + identity)


def mark(settings: Settings, value: str | None) -> str:
    """A keyed fingerprint of a PIN hash (or the shared PIN): a session notices a change
    without keeping either."""
    digest = hmac.new(settings.secret_key.encode(), (value or "").encode(), hashlib.sha256)
    return digest.hexdigest()[:24]


def signed_in(
    settings: Settings, user: AgentUser | None, how: str, phone: str | None
) -> dict[str, Any]:
    """What a session keeps of who signed in, to check again at every step."""
    if user is None:
        return {"user_id": None, "via": SHARED, "mark": mark(settings, settings.line.agent_pin)}
    pin_hash = user.line_pin_hash if how == PIN else None
    return {"user_id": user.id, "via": how, "phone": phone, "mark": mark(settings, pin_hash)}


def still_allowed(settings: Settings, record: dict[str, Any]) -> str | None:
    """None when the session's agent may still take calls; else why not (for the log)."""
    if record.get("user_id") is None:
        shared = settings.line.agent_pin
        if not shared or not hmac.compare_digest(mark(settings, shared), str(record.get("mark"))):
            return "the shared PIN changed"
        return None
    user = db.session().get(AgentUser, int(record["user_id"]))
    if user is None or user.disabled:
        return "the account is disabled or gone"
    if user.role not in AGENT_PAGE_ROLES:
        return "the account no longer takes calls"
    created = float(record.get("created") or 0)
    if user.sessions_valid_after is not None and user.sessions_valid_after >= created:
        return "the account's sessions were ended"
    how = record.get("via")
    if how in (PIN, CLIENT) and user.line_phone != record.get("phone"):
        return "the account's line phone changed"
    if how == PIN and not hmac.compare_digest(
        mark(settings, user.line_pin_hash), str(record.get("mark"))
    ):
        return "the account's PIN changed or was cleared"
    return None
