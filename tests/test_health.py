"""Liveness (/healthz) and readiness (/readyz) probes, with real and unreachable storage."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

CLOSED_REDIS = "redis://127.0.0.1:1/0"
CLOSED_DATABASE = "postgresql+psycopg://nobody@127.0.0.1:1/none"


def get_json(app: Flask, path: str) -> tuple[int, dict[str, Any]]:
    """GET `path` (probes are unsigned GETs); its status code and JSON body."""
    response = app.test_client().get(path)
    assert response.is_json, response.get_data(as_text=True)
    return response.status_code, response.get_json()


def test_healthz_is_ok(app: Flask) -> None:
    """Liveness answers 200 without touching any dependency."""
    assert get_json(app, "/healthz") == (200, {"status": "ok"})


def test_healthz_is_ok_with_storage_down(app: Flask, make_app: Any) -> None:
    """Liveness does not depend on Redis or the database (a restart would not fix them)."""
    down = make_app(REDIS_URL=CLOSED_REDIS, DATABASE_URL=CLOSED_DATABASE, IVR_STORAGE_TIMEOUT="0.5")

    assert get_json(down, "/healthz") == (200, {"status": "ok"})


def test_readyz_is_ready_with_redis_and_database(app: Flask) -> None:
    """Readiness answers 200 when Redis and the database both answer."""
    status, body = get_json(app, "/readyz")

    assert status == 200
    assert body == {"status": "ready", "redis": "ok", "database": "ok"}


@pytest.mark.parametrize(
    ("overrides", "down", "up"),
    [
        ({"REDIS_URL": CLOSED_REDIS}, "redis", "database"),
        ({"DATABASE_URL": CLOSED_DATABASE}, "database", "redis"),
    ],
    ids=["redis-down", "database-down"],
)
def test_readyz_names_what_is_down(
    app: Flask, make_app: Any, overrides: dict[str, str], down: str, up: str
) -> None:
    """Readiness answers 503 naming the dependency that does not answer, and only that one."""
    broken = make_app(IVR_STORAGE_TIMEOUT="0.5", **overrides)

    status, body = get_json(broken, "/readyz")

    assert status == 503
    assert body["status"] == "unavailable"
    assert body[down].startswith("unavailable")
    assert body[up] == "ok"
