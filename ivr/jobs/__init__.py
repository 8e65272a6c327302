"""Durable background jobs on RQ over the Redis we already run (issue 11, item 9).

What the caller does not wait for runs here, with retries and backoff: the notices
of a number change, the after-call call-back, audit writes that failed. Each job
has a name (a function in `tasks`) and an idempotency key; a key is queued at most
once and done at most once (see docs/jobs.md for the one window that remains).

- `queue`: the connection, `enqueue`, the key markers, the failed-job listing.
- `runner`: performs a job in the app's context, audits a final failure, runs the
  queue in a thread of the web process (IVR_JOBS=in-process) or for a test now.
- `tasks`: the job functions by name.
- `calls`: what `/voice/status` does when a call ends, durably.
- `cli`: `ivr jobs worker|failed|retry`.
"""

from __future__ import annotations

from ivr.jobs.queue import enqueue

__all__ = ["enqueue"]
