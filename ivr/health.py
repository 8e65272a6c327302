"""Liveness and readiness probes for the platform's router and orchestrator.

Readiness asks Redis and the database at the same time, through the same bounded paths
the webhooks use, and answers within IVR_STORAGE_TIMEOUT whatever they do: a store that
is down fails at once, one that stalls is reported as not answering in time. (A check
still running then finishes on its own within its own bounds; nothing waits for it.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from flask import Blueprint, Flask, Response, current_app, jsonify
from sqlalchemy import select

from ivr.storage import db, kv
from ivr.storage.models import FlowVersion

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process is up (no dependencies checked)."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Redis and the database both answer in time; 503 naming whichever does not."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    timeout: float = app.config["IVR_SETTINGS"].storage_timeout
    checks = _run_checks(app, {"redis": _ping_redis, "database": _ping_database}, timeout)
    ready = all(value == "ok" for value in checks.values())
    return jsonify(status="ready" if ready else "unavailable", **checks), 200 if ready else 503


def _ping_redis() -> None:
    kv.client().ping()


def _ping_database() -> None:
    # A read of one of our tables, not `SELECT 1`: SQLite answers that without its lock.
    db.session().execute(select(FlowVersion.id).limit(1))


def _run_checks(
    app: Flask, checks: dict[str, Callable[[], None]], timeout: float
) -> dict[str, str]:
    """Each check in a thread of its own; "ok", or why not, for each, after `timeout` at most."""
    results = {name: f"unavailable: no answer within {timeout:g} s" for name in checks}
    lock = threading.Lock()

    def run(name: str, check: Callable[[], None]) -> None:
        with app.app_context():
            try:
                check()
                outcome = "ok"
            except Exception as exc:
                outcome = f"unavailable: {type(exc).__name__}"
        with lock:
            results[name] = outcome

    threads = [
        threading.Thread(target=run, args=(name, check), daemon=True, name=f"readyz-{name}")
        for name, check in checks.items()
    ]
    for thread in threads:
        thread.start()
    ends = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, ends - time.monotonic()))
    with lock:  # a check that finishes later changes nothing already answered
        return dict(results)
