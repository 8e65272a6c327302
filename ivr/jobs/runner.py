"""Runs queued jobs: one job in the app's context, and the loops that run them.

- `perform` is what RQ calls for every job: it skips a key already done, runs the
  task, marks the key done, and on the last failed attempt audits `job.failed`.
- IVR_JOBS=worker: `ivr jobs worker` (the Procfile's `worker:`) runs RQ's worker.
- IVR_JOBS=in-process: a daemon thread of the web process runs the same queue, with
  the same retries, so `make run` stays one command. It shares the app's Redis (the
  in-process stand-in included). Under tests (`app.testing`), and when the call
  simulator plays Twilio in the same process (`run_at_request_end`), there is no
  thread: the jobs a request queued run when it ends — as a worker would have run
  them by the time Twilio acts again — and `run_pending` runs the rest.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, g
from rq import SimpleWorker, get_current_job
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.timeouts import BaseDeathPenalty

from ivr.delivery import DeliveryFailed, DeliveryUncertain
from ivr.errors import StorageUnavailable
from ivr.jobs import queue as jobqueue
from ivr.jobs import schedule
from ivr.jobs.failures import PermanentFailure
from ivr.metrics import logs
from ivr.metrics import registry as metrics
from ivr.storage import audit, db

log = logging.getLogger(__name__)

# How often the in-process runner looks for retries that became due.
POLL_SECONDS = 1.0

_app: contextvars.ContextVar[Flask | None] = contextvars.ContextVar("ivr_jobs_app", default=None)
_worker_app: Flask | None = None  # the app of `ivr jobs worker` (one per process)


# ------------------------------------------------------------------ one job


def perform(name: str, payload: Mapping[str, Any], key: str) -> str:
    """Run job `name` once for `key` in the app's context (RQ calls this)."""
    from ivr.jobs.tasks import TASKS  # the tasks build services; only a job needs them

    app = _app.get() or _worker_app
    if app is None:
        raise RuntimeError("no app bound to run jobs")
    jobs = jobqueue.get(app)
    # A request context of its own (no request came in): the tasks build our webhook
    # URLs with url_for, as the views do, on the IVR_PUBLIC_URL base.
    with app.test_request_context("/"):
        if jobs.connection.exists(jobqueue.done_key(key)):
            log.info("job %s %s already done; skipped", name, jobqueue.job_id(key))
            return "already done"
        job = get_current_job()
        # The job's lines carry its call's CallSid (JSON logs), as the webhook's did.
        bound = logs.bind_call_sid(payload.get("call_sid"))
        try:
            TASKS[name](payload)
        except DeliveryUncertain as exc:
            # It may have gone out: a second try could deliver twice. Done, with a note.
            log.warning("job %s %s: %s; not retried", name, jobqueue.job_id(key), exc.reason)
        except Exception as exc:
            _failed(job, name, payload, key, exc)
            raise
        finally:
            logs.unbind_call_sid(bound)
        _mark_done(jobs.connection, name, key)
    return "done"


# Tries of the done marker after the work succeeded, with these pauses (seconds).
MARK_DONE_PAUSES = (0.2, 1.0, 3.0)


def _mark_done(connection: Any, name: str, key: str) -> None:
    """Record that `key` did its work. It already did: a Redis hiccup here must not make
    RQ run it (and send) again, so the idempotent SET is tried a few times and a final
    failure is logged, not raised."""
    for pause in (*MARK_DONE_PAUSES, None):
        try:
            connection.set(jobqueue.done_key(key), "1", ex=jobqueue.KEY_TTL)
            return
        except Exception as exc:  # redis-py's ConnectionError/TimeoutError, the stand-in's
            if pause is None:
                log.error(
                    "job %s %s done, but not marked (%s): a retry of it could repeat it",
                    name,
                    jobqueue.job_id(key),
                    one_line(exc),
                )
                return
            time.sleep(pause)


def _failed(
    job: Job | None, name: str, payload: Mapping[str, Any], key: str, exc: Exception
) -> None:
    """Note the error on the job; on the last attempt (or a permanent failure) audit it."""
    error = one_line(exc)
    permanent = isinstance(exc, PermanentFailure) or (
        isinstance(exc, DeliveryFailed) and exc.permanent
    )
    if job is not None:
        if permanent:
            job.retries_left = 0  # RQ reads this after we raise: straight to failed
        job.meta["error"] = error
        job.save_meta()
    final = job is None or permanent or not job.retries_left
    identifier = jobqueue.job_id(key)
    metrics.count_job_failed(name, final=final)
    if not final:
        log.warning("job %s %s failed, will retry: %s", name, identifier, error)
        return
    log.error("job %s %s failed for good: %s", name, identifier, error)
    call_sid = payload.get("call_sid")
    try:
        audit.record(
            db.session(),
            "job.failed",
            actor="jobs",
            call_sid=call_sid if isinstance(call_sid, str) else None,
            account_id=_int_or_none(payload.get("account_id")),
            details={"job": name, "key": key, "id": identifier, "error": error},
            dedupe_key=f"job.failed:{identifier}",
        )
    except Exception as audit_exc:  # the database may be what failed
        db.session().rollback()
        log.error("job %s %s: job.failed not audited: %s", name, identifier, one_line(audit_exc))


def one_line(exc: BaseException) -> str:
    """An error in one short line: its type and first line (our messages hold no secret;
    a database error's SQL and parameters are left out)."""
    if isinstance(exc, DeliveryFailed):
        return f"{type(exc).__name__}: {exc.reason}"
    if isinstance(exc, StorageUnavailable):
        return f"{type(exc).__name__}: {exc}"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}"[:200]


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) else None


# ------------------------------------------------------------------ running the queue


class _NoDeathPenalty(BaseDeathPenalty):
    """A thread cannot take SIGALRM; each request in a job has its own timeout."""

    def setup_death_penalty(self) -> None:
        pass

    def cancel_death_penalty(self) -> None:
        pass


class ThreadWorker(SimpleWorker):
    """RQ's SimpleWorker for a thread: no signal handlers, no alarm."""

    death_penalty_class = _NoDeathPenalty

    def _install_signal_handlers(self) -> None:
        pass

    def subscribe(self) -> None:
        """No command channel: nobody sends `rq` commands to a thread of the web process,
        and with redis-py 8 its listener thread's stop waits out its 60-second poll (a
        minute at the end of every burst: every request that queued a job)."""

    def unsubscribe(self) -> None:
        pass


class AppWorker(SimpleWorker):
    """RQ's SimpleWorker (jobs in this process, no fork) for `ivr jobs worker`; its
    maintenance rounds (every `schedule.SWEEP_EVERY` seconds or so) also queue the
    housekeeping jobs that are due."""

    def run_maintenance_tasks(self) -> None:
        super().run_maintenance_tasks()
        if _worker_app is not None:
            schedule.queue_due(jobqueue.get(_worker_app))


def bind_worker_app(app: Flask) -> None:
    """The app `ivr jobs worker` runs every job in."""
    global _worker_app
    _worker_app = app


def promote_due(jobs: jobqueue.JobQueue, until: float) -> int:
    """Move retries due by `until` (epoch seconds) from the scheduled registry to the
    queue: what RQ's scheduler does, without its lock script (the stand-in has no Lua)."""
    registry = jobs.queue.scheduled_job_registry
    ids = registry.get_jobs_to_schedule(int(until))
    moved = 0
    for job in Job.fetch_many(ids, connection=jobs.connection, serializer=JSONSerializer):
        if job is None:
            continue
        registry.remove(job)
        jobs.queue.enqueue_job(job)
        moved += 1
    return moved


def run_burst(app: Flask, *, until: float | None = None) -> bool:
    """Run every job queued now, and the retries due by `until` (default: now)."""
    jobs = jobqueue.get(app)
    promote_due(jobs, time.time() if until is None else until)
    token = _app.set(app)
    try:
        worker = ThreadWorker([jobs.queue], connection=jobs.connection, serializer=JSONSerializer)
        return worker.work(burst=True, logging_level="WARNING")
    finally:
        _app.reset(token)


def run_pending(app: Flask, *, retries: bool = False) -> bool:
    """Run the queued jobs now (tests, `ivr jobs run`); with `retries`, also every retry
    waiting for its backoff, as if the wait were over. True if any job ran."""
    worked = False
    while run_burst(app, until=time.time() + 10 * 86400 if retries else None):
        worked = True
        if not retries:
            break
    return worked


AT_REQUEST_END = "IVR_JOBS_AT_REQUEST_END"  # app.config flag, see run_at_request_end


def run_at_request_end(app: Flask) -> None:
    """Run the jobs a request queues when it ends, not on a thread: for `ivr call` in
    process, whose next webhook must find what the job did (a call-back placed)."""
    app.config[AT_REQUEST_END] = True


def _at_request_end(app: Flask) -> bool:
    return bool(app.testing or app.config.get(AT_REQUEST_END))


class InProcessRunner:
    """A daemon thread of the web process running the queue (IVR_JOBS=in-process)."""

    def __init__(self, app: Flask):
        self.app = app
        self.wake = threading.Event()
        self.idle = threading.Event()
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()
        self.stopped = threading.Event()

    def notify(self) -> None:
        """A job was queued: start the thread if needed, and wake it."""
        with self.lock:
            if self.stopped.is_set():
                return
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._loop, name="ivr-jobs", daemon=True)
                self.thread.start()
        self.idle.clear()
        self.wake.set()

    def _loop(self) -> None:
        asked = 0.0
        while not self.stopped.is_set():
            self.wake.wait(POLL_SECONDS)
            self.wake.clear()
            if self.stopped.is_set():
                break
            try:
                if time.monotonic() - asked >= schedule.ASK_EVERY:
                    asked = time.monotonic()
                    schedule.queue_due(jobqueue.get(self.app))
                run_burst(self.app)
            except Exception:  # Redis gone for a moment: try again on the next round
                log.exception("in-process jobs: the queue could not be run")
            if not self.wake.is_set():
                self.idle.set()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until the thread has run what was queued (tests, shutdown)."""
        return self.idle.wait(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """End the thread after the job it may be running: an app that is done with
        must not go on taking jobs from a Redis other apps (or tests) still use."""
        self.stopped.set()
        self.wake.set()
        thread = self.thread
        if thread is not None:
            thread.join(timeout)


def init_app(app: Flask) -> None:
    """IVR_JOBS=in-process: run the queue in this process (a thread; at request end
    under tests). IVR_JOBS=worker: nothing here, `ivr jobs worker` runs it."""
    jobs = jobqueue.get(app)
    if not jobqueue.in_process(app):
        return
    runner = InProcessRunner(app)
    app.extensions["ivr.jobs.runner"] = runner

    def queued() -> None:
        if not _at_request_end(app):
            runner.notify()

    jobs.on_enqueue = queued

    @app.after_request
    def run_jobs_of_this_request(response: Response) -> Response:
        if _at_request_end(app) and g.pop("ivr_jobs_queued", False):
            try:
                run_burst(app)
            except Exception:
                log.exception("in-process jobs: the queue could not be run")
        return response
