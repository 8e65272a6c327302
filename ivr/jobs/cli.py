"""`ivr jobs`: run the worker, list the jobs that finally failed, retry one."""

from __future__ import annotations

import json

import click
import redis
from flask import current_app
from flask.cli import with_appcontext
from rq import Queue
from rq.serializers import JSONSerializer

from ivr.jobs import queue as jobqueue
from ivr.jobs import runner, schedule


@click.group("jobs")
def jobs() -> None:
    """Background jobs: notices, the after-call call-back, audit writes (docs/jobs.md)."""


@jobs.command("worker")
@click.option("--burst", is_flag=True, help="Run what is queued (and due), then exit.")
@with_appcontext
def worker(burst: bool) -> None:
    """Run the jobs (the Procfile's `worker:` process)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    settings = app.config["IVR_SETTINGS"]
    if burst:
        worked = runner.run_burst(app)
        click.echo("ran the queued jobs" if worked else "no job was queued")
        return
    url = settings.jobs_redis_url or settings.redis_url
    if url is None:
        raise click.ClickException(
            "the in-process Redis stand-in cannot be shared with a worker process: set"
            " REDIS_URL (or IVR_JOBS_REDIS_URL), or run jobs in the web process"
            " (IVR_JOBS=in-process)"
        )
    # Its own connection: the worker blocks on the queue longer than a webhook's timeout.
    connection = redis.Redis.from_url(url, socket_connect_timeout=5, health_check_interval=30)
    runner.bind_worker_app(app)
    queue = Queue(jobqueue.QUEUE_NAME, connection=connection, serializer=JSONSerializer)
    work = runner.AppWorker(
        [queue],
        connection=connection,
        serializer=JSONSerializer,
        maintenance_interval=schedule.SWEEP_EVERY,
    )
    work.work(with_scheduler=True)


@jobs.command("failed")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@with_appcontext
def failed(as_json: bool) -> None:
    """Jobs whose retries ran out: when, name, key, the last error (one line each)."""
    listed = jobqueue.failed_jobs(jobqueue.get())
    for job in listed:
        if as_json:
            click.echo(json.dumps(job.as_dict(), sort_keys=True))
        else:
            when = job.failed_at.strftime("%Y-%m-%d %H:%M:%S") if job.failed_at else "-"
            click.echo(f"{when}  {job.id}  {job.name}  {job.key}  {job.error}")
    if not listed and not as_json:
        click.echo("no failed jobs")


@jobs.command("retry")
@click.argument("job_id")
@with_appcontext
def retry(job_id: str) -> None:
    """Queue a failed job again (one more attempt)."""
    if not jobqueue.retry_failed(jobqueue.get(), job_id):
        raise click.ClickException(f"no failed job {job_id!r} (see `ivr jobs failed`)")
    click.echo(f"job {job_id} queued again")
