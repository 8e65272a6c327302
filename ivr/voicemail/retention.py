"""Forgetting voicemail: after IVR_VOICEMAIL_DAYS, or at once for an erased customer.

A message is two things: the audio at Twilio and our row. The audio goes first, through
Twilio's REST API (DELETE .../Recordings/RE….json); a 404 means it is already gone,
which is what we wanted. Only then does the row go, so a message is never left at
Twilio with nothing here that knows of it. Any other failure (Twilio down, a timeout,
an error) keeps the row for the next run: the daily job retries until Twilio agrees.

In local development there is no Twilio account and nothing at Twilio (the simulator
made the recordings up): the rows are simply forgotten.

Each batch is committed with its own `voicemail.pruned` audit row (deleted, kept, the
retention applied), as `calls.prune` does, and a run is bounded in batches and time.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import requests
from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.rest import Client

from ivr.config import Settings
from ivr.storage import audit
from ivr.storage.models import Voicemail

log = logging.getLogger(__name__)

BATCH = 50  # messages per transaction (each one a request to Twilio)
MAX_BATCHES = 20  # a scheduled run deletes at most 1,000 messages
BUDGET_SECONDS = 60.0  # and starts no batch after this (the job's timeout is 120 s)
ERASED = "erased"


class RecordingKept(Exception):
    """Twilio did not delete the recording (and did not say it is gone): try again later."""


class Recordings(Protocol):
    """Where the audio lives."""

    def delete(self, recording_sid: str) -> None:
        """Delete the recording; a recording already gone counts as deleted.
        RecordingKept when it may still be there."""


class TwilioRecordings:
    """Twilio's Recordings resource, through the service's REST client."""

    def __init__(self, client: Client):
        self.client = client

    def delete(self, recording_sid: str) -> None:
        try:
            self.client.recordings(recording_sid).delete()
        except TwilioRestException as exc:
            if exc.status == 404:
                return  # already gone: deleted before, or never stored
            raise RecordingKept(f"Twilio answered {exc.status}") from exc
        except (TwilioException, requests.RequestException) as exc:
            raise RecordingKept(f"{type(exc).__name__}: {exc}") from exc


class NothingAtTwilio:
    """Local development: no Twilio account, no audio anywhere to delete."""

    def delete(self, recording_sid: str) -> None:
        return None


def recordings_for(settings: Settings) -> Recordings:
    """Twilio's recordings when the service talks to Twilio, else nothing to delete."""
    if settings.delivery != "twilio" or not settings.twilio_account_sid:
        return NothingAtTwilio()
    from ivr.delivery.twilio_client import JOB_TIMEOUT, make_client

    return TwilioRecordings(make_client(settings, timeout=JOB_TIMEOUT))


def cutoff_for(days: int, now: datetime) -> datetime:
    """Messages left before this are older than `days` days."""
    if days < 1:
        raise ValueError(f"days must be at least 1, not {days}")
    return _utc(now) - timedelta(days=days)


def _expired(cutoff: datetime) -> ColumnElement[bool]:
    """Messages to delete: older than the cut-off, or erased."""
    return or_(Voicemail.created_at < cutoff, Voicemail.status == ERASED)


def _due(
    session: Session, which: ColumnElement[bool], limit: int, skip: set[int]
) -> list[Voicemail]:
    query = select(Voicemail).where(which)
    if skip:
        query = query.where(Voicemail.id.not_in(sorted(skip)))
    return list(session.scalars(query.order_by(Voicemail.created_at, Voicemail.id).limit(limit)))


def count_due(session: Session, days: int, now: datetime) -> int:
    """How many messages a prune would delete now (`--dry-run`)."""
    query = select(func.count(Voicemail.id)).where(_expired(cutoff_for(days, now)))
    return int(session.scalar(query) or 0)


@dataclass
class Pruned:
    deleted: int = 0
    kept: int = 0  # Twilio did not delete them: the next run tries again


def prune(
    session: Session,
    recordings: Recordings,
    days: int,
    now: datetime,
    *,
    actor: str,
    batch: int = BATCH,
    max_batches: int | None = MAX_BATCHES,
    budget: float | None = BUDGET_SECONDS,
) -> Pruned:
    """Delete the messages older than `days` days (and the erased ones): the audio at
    Twilio, then the row; each batch audited as `voicemail.pruned`."""
    cutoff = cutoff_for(days, now)
    audited = {"days": days, "before": cutoff.isoformat()}
    return _delete(
        session, recordings, _expired(cutoff), batch, max_batches, budget, actor, audited
    )


def delete_erased(session: Session, recordings: Recordings) -> Pruned:
    """Right after a customer's erasure (audited as `customer.erased`): delete their
    messages' audio at Twilio, then the rows; what Twilio keeps stays marked erased,
    with nothing personal in it, for the daily prune."""
    return _delete(session, recordings, Voicemail.status == ERASED, BATCH, None, None, None, {})


def _delete(
    session: Session,
    recordings: Recordings,
    which: ColumnElement[bool],
    batch: int,
    max_batches: int | None,
    budget: float | None,
    actor: str | None,
    audited: dict[str, object],
) -> Pruned:
    started = time.monotonic()
    result, kept_ids, batches = Pruned(), set[int](), 0
    while max_batches is None or batches < max_batches:
        if batches and budget is not None and time.monotonic() - started >= budget:
            break
        rows = _due(session, which, batch, kept_ids)
        gone: list[int] = []
        for row in rows:
            try:
                recordings.delete(row.recording_sid)
            except RecordingKept as exc:
                log.warning("voicemail %s kept for the next run: %s", row.recording_sid, exc)
                kept_ids.add(row.id)
                continue
            gone.append(row.id)
        if gone:
            session.execute(delete(Voicemail).where(Voicemail.id.in_(gone)))
        batches += 1
        result.deleted += len(gone)
        result.kept += len(rows) - len(gone)
        if actor is not None and (rows or batches == 1):  # a run that found none says so
            details = {
                "deleted": len(gone),
                "kept": len(rows) - len(gone),
                "total": result.deleted,
                "batch": batches,
                **audited,
            }
            audit.record(session, "voicemail.pruned", actor=actor, details=details)
        else:
            session.commit()
        session.expire_all()
        if len(rows) < batch:
            break
    return result


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
