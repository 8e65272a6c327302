"""The housekeeping jobs that run on a clock: the sweeper of calls whose status never
came (every SWEEP_EVERY seconds), the prune of old call history and the prune of old
voicemail (daily).

No scheduler process to run: whoever runs jobs asks `queue_due` now and then (the
RQ worker at each of its maintenance rounds, the in-process runner every minute).
Each period's job has its own idempotency key, so however many workers ask, each
period's job is queued once.
"""

from __future__ import annotations

import logging
import time

from ivr.errors import StorageUnavailable
from ivr.jobs.queue import PRUNE, SWEEP, VOICEMAIL_PRUNE, JobQueue

log = logging.getLogger(__name__)

SWEEP_EVERY = 300  # seconds between sweeps of calls whose status callback never came
PRUNE_EVERY = 86400  # seconds between prunes of the call history
ASK_EVERY = 60.0  # seconds between two asks of the in-process runner


def queue_due(jobs: JobQueue, now: float | None = None) -> list[str]:
    """Queue the housekeeping jobs of the current periods not queued yet; their names."""
    moment = time.time() if now is None else now
    queued = []
    for name, every in ((SWEEP, SWEEP_EVERY), (PRUNE, PRUNE_EVERY), (VOICEMAIL_PRUNE, PRUNE_EVERY)):
        try:
            if jobs.enqueue(name, {}, f"{name}:{int(moment // every)}"):
                queued.append(name)
        except StorageUnavailable as exc:  # the next ask tries again
            log.warning("housekeeping job %s not queued: %s", name, exc)
    return queued
