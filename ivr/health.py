"""Liveness and readiness probes for the platform's router and orchestrator."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from sqlalchemy import text

from ivr.storage import db, kv

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process is up (no dependencies checked)."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Redis and the database both answer; 503 naming whichever does not."""
    checks: dict[str, str] = {}
    try:
        kv.client().ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"unavailable: {type(exc).__name__}"
    try:
        db.session().execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unavailable: {type(exc).__name__}"
    ready = all(value == "ok" for value in checks.values())
    return jsonify(status="ready" if ready else "unavailable", **checks), 200 if ready else 503
