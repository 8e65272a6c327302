"""Offering held callers to an agent on the agent line: the first member of the queue
(call-backs first: the members of its `-callbacks` queue, ivr.calls.queue_callback) who
still holds at a transfer of ours (ivr.queues.taking.holding) and whom this
session can claim (ivr.queues.claims: never two agents on one caller), announced
with that caller's whisper, then "press 1 or 2". Passed-over callers are skipped until
every caller was passed over once; then the offer starts again from the front.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Response, url_for
from twilio.twiml.voice_response import VoiceResponse

from ivr.agent.whisper import whisper_says
from ivr.calls import queue_callback, runtime, store
from ivr.customers.directory import SqlDirectory
from ivr.errors import CallError, StorageUnavailable
from ivr.flow.instructions import Say
from ivr.flow.state import CallState
from ivr.queues import Member, QueueSwitch, QueueUnavailable, claims, registry, taking
from ivr.storage import db, kv
from ivr.voice.agent_line_say import answer, refuse, said, say

log = logging.getLogger(__name__)

CHOICE_TIMEOUT = 8  # seconds to press 1 or 2 after the whisper
EMPTY_TIMEOUT = 15  # seconds to press 1 (check again) when nobody is waiting


def save(token: str, record: dict[str, Any]) -> None:
    """Save the session's changes (its deadline kept)."""
    claims.save_session(kv.client(), token, record, time.time())


def offer(token: str, record: dict[str, Any]) -> Response:
    """Claim the first held caller nobody else is announcing and play their whisper."""
    queue = str(record["queue"])
    switch: QueueSwitch = registry.get()
    # Call-backs first: their dedicated queue, then the queue itself.
    where: dict[str, str] = {}
    members: list[Member] = []
    for name in (queue_callback.priority_queue(queue), queue):
        try:
            found = switch.members(name)
        except QueueUnavailable as exc:
            log.error("agent line: queue %s unreadable: %s", name, exc)
            return refuse("agent_line_unavailable")
        for member in found:
            where.setdefault(member.call_sid, name)
            members.append(member)
    chosen = choose(token, record, members)
    if chosen is None and record.get("passed"):
        # Every caller here was passed over once: start again from the front.
        record["passed"] = []
        chosen = choose(token, record, members)
    if chosen is None:
        record["claim"] = ""
        save(token, record)
        return empty(token)
    member, state = chosen
    record["claim"] = member.call_sid
    record["claim_queue"] = where.get(member.call_sid, queue)  # where to take them from
    save(token, record)
    response = VoiceResponse()
    gather = response.gather(
        input="dtmf",
        action=url_for("agent_line.choice", t=token),
        method="POST",
        timeout=CHOICE_TIMEOUT,
        num_digits=1,
        finish_on_key="",
    )
    says = whisper(state)
    said(gather, says[:-1])  # who is calling; "press 1 to accept" is ours instead
    say(gather, "agent_line_choose")
    response.redirect(url_for("agent_line.choice", t=token), method="POST")
    log.info("agent line call %s offered held call %s", record["agent_call"], member.call_sid)
    return answer(response)


def choose(
    token: str, record: dict[str, Any], members: list[Member]
) -> tuple[Member, CallState] | None:
    """The first member not passed over that is still holding at a transfer of ours
    (not one taken already, whose join is under way) and that this session could claim."""
    client = kv.client()
    passed = set(record.get("passed") or [])
    for member in members:
        if member.call_sid in passed:
            continue
        state = state_or_none(member.call_sid)
        if state is None or state.ended or not _holding(state):
            log.debug("held call %s: not holding at a transfer; skipped", member.call_sid)
            continue
        if claims.claim(client, member.call_sid, token):
            return member, state
    return None


def _holding(state: CallState) -> bool:
    try:
        return taking.holding(state)
    except CallError as exc:  # its flow version cannot be loaded: it cannot be taken either
        log.warning("held call %s: %s; skipped", state.call_sid, exc)
        return False


def empty(token: str) -> Response:
    response = VoiceResponse()
    gather = response.gather(
        input="dtmf",
        action=url_for("agent_line.next_caller", t=token),
        method="POST",
        timeout=EMPTY_TIMEOUT,
        num_digits=1,
        finish_on_key="",
    )
    say(gather, "agent_line_empty")
    response.hangup()
    return answer(response)


def state_or_none(call_sid: str) -> CallState | None:
    try:
        return store.load(call_sid)
    except StorageUnavailable as exc:
        log.error("agent line: state of %s unreadable (%s); not offered", call_sid, exc)
        return None


def whisper(state: CallState | None) -> list[Say]:
    """The caller's whisper, in the words of the version they heard (as /voice/whisper)."""
    rt = runtime.get()
    catalog, language = rt.catalog, rt.flow.default_language
    account = None
    if state is not None:
        try:
            loaded = rt.for_call(state)
            catalog, language = loaded.catalog, loaded.flow.default_language
        except CallError as exc:
            log.warning("whisper for held call %s: %s; live prompts used", state.call_sid, exc)
        if state.account_id is not None:
            try:
                found = SqlDirectory(db.session(), autocommit=True).accounts_by_ids(
                    [state.account_id]
                )
                account = found[0] if found else None
            except StorageUnavailable as exc:
                log.error(
                    "whisper for held call %s: %s; announcing unverified", state.call_sid, exc
                )
                state = None
    return whisper_says(state, account, catalog, language, time.time())
