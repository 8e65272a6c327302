"""Storage outages (issue 11, items 1 and 10): the database and Redis down or stalled.

For each outage, every voice webhook of a call in progress answers HTTP 200 with valid
TwiML within 2 s (never a 5xx), the caller at the digits step hears the apology and goes
to an agent, `/readyz` says 503 within 2 s, and once the store is back the next call
works on the same app object, with no restart.

What each outage stands for:

- database "stalled" (PostgreSQL run): a TCP proxy in front of the run's database keeps
  every connection open, accepts new ones and forwards nothing — a server or network
  path that stopped answering; only the client-side deadline bounds that;
- database "refused" (PostgreSQL run): the proxy stops listening and resets its
  connections — the server is down;
- database "locked" (SQLite run, which has no server to proxy): another connection
  holds `BEGIN EXCLUSIVE`, so every read and write waits on SQLite's lock timeout;
- Redis "paused": a private redis-server is sent SIGSTOP (connections stay open, the
  kernel still accepts, nothing answers), then SIGCONT;
- Redis "stopped": the private redis-server is stopped (the port refuses), then started
  again on the same port, empty (no persistence).

The Redis outages always use a redis-server of this test's own on a free port, also in
the default run: the machine's shared Redis is used by other runs and is never paused.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from caller import Phone
from conftest import TEST_DATABASE_URL
from flask import Flask
from kit import (
    AGENT,
    DIGITS_AND_SMS,
    JANE_PHONE,
    add_account,
    call_form,
    gather_step,
    greeting,
    new_sid,
    post,
    says,
    text,
    twiml,
    verified_whisper,
)
from outage.proxy import TcpProxy
from outage.redis_server import RedisServer, redis_server_binary
from werkzeug.test import TestResponse

from ivr.jobs.runner import run_pending
from ivr.storage import db
from ivr.storage.models import AuditEvent

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = ROOT / "prompts"

ANSWER_WITHIN = 2.0  # seconds: the bound for every answer during an outage
HANG_LIMIT = 20.0  # seconds after which a request that never answers fails the test
STORAGE_TIMEOUT = "0.5"  # IVR_STORAGE_TIMEOUT of the apps under test
# As in production, the jobs a webhook queues wait for the worker process: under tests an
# in-process app runs a request's jobs when it ends, which would time them with it.
JOBS = "worker"

DATABASE_OUTAGES = ["stalled", "refused"] if TEST_DATABASE_URL else ["locked"]
REDIS_OUTAGES = ["paused", "stopped"]
OUTAGES = [("database", kind) for kind in DATABASE_OUTAGES] + [
    ("redis", kind) for kind in REDIS_OUTAGES
]

T = TypeVar("T")


# --- the stores under test ---------------------------------------------------------------


@dataclass
class Store:
    """One store the apps of a test use, and how to take it down and bring it back."""

    environ: dict[str, str]  # what the apps' environment says to reach it
    begin: Callable[[str], None]  # the outage of that kind starts
    end: Callable[[str], None]  # …and ends


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server on a free port, stopped after the test."""
    binary = redis_server_binary()
    if binary is None:
        message = "redis-server is not installed; the Redis outage tests need it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    server = RedisServer(binary, tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_store(redis_server: RedisServer) -> Store:
    def begin(kind: str) -> None:
        if kind == "paused":
            redis_server.pause()
        else:
            redis_server.stop()

    def end(kind: str) -> None:
        if kind == "paused":
            redis_server.resume()
        else:
            redis_server.start()

    return Store({"REDIS_URL": redis_server.url}, begin, end)


@pytest.fixture
def database_store(database_url: str) -> Iterator[Store]:
    """The run's database behind a proxy (PostgreSQL), or its SQLite file to lock."""
    if database_url.startswith("sqlite"):
        yield from _sqlite_store(database_url)
        return
    url = sa.make_url(database_url)
    proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)

    def begin(kind: str) -> None:
        if kind == "stalled":
            proxy.stall()
        else:
            proxy.refuse()

    def end(_kind: str) -> None:
        proxy.passthrough()

    store = Store({"DATABASE_URL": proxied}, begin, end)
    store.proxy = proxy  # type: ignore[attr-defined]  (the failover test drops its connections)
    yield store
    proxy.close()


def _sqlite_store(database_url: str) -> Iterator[Store]:
    path = sa.make_url(database_url).database
    assert path
    holders: list[sqlite3.Connection] = []

    def begin(_kind: str) -> None:
        holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN EXCLUSIVE")
        holders.append(holder)

    def end(_kind: str) -> None:
        while holders:
            holder = holders.pop()
            holder.execute("ROLLBACK")
            holder.close()

    yield Store({}, begin, end)
    end("locked")


# --- timing and calls -----------------------------------------------------------------------


def answered_in_time(action: Callable[[], T]) -> T:
    """Run `action` (a request) and fail unless it finishes within ANSWER_WITHIN seconds.

    It runs in a thread so that a request that never answers fails the test (after
    HANG_LIMIT) instead of hanging the run.
    """
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = action()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(HANG_LIMIT)
    elapsed = time.monotonic() - started
    assert not thread.is_alive(), f"no answer within {HANG_LIMIT:g} s"
    if "error" in box:
        raise box["error"]
    assert elapsed <= ANSWER_WITHIN, f"answered after {elapsed:.2f} s"
    result: T = box["result"]
    return result


def webhook(app: Flask, path: str, form: dict[str, str]) -> ET.Element:
    """A signed webhook that must answer 200 with valid TwiML within 2 s."""
    response: TestResponse = answered_in_time(lambda: post(app, path, form))
    assert response.status_code < 500, response.get_data(as_text=True)
    return twiml(response)


def readiness(app: Flask) -> tuple[int, dict[str, Any]]:
    response = answered_in_time(lambda: app.test_client().get("/readyz"))
    return response.status_code, response.get_json()


def assert_apology_and_transfer(app: Flask, doc: ET.Element) -> None:
    """The fail-closed answer: the apology, then the agent."""
    assert says(doc)[:1] == [text(app, "error_apology")]
    dial = doc.find("Dial")
    assert dial is not None, ET.tostring(doc, encoding="unicode")
    assert dial.findtext("Number") == AGENT


def at_digits_step(app: Flask) -> tuple[str, int]:
    """A call from Jane that chose English and is asked for the last 4 digits."""
    call_sid = new_sid()
    doc = twiml(post(app, "/voice/incoming", call_form(call_sid)))
    doc = twiml(post(app, f"/voice/input?s={gather_step(doc)}", call_form(call_sid, Digits="1")))
    assert says(doc) == [text(app, "enter_last4")]
    return call_sid, gather_step(doc)


def transferred(app: Flask) -> tuple[str, str]:
    """A call put through to an agent (silence at the digits step): its CallSid and
    the <Dial> action Twilio posts when the transfer ends."""
    call_sid, step = at_digits_step(app)
    for _ in range(5):  # the prompt is repeated on silence, then the caller goes to an agent
        doc = twiml(post(app, f"/voice/input?s={step}", call_form(call_sid)))
        dial = doc.find("Dial")
        if dial is not None:
            return call_sid, dial.get("action") or ""
        step = gather_step(doc)
    raise AssertionError(f"silence never led to an agent: {ET.tostring(doc, encoding='unicode')}")


def hold_app(make_app: Any, tmp_path: Path, store_env: dict[str, str]) -> Flask:
    """An app on the same storage whose calls start holding in a queue (with a waitUrl)."""
    flows = tmp_path / "hold-flows"
    flows.mkdir()
    (flows / "hold.yaml").write_text(
        "name: hold\nstart: agent\nlanguages: [en-US, es-US]\nnodes:\n"
        "  agent:\n    type: transfer\n    reason: caller_request\n"
        "    target: queue:support\n    queue_max_wait: 300\n    unanswered: sorry\n"
        "  sorry:\n    type: hangup\n    prompt: agents_busy\n"
    )
    app: Flask = make_app(
        IVR_FLOWS_DIR=str(flows),
        IVR_PROMPTS_DIR=str(PROMPTS),
        IVR_FLOW="hold",
        IVR_STORAGE_TIMEOUT=STORAGE_TIMEOUT,
        IVR_JOBS=JOBS,
        **store_env,
    )
    return app


def held(app: Flask) -> tuple[str, str]:
    """A call holding in the queue: its CallSid and the waitUrl Twilio asks."""
    call_sid = new_sid()
    doc = twiml(post(app, "/voice/incoming", call_form(call_sid)))
    enqueue = doc.find("Enqueue")
    assert enqueue is not None, ET.tostring(doc, encoding="unicode")
    return call_sid, enqueue.get("waitUrl") or ""


def wait_form(call_sid: str, queue_time: int) -> dict[str, str]:
    return call_form(call_sid, QueueSid="QU" + "1" * 32, QueueTime=str(queue_time))


def assert_verified_call(app: Flask) -> None:
    """A whole call from Jane: digits, code, menu, a briefed agent — and no apology."""
    result = Phone(app).call(JANE_PHONE, ["1", "4321", "@code", "2"])

    assert result.heard("caller") == [
        *greeting(app),
        text(app, "enter_last4"),
        text(app, "code_sent_sms"),
        text(app, "enter_code"),
        text(app, "main_menu", first_name="Jane"),
        text(app, "connecting"),
    ]
    assert result.heard("agent")[0] == verified_whisper(
        app, "Jane Doe", "4321", DIGITS_AND_SMS, "caller_request"
    )


# --- the tests ---------------------------------------------------------------------------


@pytest.mark.parametrize(("store", "kind"), OUTAGES, ids=[f"{s}-{k}" for s, k in OUTAGES])
def test_every_webhook_answers_in_time_and_the_next_call_works(
    make_app: Any,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    store: str,
    kind: str,
) -> None:
    """During the outage each webhook of a running call answers valid TwiML within 2 s and
    /readyz says 503 within 2 s; afterwards a whole verified call works on the same app."""
    outage: Store = request.getfixturevalue(f"{store}_store")
    app: Flask = make_app(IVR_STORAGE_TIMEOUT=STORAGE_TIMEOUT, IVR_JOBS=JOBS, **outage.environ)
    holding = hold_app(make_app, tmp_path, outage.environ)
    add_account(app, "Jane Doe", JANE_PHONE, "10004321")
    digits_sid, digits_step = at_digits_step(app)
    transfer_sid, dial_action = transferred(app)
    held_sid, wait_url = held(holding)

    outage.begin(kind)
    try:
        webhook(app, "/voice/incoming", call_form(new_sid()))
        keyed = webhook(app, f"/voice/input?s={digits_step}", call_form(digits_sid, Digits="4321"))
        assert_apology_and_transfer(app, keyed)
        webhook(app, dial_action, call_form(transfer_sid, DialCallStatus="no-answer"))
        webhook(app, "/voice/status", call_form(digits_sid, CallStatus="completed"))
        hold = webhook(holding, wait_url, wait_form(held_sid, 10))
        assert [child.tag for child in hold] in (["Say", "Play", "Redirect"], ["Pause"])
        assert_apology_and_transfer(app, webhook(app, "/voice/fallback", call_form(new_sid())))
        status, body = readiness(app)
        assert status == 503
        assert body[store].startswith("unavailable"), body
    finally:
        outage.end(kind)

    assert readiness(app) == (200, {"status": "ready", "redis": "ok", "database": "ok"})
    assert_verified_call(app)
    # The call that ended during the outage is audited once: at once when only Redis was
    # out, by the queued job (run here as the worker would) when the database was.
    run_pending(app, retries=True)
    assert call_ended_records(app, digits_sid) == 1


def call_ended_records(app: Flask, call_sid: str) -> int:
    """How many call.ended audit records the call has."""
    with app.app_context():
        return len(
            db.session()
            .scalars(
                sa.select(AuditEvent).where(
                    AuditEvent.action == "call.ended", AuditEvent.call_sid == call_sid
                )
            )
            .all()
        )


@pytest.mark.parametrize("guard", ["idle ping", "read retry"])
def test_after_a_database_failover_the_next_call_hears_no_apology(
    make_app: Any, database_store: Store, monkeypatch: pytest.MonkeyPatch, guard: str
) -> None:
    """Every pooled connection dies between two calls (PostgreSQL: the proxy drops them
    all, as a restart or a failover does; SQLite: they are closed under the pool, whose
    ping checks every checkout); the next call goes through verified. On PostgreSQL
    each guard is tested alone: the ping of a connection idle long enough (here: every
    one), and the retry of a read whose connection died while it was busy."""
    if guard == "idle ping":
        monkeypatch.setattr(db, "PING_AFTER_IDLE", 0.0)
        monkeypatch.setattr(db, "READ_RETRIES", 0)
    else:
        monkeypatch.setattr(db, "PING_AFTER_IDLE", 1e9)
    app: Flask = make_app(
        IVR_STORAGE_TIMEOUT=STORAGE_TIMEOUT, IVR_JOBS=JOBS, **database_store.environ
    )
    opened: list[Any] = []
    with app.app_context():
        sa.event.listen(db.engine(), "connect", lambda dbapi, _record: opened.append(dbapi))
        db.engine().dispose()  # every connection from now on is recorded
    add_account(app, "Jane Doe", JANE_PHONE, "10004321")
    assert_verified_call(app)
    assert opened, "the first call used no database connection"

    proxy = getattr(database_store, "proxy", None)
    if proxy is not None:
        proxy.drop()
    else:
        for connection in opened:
            connection.close()

    assert_verified_call(app)


def test_fallback_needs_neither_store(
    make_app: Any, database_store: Store, redis_store: Store
) -> None:
    """With the database stalled and Redis paused, and a storage timeout far above 2 s,
    the fallback still answers the apology and a transfer within 2 s: it touches neither."""
    database_kind = DATABASE_OUTAGES[0]  # stalled (PostgreSQL) or locked (SQLite)
    app: Flask = make_app(IVR_STORAGE_TIMEOUT="10", **database_store.environ, **redis_store.environ)
    database_store.begin(database_kind)
    redis_store.begin("paused")
    try:
        doc = webhook(app, "/voice/fallback", call_form(new_sid(), ErrorCode="11200"))
    finally:
        redis_store.end("paused")
        database_store.end(database_kind)

    assert_apology_and_transfer(app, doc)
