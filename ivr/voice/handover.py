"""Handing a call to people: the signed context travels with every transfer.

When a turn ends in a transfer, the call's facts (ivr.agent.context) are signed
once and go where agents look: the agent page's list of transferred calls (every
target rung), the SIP header `X-IVR-Context` of a SIP leg, and the Task
attributes of a TaskRouter workflow. Nothing here can stop the transfer itself:
if signing or storage fails, the caller still reaches people (the whisper and
the page then say less).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from functools import partial

from ivr.agent import transfers as agent_transfers
from ivr.agent.api import context_signer
from ivr.agent.context import build_context
from ivr.customers.directory import SqlDirectory
from ivr.errors import StorageUnavailable
from ivr.flow.instructions import Instruction, Transfer
from ivr.flow.model import TransferTarget
from ivr.flow.state import CallState
from ivr.storage import db, deferred
from ivr.voice import twiml

log = logging.getLogger(__name__)


def prepare(state: CallState, instructions: Sequence[Instruction]) -> list[Instruction]:
    """The instructions with each transfer carrying the call's signed context."""
    result = list(instructions)
    if not any(isinstance(item, Transfer) for item in result):
        return result
    token = _signed_context(state)
    for index, item in enumerate(result):
        if not isinstance(item, Transfer):
            continue
        if token is not None:
            _record(state, item.target, token)
        attributes = (
            twiml.task_attributes(task_attributes(state, token))
            if item.target.kind == "workflow"
            else None
        )
        result[index] = replace(item, context=token, task_attributes=attributes)
    return result


def task_attributes(state: CallState, token: str | None) -> dict[str, object]:
    """What a TaskRouter task carries, most important first (later keys are dropped
    whole when the JSON would pass TaskRouter's 1024 characters)."""
    attributes: dict[str, object] = {"call_sid": state.call_sid}
    if token is not None:
        attributes["ivr_context"] = token
    attributes.update(
        verification=state.verification,
        transfer_reason=state.transfer_reason,
        flow=state.flow,
    )
    return attributes


def _signed_context(state: CallState) -> str | None:
    try:
        account = None
        if state.account_id is not None:
            found = SqlDirectory(db.session(), autocommit=True).accounts_by_ids([state.account_id])
            account = found[0] if found else None
        context = build_context(state, account, flow_version=state.version, now=time.time())
        return context_signer().sign(context)
    except StorageUnavailable as exc:
        log.error("call %s: no signed context for the transfer: %s", state.call_sid, exc)
        return None


def _record(state: CallState, target: TransferTarget, token: str) -> None:
    """List the call on the agent page of every target it rings: written with the call's
    save (`storage.deferred`), since nothing in this request reads the listing."""
    names = target.numbers or (target.label,)
    at = time.time()
    for name in names:
        deferred.later(
            partial(
                agent_transfers.add,
                target=name,
                call_sid=state.call_sid,
                token=token,
                account_id=state.account_id,
                at=at,
            )
        )
