"""The job queue: an RQ queue on the jobs Redis, and `enqueue` with an idempotency key.

A key is queued at most once (a Redis `SET NX` marker, kept a week) and done at
most once (a "done" marker the runner checks before a job and sets after its side
effect). RQ brings the rest: retries with backoff (`Retry`), a registry of jobs
that finally failed, and the worker. Payloads are JSON (never pickles), hold no
code or keypad digits, and name the job by a function in `ivr.jobs.tasks`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

import redis
from flask import Flask, current_app, g, has_app_context
from rq import Queue, Retry
from rq.job import Job
from rq.serializers import JSONSerializer

from ivr.config import JOBS_IN_PROCESS
from ivr.errors import ConfigError
from ivr.metrics import registry as metrics
from ivr.storage import keys, kv

log = logging.getLogger(__name__)

EXTENSION_KEY = "ivr.jobs"
QUEUE_NAME = "ivr"
PERFORM = "ivr.jobs.runner.perform"  # every job runs through it, by name

# The jobs there are, and their backoff (seconds before each retry). A notice may wait
# an hour for Twilio or the mail server to come back; the after-call call-back is worth
# placing only while the code it asks for lives (5 minutes by default); an audit row
# waits out a database outage.
NOTICE = "notice"
AFTER_CALL = "number_change.after_call"
AUDIT = "audit"
# A call's history (its record and steps) waits out a database outage as an audit row
# does; the housekeeping jobs run again at their next period anyway.
CALL_RECORD = "call.record"
SWEEP = "calls.sweep"
PRUNE = "calls.prune"
# Voicemail past IVR_VOICEMAIL_DAYS (and erased customers' messages): at Twilio, then ours.
VOICEMAIL_PRUNE = "voicemail.prune"
# The call-back a holding caller chose (ivr.voice.queue_callbacks): queued to run when
# their turn is estimated to come (`at`); a retry only covers Twilio refusing the call.
QUEUE_CALLBACK = "queue_callback.place"
BACKOFF: Mapping[str, tuple[int, ...]] = {
    NOTICE: (10, 30, 120, 600, 1800, 3600),
    AFTER_CALL: (5, 15, 30, 60),
    AUDIT: (5, 30, 120, 600, 1800, 3600),
    CALL_RECORD: (5, 30, 120, 600, 1800, 3600),
    SWEEP: (30,),
    PRUNE: (300,),
    VOICEMAIL_PRUNE: (300,),
    QUEUE_CALLBACK: (10, 30),
}

KEY_TTL = 7 * 86400  # how long a key stays queued/done: a retry within it never acts twice
JOB_TIMEOUT = 120  # seconds a job may run (each request in it has its own timeout)
RESULT_TTL = 3600  # a finished job's record
FAILURE_TTL = 14 * 86400  # a failed job stays listed (`ivr jobs failed`) this long


def queued_key(key: str) -> str:
    """Present while (and a week after) a job with this idempotency key was queued."""
    return f"{keys.PREFIX}:jobs:queued:{_digest(key)}"


def done_key(key: str) -> str:
    """Present once the job with this idempotency key has done its work."""
    return f"{keys.PREFIX}:jobs:done:{_digest(key)}"


def job_id(key: str) -> str:
    """The RQ job id of a key: RQ ids allow only letters, digits, - and _."""
    return f"ivr-{_digest(key)}"


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:40]


class JobQueue:
    """The app's queue: where jobs go, and who hears that one was queued."""

    def __init__(self, connection: redis.Redis, mode: str):
        self.connection = connection
        self.mode = mode
        self.queue = Queue(QUEUE_NAME, connection=connection, serializer=JSONSerializer)
        self.on_enqueue: Callable[[], None] | None = None  # the in-process runner's wake-up

    def enqueue(
        self,
        name: str,
        payload: Mapping[str, Any],
        key: str,
        *,
        fresh: bool = False,
        at: datetime | None = None,
    ) -> bool:
        """Queue job `name` for `key` unless that key was queued before; False then.

        `fresh`: the caller knows this key was never queued (it has just taken the only
        copy of what the job carries, e.g. an ended call's timeline), so the marker is
        set with the job, in the same round trip, instead of being checked first.
        `at` (timezone-aware): the job waits in RQ's scheduled registry until then (the
        worker runs with RQ's scheduler; the in-process runner promotes due jobs).
        Redis trouble raises StorageUnavailable: the caller decides what is lost.
        """
        if name not in BACKOFF:
            raise ValueError(f"unknown job {name!r}; known: {', '.join(sorted(BACKOFF))}")
        identifier = job_id(key)
        with kv.unavailable_as_storage_error():
            if not fresh and not self.connection.set(
                queued_key(key), identifier, nx=True, ex=KEY_TTL
            ):
                log.info("job %s %s already queued; not again", name, identifier)
                return False
            try:
                # RQ's writes (the queue's registration, the job, the push) in one
                # round trip: handed our pipeline, RQ queues them and we send them.
                with self.connection.pipeline() as pipe:
                    self._enqueue(pipe, name, payload, key, identifier, at)
                    if fresh:  # after RQ's commands: RQ starts the pipeline's MULTI
                        pipe.set(queued_key(key), identifier, ex=KEY_TTL)
                    pipe.execute()
            except Exception:
                self.connection.delete(queued_key(key))  # not queued: a later try may
                raise
        log.info("job %s %s queued", name, identifier)
        metrics.count_job_queued(name)
        if has_app_context():
            g.ivr_jobs_queued = True
        if self.on_enqueue is not None:
            self.on_enqueue()
        return True

    def _enqueue(
        self,
        pipe: Any,
        name: str,
        payload: Mapping[str, Any],
        key: str,
        identifier: str,
        at: datetime | None = None,
    ) -> None:
        intervals = BACKOFF[name]
        put: Callable[..., Any] = self.queue.enqueue
        if at is not None:
            put = partial(self.queue.enqueue_at, at)
        put(
            PERFORM,
            name,
            dict(payload),
            key,
            job_id=identifier,
            retry=Retry(max=len(intervals), interval=list(intervals)),
            job_timeout=JOB_TIMEOUT,
            result_ttl=RESULT_TTL,
            failure_ttl=FAILURE_TTL,
            description=f"{name} {identifier}",
            pipeline=pipe,
        )


def init_app(app: Flask) -> None:
    """Attach the queue: on IVR_JOBS_REDIS_URL, else on the app's own Redis (which, with
    the in-process stand-in, the in-process runner shares)."""
    settings = app.config["IVR_SETTINGS"]
    if settings.jobs_redis_url is None:
        connection: redis.Redis = app.extensions["ivr.redis"]
    else:
        try:
            connection = kv.connect(settings.jobs_redis_url, settings.storage_timeout)
        except ValueError as exc:
            problem = f"IVR_JOBS_REDIS_URL is not usable: {exc}"
            raise ConfigError(f"Cannot start ivr: {problem}") from None
    app.extensions[EXTENSION_KEY] = JobQueue(connection, settings.jobs)


def get(app: Flask | None = None) -> JobQueue:
    """The app's job queue (the current app's by default)."""
    found: JobQueue = (app or current_app).extensions[EXTENSION_KEY]
    return found


def enqueue(
    name: str,
    payload: Mapping[str, Any],
    *,
    key: str,
    fresh: bool = False,
    at: datetime | None = None,
) -> bool:
    """Queue job `name` with a JSON payload, once per idempotency `key` (see JobQueue);
    with `at`, to run no earlier than then."""
    return get().enqueue(name, payload, key, fresh=fresh, at=at)


def was_queued(key: str) -> bool:
    """Whether a job with this idempotency key was queued (within KEY_TTL)."""
    with kv.unavailable_as_storage_error():
        return bool(get().connection.exists(queued_key(key)))


def in_process(app: Flask) -> bool:
    return bool(get(app).mode == JOBS_IN_PROCESS)


@dataclass(frozen=True)
class FailedJob:
    """A job whose retries ran out (or that could never succeed), as `ivr jobs failed` shows."""

    id: str
    name: str
    key: str
    failed_at: datetime | None
    error: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "key": self.key,
            "failed_at": self.failed_at.isoformat() if self.failed_at else None,
            "error": self.error,
        }


def failed_jobs(jobs: JobQueue) -> list[FailedJob]:
    """The failed-job registry, oldest first."""
    registry = jobs.queue.failed_job_registry
    ids = registry.get_job_ids()
    found = Job.fetch_many(ids, connection=jobs.connection, serializer=JSONSerializer)
    listed = []
    for job in found:
        if job is None:
            continue
        name, _payload, key = job.args
        listed.append(
            FailedJob(
                id=job.id,
                name=str(name),
                key=str(key),
                failed_at=job.ended_at,
                error=str(job.meta.get("error", "unknown")),
            )
        )
    return sorted(listed, key=lambda job: job.failed_at.timestamp() if job.failed_at else 0)


def retry_failed(jobs: JobQueue, identifier: str) -> bool:
    """Put a failed job back on the queue (one more attempt); False if it is not failed."""
    registry = jobs.queue.failed_job_registry
    if identifier not in registry.get_job_ids():
        return False
    registry.requeue(identifier)
    if jobs.on_enqueue is not None:
        jobs.on_enqueue()
    return True
