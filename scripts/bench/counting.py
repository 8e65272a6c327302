"""Redis round trips, SQL statements and call-state size per webhook, counted in process.

The timed rounds run the service under gunicorn, where nothing can be counted from
outside; so the same journeys are played once more through Flask's test client on an
app built from the same settings (same database, Redis and Twilio double), each
webhook inside an `ivr.storage.roundtrips.counting` block. Jobs are queued, not run
(`IVR_JOBS=worker`): what a worker does later is not a webhook's cost. The call state
is read after each webhook to measure its size.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from twilio.request_validator import RequestValidator

from scripts.bench.journeys import PLAYERS, DoubleClient, Journey, JourneyError, Pools
from scripts.bench.seed import SHAPES


@dataclass
class Counted:
    webhooks: int = 0
    redis: int = 0
    sql: int = 0
    state_bytes: list[int] = field(default_factory=list)
    per_shape: dict[str, dict[str, float]] = field(default_factory=dict)


class CountingTransport:
    """Posts through the app's test client, counting each request's round trips."""

    def __init__(self, app: Any):
        from ivr.storage import keys, kv, roundtrips

        self.app = app
        self.client = app.test_client()
        self.roundtrips = roundtrips
        self.keys = keys
        self.kv = kv
        self.redis = 0
        self.sql = 0
        self.webhooks = 0
        self.state_bytes: list[int] = []

    def post(self, path: str, form: dict[str, str], signature: str) -> tuple[int, str]:
        with self.roundtrips.counting(self.app) as counts:
            response = self.client.post(path, data=form, headers={"X-Twilio-Signature": signature})
        self.webhooks += 1
        self.redis += counts.redis
        self.sql += counts.sql
        call_sid = form.get("CallSid", "")
        if form.get("Direction") == "inbound" and path.startswith("/voice/input"):
            with self.app.app_context():
                raw = self.kv.client().get(self.keys.call_state(call_sid))
            if raw is not None:
                self.state_bytes.append(len(raw))
        return response.status_code, response.get_data(as_text=True)

    def close(self) -> None:
        pass


def count(
    env: Mapping[str, str],
    *,
    public_url: str,
    auth_token: str,
    double_port: int,
    pools: Pools,
    calls_per_shape: int,
) -> Counted:
    """Play `calls_per_shape` journeys of each shape in process and count their costs."""
    from ivr.app import create_app

    # The service logs each step at INFO; the bench's own output is the report. (A root
    # handler set here keeps the app's logging setup from adding its own.)
    logging.basicConfig(level=logging.WARNING)
    app = create_app({**env, "IVR_JOBS": "worker"})
    transport = CountingTransport(app)
    validator = RequestValidator(auth_token)
    double = DoubleClient(double_port)
    result = Counted()

    def record(elapsed: float, ok: bool) -> None:
        pass

    try:
        for shape in SHAPES:
            before = (transport.webhooks, transport.redis, transport.sql)
            for _ in range(calls_per_shape):
                journey = Journey(
                    transport=transport,
                    validator=validator,
                    public_url=public_url,
                    record=record,
                    deadline=time.monotonic() + 60,
                    live=True,
                    double=double,
                )
                try:
                    PLAYERS[shape](journey, pools.take(shape))
                except JourneyError as exc:
                    raise SystemExit(
                        f"counting pass, {shape} journey: {exc}"
                        + (
                            " (customers used up: raise --customers)"
                            if pools.wrapped[shape]
                            else ""
                        )
                    ) from None
            webhooks = transport.webhooks - before[0]
            result.per_shape[shape] = {
                "webhooks_per_call": webhooks / calls_per_shape,
                "redis_per_webhook": (transport.redis - before[1]) / webhooks,
                "sql_per_webhook": (transport.sql - before[2]) / webhooks,
            }
    finally:
        double.close()
        _dispose(app)
    result.webhooks = transport.webhooks
    result.redis = transport.redis
    result.sql = transport.sql
    result.state_bytes = transport.state_bytes
    return result


def _dispose(app: Any) -> None:
    """Close the in-process app's pooled connections (the scratch database is dropped)."""
    factory = app.extensions.get("ivr.db")
    bind = getattr(factory, "kw", {}).get("bind") if factory is not None else None
    if bind is not None:
        bind.dispose()
    client = app.extensions.get("ivr.redis")
    if client is not None:
        client.close()
