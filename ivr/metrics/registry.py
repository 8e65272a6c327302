"""The metric objects, created once per process, and the helpers that count into them.

prometheus-client's default registry is process-wide, and tests build many apps in
one process: the metrics live here, at module level, never per app. Under gunicorn
(PROMETHEUS_MULTIPROC_DIR set before this module is imported, by `gunicorn.conf.py`)
each worker writes its values to files in that folder and `/metrics` adds them up.

Label values are never a caller's data: each is a word of our own vocabulary (an
endpoint name, a channel, a result), a Twilio error code, or "other". `word` enforces
that, so a value with a digit string (a phone number, a code) can never become a
label, and a label can never grow without bound.

An app whose `/metrics` is off (no IVR_METRICS_TOKEN or IVR_METRICS_ALLOW) counts
nothing: the console's simulator sandbox, an app of its own in the same process, must
not count its rehearsed calls as real ones.
"""

from __future__ import annotations

import os
import re
import stat

from flask import current_app, has_app_context
from prometheus_client import Counter, Histogram

# Twilio waits 15 s for a webhook; the budget is well under 1 s at p99. Fine buckets
# below a second, coarse ones up to Twilio's limit.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 15.0)

OTHER = "other"
_WORD = re.compile(r"[a-z][a-z_.-]{0,47}")  # no digits: no number or code gets through


def _private_folder(path: str) -> None:
    """Make `path` (0700) if missing; refuse it unless it is a real directory of this
    user's that no one else may write to (the same rules as `gunicorn.conf.py`)."""
    if not os.path.lexists(path):
        os.makedirs(path, mode=0o700, exist_ok=True)
    info = os.lstat(path)  # a symlink is judged as itself, not followed
    if (
        not stat.S_ISDIR(info.st_mode)
        or info.st_uid != os.geteuid()
        or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    ):
        raise RuntimeError(
            f"PROMETHEUS_MULTIPROC_DIR {path!r} is not a directory of this user's that "
            "only this user may write to (a symlink is refused too)"
        )


# prometheus-client writes a worker's values into this folder under gunicorn: it must
# exist before the first value is made (an `ivr` command run with the variable set, on a
# machine where gunicorn never made the folder, must not fail for want of it).
_MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _MULTIPROC_DIR:
    _private_folder(_MULTIPROC_DIR)

REQUEST_SECONDS = Histogram(
    "ivr_request_duration_seconds",
    "Time to answer a request (webhooks included), by Flask endpoint.",
    ["endpoint"],
    buckets=LATENCY_BUCKETS,
)
CALLS_STARTED = Counter("ivr_calls_started_total", "Calls that reached the flow's first node.")
CALLS_ENDED = Counter(
    "ivr_calls_ended_total",
    "Calls that ended, by outcome (transferred|ended|abandoned) and Twilio's final status.",
    ["outcome", "status"],
)
VERIFICATIONS = Counter(
    "ivr_verifications_total",
    "Verification steps by method and outcome (passed, or a failed code check's result).",
    ["method", "outcome"],
)
CODES_SENT = Counter(
    "ivr_codes_sent_total",
    "One-time codes sent, by channel (sms|email|call) and result.",
    ["channel", "result"],
)
CALLBACKS = Counter(
    "ivr_callbacks_total",
    "Number-change call-backs by stage (start|status|code) and outcome.",
    ["stage", "outcome"],
)
TWILIO_ERRORS = Counter(
    "ivr_twilio_errors_total",
    "Twilio REST requests that failed, by Twilio error code (or http_<status>, timeout, "
    "unreachable, unreadable).",
    ["code"],
)
STORAGE_ERRORS = Counter(
    "ivr_storage_errors_total",
    "Storage outages met (turned into StorageUnavailable), by store (redis|database).",
    ["store"],
)
JOBS_QUEUED = Counter("ivr_jobs_queued_total", "Background jobs queued, by job.", ["job"])
JOBS_FAILED = Counter(
    "ivr_jobs_failed_total",
    "Background job attempts that failed, by job; final=yes when no retry is left.",
    ["job", "final"],
)

# Twilio's final call statuses (CallStatus), and how a call can end (ivr.flow.timeline).
CALL_STATUSES = frozenset({"completed", "busy", "no-answer", "failed", "canceled", "unknown"})
OUTCOMES = frozenset({"transferred", "ended", "abandoned"})
STORES = frozenset({"redis", "database"})


def word(value: object, allowed: frozenset[str] | None = None) -> str:
    """`value` as a label value: one of `allowed` (when given), else a lowercase word
    without digits; anything else is "other"."""
    text = str(value) if value is not None else ""
    if allowed is not None:
        return text if text in allowed else OTHER
    return text if _WORD.fullmatch(text) else OTHER


def recording() -> bool:
    """Whether to count now: outside any app (a bare worker), or in an app whose
    `/metrics` is on."""
    if not has_app_context():
        return True
    settings = current_app.config.get("IVR_SETTINGS")
    return settings is None or bool(settings.observe.metrics_enabled)


def count_twilio_error(
    code: int | None = None, status: int | None = None, *, kind: str = ""
) -> None:
    """A failed Twilio REST request: its Twilio error code, else its HTTP status, else
    `kind` (timeout | unreachable | unreadable)."""
    if not recording():
        return
    if code is not None and 10000 <= code <= 99999:  # Twilio's codes have five digits
        label = str(code)
    elif status is not None and 100 <= status <= 599:
        label = f"http_{status}"
    else:
        label = word(kind, frozenset({"timeout", "unreachable", "unreadable"}))
    TWILIO_ERRORS.labels(code=label).inc()


def count_storage_error(store: str) -> None:
    """A storage outage turned into StorageUnavailable."""
    if recording():
        STORAGE_ERRORS.labels(store=word(store, STORES)).inc()


def count_job_queued(job: str) -> None:
    """A job was queued (not a repeat of an idempotency key)."""
    if recording():
        JOBS_QUEUED.labels(job=word(job)).inc()


def count_job_failed(job: str, *, final: bool) -> None:
    """A job attempt failed; `final` when it will not be retried."""
    if recording():
        JOBS_FAILED.labels(job=word(job), final="yes" if final else "no").inc()
