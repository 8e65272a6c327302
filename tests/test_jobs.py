"""Background jobs (ivr.jobs): a key is queued and done once, failures retry with backoff
and end audited and listed, `ivr jobs failed|retry`, call_ended's durable audit, and the
in-process runner thread of `make run`.

The queue is RQ's on the test app's Redis (the stand-in or real Redis); jobs run when a
test says so (`run_pending`), never by waiting.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from caller import sent
from flask import Flask
from kit import JANE_PHONE, add_account, call_ended_rows, new_sid
from sqlalchemy import create_engine, select
from sqlalchemy.orm import sessionmaker

from ivr.calls import store
from ivr.delivery import DeliveryFailed, Outgoing
from ivr.delivery import registry as delivery
from ivr.delivery.twilio_errors import TwilioDeliveryFailed
from ivr.flow.state import CallState
from ivr.jobs import queue as jobqueue
from ivr.jobs import runner
from ivr.jobs.calls import call_ended
from ivr.jobs.deliveries import send_later
from ivr.jobs.tasks import TASKS
from ivr.storage import db
from ivr.storage.models import AuditEvent

NOTICE_TEXT = "Your phone number on file was changed."

NEW_PHONE = "+14155550199"  # the number a caller keys as new


class FailingSms:
    """An SMS channel that fails while `failure` is set, and records what it sent."""

    def __init__(self, failure: DeliveryFailed | None):
        self.failure = failure
        self.sent: list[Outgoing] = []
        self.tries = 0

    def send(self, message: Outgoing) -> str:
        self.tries += 1
        if self.failure is not None:
            raise self.failure
        self.sent.append(message)
        return "SM" + "1" * 32


@pytest.fixture
def app(make_app: Any) -> Flask:
    """Jobs queued for a worker (production's mode): they run when the test says."""
    built: Flask = make_app(IVR_JOBS="worker")
    return built


def sms_channel(app: Flask, failure: DeliveryFailed | None) -> FailingSms:
    channel = FailingSms(failure)
    app.extensions[delivery.BACKGROUND_KEY] = {"sms": channel}
    return channel


def queue_notice(app: Flask, key: str = "notice:chg1:sms", account_id: int = 0) -> bool:
    with app.test_request_context():
        message = Outgoing("sms", JANE_PHONE, NOTICE_TEXT, call_sid="CA1", purpose="x")
        return send_later(message, key=key, account_id=account_id)


def audit_rows(app: Flask, action: str) -> list[AuditEvent]:
    with app.app_context():
        query = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        return list(db.session().scalars(query))


def test_every_job_name_has_a_task_and_a_backoff() -> None:
    assert set(TASKS) == set(jobqueue.BACKOFF)


def test_a_key_is_queued_once_and_done_once(app: Flask) -> None:
    assert queue_notice(app) is True
    assert queue_notice(app) is False  # the same key again: not queued twice

    assert runner.run_pending(app) is True
    assert [(m.channel, m.to, m.body) for m in sent(app)] == [("sms", JANE_PHONE, NOTICE_TEXT)]
    assert runner.run_pending(app) is False  # nothing left

    # Even if the queued marker is gone (lapsed), the done marker keeps it from acting again.
    connection = jobqueue.get(app).connection
    connection.delete(jobqueue.queued_key("notice:chg1:sms"))
    assert queue_notice(app) is True
    runner.run_pending(app)
    assert len(sent(app)) == 1
    assert queue_notice(app, "notice:chg2:sms") is True  # another key is another job
    runner.run_pending(app)
    assert len(sent(app)) == 2


def test_a_hiccup_marking_a_job_done_does_not_send_it_again(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The text went out; Redis then failed twice to take the done marker. The job is
    still done (marked on a later try), and running the queue again sends nothing."""
    connection = jobqueue.get(app).connection
    original_set = type(connection).set
    refusals = {"left": 2}

    def flaky_set(self: Any, name: Any, *args: Any, **kwargs: Any) -> Any:
        if str(name).startswith(jobqueue.done_key("")[:-40]) and refusals["left"]:
            refusals["left"] -= 1
            raise redis.exceptions.ConnectionError("Redis went away for a moment")
        return original_set(self, name, *args, **kwargs)

    monkeypatch.setattr(runner, "MARK_DONE_PAUSES", (0.0, 0.0, 0.0))
    monkeypatch.setattr(type(connection), "set", flaky_set)
    queue_notice(app)
    runner.run_pending(app, retries=True)
    assert refusals["left"] == 0 and len(sent(app)) == 1
    assert connection.exists(jobqueue.done_key("notice:chg1:sms"))
    runner.run_pending(app, retries=True)
    assert len(sent(app)) == 1


def test_unknown_job_name_is_refused(app: Flask) -> None:
    with app.app_context(), pytest.raises(ValueError, match="unknown job 'nope'"):
        jobqueue.enqueue("nope", {}, key="k")


def test_a_failing_job_retries_with_backoff_then_is_audited_and_listed(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    channel = sms_channel(app, DeliveryFailed("sms", "Twilio had a problem (HTTP 500)"))
    jane = add_account(app, "Jane Doe", JANE_PHONE, "10004321")
    queue_notice(app, account_id=jane)

    runner.run_pending(app)
    jobs = jobqueue.get(app)
    assert channel.tries == 1
    # Waiting for its backoff, not failed yet, and not audited.
    assert jobs.queue.scheduled_job_registry.get_job_ids() == [jobqueue.job_id("notice:chg1:sms")]
    assert jobs.queue.failed_job_registry.get_job_ids() == []
    assert runner.run_pending(app) is False  # the retry is not due yet
    assert audit_rows(app, "job.failed") == []

    runner.run_pending(app, retries=True)  # as if every backoff had passed
    assert channel.tries == 1 + len(jobqueue.BACKOFF[jobqueue.NOTICE])
    assert jobs.queue.scheduled_job_registry.get_job_ids() == []
    (failed,) = jobqueue.failed_jobs(jobs)
    assert (failed.name, failed.key) == ("notice", "notice:chg1:sms")
    assert failed.error == "DeliveryFailed: Twilio had a problem (HTTP 500)"
    (row,) = audit_rows(app, "job.failed")
    assert row.details == {
        "job": "notice",
        "key": "notice:chg1:sms",
        "id": failed.id,
        "error": failed.error,
    }
    assert (row.call_sid, row.account_id, row.actor) == ("CA1", jane, "jobs")
    assert JANE_PHONE not in caplog.text

    # The operator's view, and a retry once the cause is fixed.
    cli = app.test_cli_runner()
    listed = cli.invoke(args=["jobs", "failed"])
    assert listed.exit_code == 0, listed.output
    (line,) = listed.output.splitlines()
    assert f"  {failed.id}  notice  notice:chg1:sms  DeliveryFailed: Twilio had a problem" in line
    as_json = cli.invoke(args=["jobs", "failed", "--json"])
    assert json.loads(as_json.output) == failed.as_dict()
    assert JANE_PHONE not in listed.output + as_json.output

    channel.failure = None
    retried = cli.invoke(args=["jobs", "retry", failed.id])
    assert retried.exit_code == 0, retried.output
    runner.run_pending(app)
    assert [m.body for m in channel.sent] == [NOTICE_TEXT]
    assert cli.invoke(args=["jobs", "failed"]).output == "no failed jobs\n"
    unknown = cli.invoke(args=["jobs", "retry", failed.id])
    assert unknown.exit_code == 1 and "no failed job" in unknown.output


def test_a_refusal_is_not_retried(app: Flask) -> None:
    refused = TwilioDeliveryFailed("sms", "the number is not valid", code=21211, status=400)
    channel = sms_channel(app, refused)
    queue_notice(app, account_id=add_account(app, "Jane Doe", JANE_PHONE, "10004321"))

    runner.run_pending(app, retries=True)

    assert channel.tries == 1
    (failed,) = jobqueue.failed_jobs(jobqueue.get(app))
    assert failed.error == "TwilioDeliveryFailed: the number is not valid"
    assert len(audit_rows(app, "job.failed")) == 1


@pytest.mark.parametrize("status", [429, 503])
def test_rate_limits_and_outages_are_retried(app: Flask, status: int) -> None:
    failure = TwilioDeliveryFailed("sms", "try later", code=None, status=status)
    channel = sms_channel(app, failure)
    queue_notice(app)
    runner.run_pending(app)
    channel.failure = None
    runner.run_pending(app, retries=True)
    assert channel.tries == 2 and len(channel.sent) == 1
    assert jobqueue.failed_jobs(jobqueue.get(app)) == []


# --- call_ended ----------------------------------------------------------------------------


def ended_state(
    app: Flask,
    account_id: int | None,
    *,
    changing_number: bool = True,
    slots: dict[str, str] | None = None,
) -> str:
    sid = new_sid()
    state = CallState(
        call_sid=sid,
        flow="support",
        version="v1",
        language="en-US",
        node="main_menu",
        started_at=0.0,
        caller=JANE_PHONE,
        account_id=account_id,
        verification="code",
        changing_number=changing_number,
        slots=dict(slots or {}),
    )
    with app.app_context():
        store.save(state)
    return sid


@pytest.fixture
def database_down(app: Flask) -> Iterator[None]:
    """The app's database unreachable (a file in a directory that does not exist)."""
    real = app.extensions["ivr.db"]
    broken = create_engine("sqlite:////nonexistent-ivr-dir/down.sqlite3")
    app.extensions["ivr.db"] = sessionmaker(broken, expire_on_commit=False)
    yield
    app.extensions["ivr.db"] = real
    broken.dispose()


def test_call_ended_audits_once_and_queues_the_after_call_job(app: Flask) -> None:
    jane = add_account(app, "Jane Doe", JANE_PHONE, "10004321")
    sid = ended_state(app, jane)

    with app.app_context():
        assert call_ended(sid, "completed", 42) is True
        assert store.load(sid) is None  # the state is forgotten
        assert call_ended(sid, "completed", 42) is False  # Twilio repeating itself

    queued = jobqueue.get(app).queue.get_job_ids()
    assert queued == [
        jobqueue.job_id(f"call.record:{sid}:completed"),  # the record, written by the worker
        jobqueue.job_id(f"after_call:{sid}"),
    ]
    assert call_ended_rows(app, sid) == []  # not by the webhook
    runner.run_pending(app)  # no pending change: the after-call job has nothing to ring
    (row,) = call_ended_rows(app, sid)
    assert row.details["duration"] == 42 and row.details["caller"] == "+1415•••0100"
    assert row.details["verification"] == "code"
    assert sent(app) == []


def test_a_call_that_keyed_a_new_number_gets_its_after_call_job_without_the_flag(
    app: Flask,
) -> None:
    """The change's start step may have lost its save (an outage, a step past its lock)
    after creating the change: the new number, saved a step earlier, still says so."""
    jane = add_account(app, "Jane Doe", JANE_PHONE, "10004321")
    sid = ended_state(app, jane, changing_number=False, slots={"new_number": NEW_PHONE})

    with app.app_context():
        assert call_ended(sid, "completed", 42) is True

    assert jobqueue.get(app).queue.get_job_ids() == [
        jobqueue.job_id(f"call.record:{sid}:completed"),
        jobqueue.job_id(f"after_call:{sid}"),
    ]


def test_a_call_that_started_no_number_change_queues_no_after_call_job(app: Flask) -> None:
    jane = add_account(app, "Jane Doe", JANE_PHONE, "10004321")
    sid = ended_state(app, jane, changing_number=False)

    with app.app_context():
        assert call_ended(sid, "completed", 42) is True

    assert jobqueue.get(app).queue.get_job_ids() == [
        jobqueue.job_id(f"call.record:{sid}:completed")
    ]
    runner.run_pending(app)
    assert len(call_ended_rows(app, sid)) == 1
    assert jobqueue.get(app).queue.get_job_ids() == []


def test_call_ended_with_the_database_down_queues_the_audit(
    app: Flask, database_down: None
) -> None:
    sid = ended_state(app, None)
    with app.app_context():
        assert call_ended(sid, "completed", 7) is True

    assert jobqueue.get(app).queue.get_job_ids() == [
        jobqueue.job_id(f"call.record:{sid}:completed")
    ]
    runner.run_pending(app)  # still down: the audit waits for its retry
    assert jobqueue.get(app).queue.scheduled_job_registry.count == 1


def test_a_queued_audit_is_written_once_the_database_is_back(app: Flask) -> None:
    sid = ended_state(app, None)
    real = app.extensions["ivr.db"]
    broken = create_engine("sqlite:////nonexistent-ivr-dir/down.sqlite3")
    app.extensions["ivr.db"] = sessionmaker(broken, expire_on_commit=False)
    try:
        with app.app_context():
            call_ended(sid, "completed", 7)
        runner.run_pending(app)
    finally:
        app.extensions["ivr.db"] = real
        broken.dispose()
    assert call_ended_rows(app, sid) == []

    runner.run_pending(app, retries=True)

    (row,) = call_ended_rows(app, sid)
    assert row.details["status"] == "completed" and row.details["duration"] == 7
    with app.app_context():
        assert call_ended(sid, "completed", 7) is False  # the same dedupe key: once
    assert len(call_ended_rows(app, sid)) == 1


# --- where jobs run -------------------------------------------------------------------------


def test_in_process_jobs_run_on_a_thread_of_the_web_process(make_app: Any) -> None:
    app: Flask = make_app(IVR_JOBS="in-process")
    app.testing = False  # as under `make run`: the runner thread, not the request's end
    queue_notice(app)
    assert app.extensions["ivr.jobs.runner"].wait_idle(10)
    assert [m.body for m in sent(app)] == [NOTICE_TEXT]


def test_a_stopped_runner_takes_no_more_jobs(make_app: Any) -> None:
    """An app done with (a test's, at teardown) must not go on taking jobs from a Redis
    that other apps share: its thread ends and a new job does not start it again."""
    app: Flask = make_app(IVR_JOBS="in-process")
    app.testing = False
    runner_thread = app.extensions["ivr.jobs.runner"]
    queue_notice(app, "notice:a:sms")
    assert runner_thread.wait_idle(10)
    runner_thread.stop()
    assert runner_thread.thread is not None and not runner_thread.thread.is_alive()
    queue_notice(app, "notice:b:sms")
    time.sleep(runner.POLL_SECONDS * 1.5)  # a thread would have polled by now
    assert runner_thread.thread is not None and not runner_thread.thread.is_alive()
    assert len(sent(app)) == 1  # the second waits in the queue for a live runner


def test_in_process_jobs_under_tests_run_when_their_request_ends(make_app: Any) -> None:
    app: Flask = make_app(IVR_JOBS="in-process")
    with app.test_request_context():
        message = Outgoing("sms", JANE_PHONE, NOTICE_TEXT, call_sid="CA1", purpose="x")
        send_later(message, key="k1", account_id=1)
        assert sent(app) == []  # queued, not sent
        response = app.process_response(app.response_class("ok"))
        assert response.status_code == 200
    assert [m.body for m in sent(app)] == [NOTICE_TEXT]


def test_worker_burst_runs_the_queue(app: Flask) -> None:
    queue_notice(app)
    result = app.test_cli_runner().invoke(args=["jobs", "worker", "--burst"])
    assert result.exit_code == 0, result.output
    assert "ran the queued jobs" in result.output
    assert len(sent(app)) == 1
