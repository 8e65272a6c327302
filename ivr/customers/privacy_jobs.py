"""A customer's data in the job queue: RQ job records on the jobs Redis.

A job's payload is the customer's data until the job has run, and its record stays
after (a finished job an hour, a failed one two weeks): a `notice` holds the full
number or email it goes to and the text; a `call.record` the summary of a call
(account, masked caller, the caller's keyed hash) that re-inserts the call's history
when it runs; an `audit` the row it will write; a `number_change.after_call` the
account. The queue may live on another Redis than the app's (IVR_JOBS_REDIS_URL), and
RQ stores payloads serialised (JSON here, possibly compressed), so jobs are read with
RQ's own API, never by parsing its hashes, across every registry of the queue.

What the erase does with them (`privacy_erase`):
- refuses while a job of theirs is running (`started`), or while one that would
  write their data back (`call.record`, `audit`, `number_change.after_call`) waits to
  run (queued, scheduled for a retry, deferred): run the worker or wait, then erase;
- deletes the notices addressed to them or about their accounts and their call-backs
  chosen on hold (`queue_callback.place`), whether waiting or done, and the finished,
  failed or canceled records of any job that holds their data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rq.job import Job
from rq.serializers import JSONSerializer

from ivr.customers.privacy import Footprint, names_them
from ivr.jobs import queue as jobqueue

WAITING = ("queued", "scheduled", "deferred")  # will run later
RUNNING = "started"
DONE = ("finished", "failed", "canceled")  # records kept for a while
# Jobs that write the customer's data back into the database when they run.
WRITERS = (jobqueue.CALL_RECORD, jobqueue.AUDIT, jobqueue.AFTER_CALL)


@dataclass(frozen=True)
class QueuedJob:
    """One job of the queue that holds a customer's data."""

    id: str
    name: str
    where: str  # queued | scheduled | deferred | started | finished | failed | canceled
    payload: Mapping[str, Any]

    @property
    def pending(self) -> bool:
        return self.where in WAITING or self.where == RUNNING

    def blocks_erase(self) -> bool:
        """Running, or waiting to write their data back: the erase must wait for it."""
        return self.where == RUNNING or (self.where in WAITING and self.name in WRITERS)


@dataclass(frozen=True)
class Subject:
    """What identifies a customer in a job payload, taken before the erase changes it."""

    account_ids: frozenset[int]
    call_sids: frozenset[str]
    addresses: frozenset[str]  # full numbers and the email (lower case)
    number_keys: frozenset[str]  # keyed hashes of their numbers (calls.caller_key)
    distinctive: frozenset[str]

    @classmethod
    def of(cls, found: Footprint) -> Subject:
        addresses = set(found.numbers)
        if found.customer.email:
            addresses.add(found.customer.email.lower())
        return cls(
            frozenset(found.account_ids),
            frozenset(found.call_sids),
            frozenset(addresses),
            frozenset(found.number_keys),
            frozenset(found.distinctive_tokens()),
        )

    def holds(self, name: str, payload: Mapping[str, Any]) -> bool:
        """Whether a payload of job `name` holds this customer's data."""
        if payload.get("account_id") in self.account_ids:
            return True
        if payload.get("call_sid") in self.call_sids:
            return True
        if name == jobqueue.NOTICE:
            return str(payload.get("to") or "").lower() in self.addresses
        if name == jobqueue.CALL_RECORD:
            summary = payload.get("summary") or {}
            return (
                summary.get("account_id") in self.account_ids
                or summary.get("caller_key") in self.number_keys
            )
        return names_them(payload, self.distinctive)


def registries(jobs: jobqueue.JobQueue) -> dict[str, list[str]]:
    """The job ids of every registry of the queue, by where the jobs are."""
    queue = jobs.queue
    return {
        "queued": queue.get_job_ids(),
        "scheduled": queue.scheduled_job_registry.get_job_ids(),
        "deferred": queue.deferred_job_registry.get_job_ids(),
        "started": queue.started_job_registry.get_job_ids(),
        "finished": queue.finished_job_registry.get_job_ids(),
        "failed": queue.failed_job_registry.get_job_ids(),
        "canceled": queue.canceled_job_registry.get_job_ids(),
    }


def their_jobs(jobs: jobqueue.JobQueue, subject: Subject) -> list[QueuedJob]:
    """Every job of the queue, in any registry, whose payload holds their data."""
    found: dict[str, QueuedJob] = {}
    for where, ids in registries(jobs).items():
        for job in _fetch(jobs, ids):
            name, payload = _args(job)
            if job.id not in found and subject.holds(name, payload):
                found[job.id] = QueuedJob(job.id, name, where, payload)
    return sorted(found.values(), key=lambda item: (item.where, item.name, item.id))


def blocking(found: Iterable[QueuedJob]) -> QueuedJob | None:
    """The first of their jobs the erase must wait for, if any."""
    return next((job for job in found if job.blocks_erase()), None)


def delete_jobs(jobs: jobqueue.JobQueue, subject: Subject) -> int:
    """Delete their notices and the kept records of their jobs; how many were deleted.
    Jobs that would write their data back are left (the erase was refused for them)."""
    doomed = [
        job.id
        for job in their_jobs(jobs, subject)
        if not job.blocks_erase()
        and (job.name in (jobqueue.NOTICE, jobqueue.QUEUE_CALLBACK) or job.where in DONE)
    ]
    deleted = 0
    for job in _fetch(jobs, doomed):
        # Out of its registry (by its status) or the queue, with its results.
        job.delete(remove_from_queue=True)
        deleted += 1
    return deleted


def _fetch(jobs: jobqueue.JobQueue, ids: list[str]) -> list[Job]:
    fetched = Job.fetch_many(ids, connection=jobs.connection, serializer=JSONSerializer)
    return [job for job in fetched if job is not None]


def _args(job: Job) -> tuple[str, Mapping[str, Any]]:
    """A job's name and payload (`ivr.jobs.runner.perform(name, payload, key)`)."""
    try:
        name, payload, _key = job.args
    except (TypeError, ValueError):  # not one of ours: read its arguments as a whole
        return "", {"args": list(job.args or ())}
    return str(name), payload if isinstance(payload, Mapping) else {"payload": payload}
