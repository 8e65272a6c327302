"""What an agent sees of a transferred call: the lines of the call list (also served as
`calls.json`) and the screen pop, worded for people from the transfer entry and its
signed context.

Kept apart from the views so they stay thin, and so the list, the JSON and the pop
are built from the same facts and the same rule of who may see a call (the agent of
its target, or a supervisor once it is escalated). Masked values only: the account and
the caller's number come masked in the signed context, and the contacts a code can go
to are shown masked too.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from flask import url_for

from ivr.agent import transfers
from ivr.agent.context import ContextExpired, ContextInvalid, ContextSigner
from ivr.agent.manual import AGENT_VERIFY, CHECKLIST, ManualVerifier
from ivr.agent.sessions import audit
from ivr.agent.users import SUPERVISOR
from ivr.calls import runtime
from ivr.customers.directory import SqlDirectory
from ivr.delivery import registry as delivery
from ivr.queues import claims
from ivr.storage import db, kv
from ivr.storage.models import AgentUser
from ivr.verification.codes import CodeService, policy_for

log = logging.getLogger(__name__)

LIST_LIMIT = 20

VERIFICATION_TEXT = {
    "code": "Verified: account digits and a one-time code",
    "digits": "Partly verified: account digits only",
    "none": "Not verified",
}


def may_see(user: AgentUser, entry: dict[str, Any]) -> bool:
    """Whether this agent may work on the call of this transfers entry."""
    if entry["target"] == user.target:
        return True
    return user.role == SUPERVISOR and bool(entry["escalated"])


def taken_call(user: AgentUser, since: float = 0.0) -> str | None:
    """The caller this agent took last over the agent line (after `since`), when it is
    still on their list: the page pops it."""
    found = claims.last_taken(kv.client(), user.id)
    if found is None or found[1] < since:
        return None
    entry = transfers.lookup(kv.client(), found[0])
    return found[0] if entry is not None and may_see(user, entry) else None


def calls_for(user: AgentUser) -> list[dict[str, Any]]:
    """The agent's call list, newest first (supervisors: with the escalated calls)."""
    client = kv.client()
    entries = transfers.recent(client, user.target, LIST_LIMIT)
    if user.role == SUPERVISOR:
        listed = {entry["call_sid"] for entry in entries}
        entries += [
            e for e in transfers.escalated(client, LIST_LIMIT) if e["call_sid"] not in listed
        ]
        entries.sort(key=lambda entry: entry["at"], reverse=True)
    return [_summary(entry) for entry in entries]


def _summary(entry: dict[str, Any]) -> dict[str, Any]:
    """One line of the call list (what calls.json returns for each call)."""
    context, status = context_of(entry)
    facts = _facts(entry, context, status)
    return {
        "call_sid": entry["call_sid"],
        "at": datetime.fromtimestamp(entry["at"], UTC).isoformat(timespec="seconds"),
        "at_text": facts["transferred_at"],
        "caller": facts["caller"],
        "customer": facts["customer"],
        "account": facts["account"],
        "verification": facts["verification"],
        "verification_text": facts["verification_text"],
        "reason": facts["reason"],
        "flags": len(facts["flags"]),
        "escalated": entry["escalated"],
        "manual": entry["code_result"] or None,
        "context": status,
        "pop_url": url_for(".screen_pop", call_sid=entry["call_sid"]),
        "page_url": url_for(".index", call=entry["call_sid"]),
    }


def context_of(entry: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The entry's signed context, and "ok", "expired" or "invalid".

    The token was stored by our own webhook, so it is loaded with the entry's lifetime
    rather than the token's few minutes: a call can wait in a queue longer than that.
    The signature is still checked, and must name this very call.
    """
    signer = ContextSigner(runtime.get().settings.secret_key, max_age=transfers.ENTRY_TTL)
    try:
        context = signer.load(entry["token"])
    except ContextExpired:
        return None, "expired"
    except ContextInvalid:
        return None, "invalid"
    if context.get("call_sid") != entry["call_sid"]:
        return None, "invalid"
    return context, "ok"


def _texts() -> Any:
    rt = runtime.get()
    return rt.catalog.languages[rt.flow.default_language].texts


def language(wanted: Any) -> str:
    """The caller's language when the catalog has it, else the flow's default."""
    rt = runtime.get()
    if isinstance(wanted, str) and wanted in rt.catalog.languages:
        return wanted
    return rt.flow.default_language


def _facts(entry: dict[str, Any], context: dict[str, Any] | None, status: str) -> dict[str, Any]:
    """What the screen pop shows, worded for people; masked values only."""
    texts = _texts()
    ctx = context or {}
    verification = str(ctx.get("verification"))
    if verification not in VERIFICATION_TEXT:
        verification = "none"
    reason = ctx.get("transfer_reason")
    methods = [
        {
            "text": texts.get(f"method_{item.get('method')}", str(item.get("method"))),
            "at": _clock_iso(item.get("at")),
        }
        for item in ctx.get("methods") or []
        if isinstance(item, dict)
    ]
    return {
        "call_sid": entry["call_sid"],
        "transferred_at": _clock(entry["at"]),
        "caller": ctx.get("caller") or "withheld",
        "customer": ctx.get("customer") or ctx.get("name"),
        "account": ctx.get("account"),
        "verification": verification,
        "verification_text": VERIFICATION_TEXT[verification],
        "methods": methods,
        "flags": [
            texts.get(f"whisper_flag_{flag}", str(flag).replace("_", " "))
            for flag in ctx.get("flags") or []
        ],
        # Too many wrong account digits on this account (or number) in 24 h: the caller
        # was not asked for them, so the agent must verify by other means.
        "digits_locked": "digits_locked" in (ctx.get("flags") or []),
        "failure": str(ctx["failure"]).replace("_", " ") if ctx.get("failure") else None,
        "reason": texts.get(f"reason_{reason}", str(reason).replace("_", " ")) if reason else None,
        "flow": ctx.get("flow"),
        "flow_version": ctx.get("flow_version") or ctx.get("version"),
        "context_status": status,
    }


def pop(user: AgentUser, call_sid: str) -> dict[str, Any] | None:
    """Everything the screen pop template needs, or None when the agent may not see it."""
    entry = transfers.lookup(kv.client(), call_sid)
    if entry is None or not may_see(user, entry):
        return None
    context, status = context_of(entry)
    if status != "ok":
        log.warning("call %s: agent page got a context token that is %s", call_sid, status)
    facts = _facts(entry, context, status)
    verified = facts["verification"] == "code"
    manual = verifier()
    account = None if verified else manual.account(entry["account_id"])
    ticked = entry["checklist"] or []
    audit(
        "agent.screen_pop",
        call_sid=call_sid,
        account_id=entry["account_id"],
        details={"context": status},
        dedupe_key=f"agent.screen_pop:{user.id}:{call_sid}",
    )
    return {
        "facts": facts,
        "entry": entry,
        "verified": verified,
        "checklist": [
            {"name": name, "label": label, "ticked": name in ticked}
            for name, label in CHECKLIST.items()
        ],
        "checklist_saved": entry["checklist"] is not None,
        "destinations": manual.destinations(account),
        "has_account": account is not None,
        "code_sent": entry["code_sent"],
        "code_result": entry["code_result"] or None,
    }


def verifier() -> ManualVerifier:
    """Verification by hand, with the agent code policy and this app's storage."""
    rt = runtime.get()
    codes = CodeService(kv.client(), rt.settings.secret_key, policy_for(AGENT_VERIFY, rt.settings))
    return ManualVerifier(codes, delivery.get(), SqlDirectory(db.session()), rt.catalog)


def _clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M:%S UTC")


def _clock_iso(value: Any) -> str:
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%H:%M:%S UTC")
