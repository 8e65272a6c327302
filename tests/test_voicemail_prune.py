"""Voicemail retention: `voicemail.prune` (the daily job) and `ivr voicemail prune|list`
delete a message's recording at Twilio (a local double of the REST API), then its row;
404 counts as deleted, other errors keep the row for the next run; audited per batch.
Also the agent page's audio, streamed from the same double with the account's
credentials."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from agent_kit import add_user, sign_in
from flask import Flask
from flask.testing import FlaskCliRunner
from sqlalchemy import select
from test_voicemail_page import add_voicemail, rows

from ivr.jobs import queue as jobqueue
from ivr.jobs import schedule
from ivr.jobs.tasks import TASKS
from ivr.storage import db
from ivr.storage.models import AuditEvent
from ivr.voicemail import retention

TWILIO_SID = "AC" + "7" * 32
TWILIO_TOKEN = "test-auth-token"  # the test app's TWILIO_AUTH_TOKEN
AUDIO = b"ID3\x03fake mp3 bytes\x00\xff" * 100


def sid_of(n: int) -> str:
    return "RE" + f"{n:032x}"


class RecordingsDouble:
    """Twilio's Recordings resource on a local port: DELETE answers by `answers`
    (recording SID → status, 204 by default); GET of `….mp3` serves AUDIO."""

    def __init__(self) -> None:
        self.answers: dict[str, int] = {}
        self.requests: list[tuple[str, str, str]] = []  # (method, path, authorization)
        double = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(
                self, status: int, body: bytes = b"", kind: str = "application/json"
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_DELETE(self) -> None:
                double.requests.append(("DELETE", self.path, self.headers.get("Authorization", "")))
                sid = self.path.rsplit("/", 1)[-1].removesuffix(".json")
                status = double.answers.get(sid, 204)
                body = (
                    b""
                    if status == 204
                    else b'{"code": 20404, "message": "nope", "status": %d}' % status
                )
                self._answer(status, body)

            def do_GET(self) -> None:
                double.requests.append(("GET", self.path, self.headers.get("Authorization", "")))
                if self.path.endswith(".mp3"):
                    self._answer(200, AUDIO, "audio/mpeg")
                else:
                    self._answer(404, b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def deleted_path(self, n: int) -> str:
        return f"/2010-04-01/Accounts/{TWILIO_SID}/Recordings/{sid_of(n)}.json"


@pytest.fixture
def double() -> Iterator[RecordingsDouble]:
    twilio = RecordingsDouble()
    twilio.thread.start()
    yield twilio
    twilio.server.shutdown()
    twilio.server.server_close()
    twilio.thread.join(timeout=5)


@pytest.fixture
def twilio_app(make_app: Any, double: RecordingsDouble) -> Flask:
    app: Flask = make_app(
        IVR_DELIVERY="twilio",
        TWILIO_ACCOUNT_SID=TWILIO_SID,
        IVR_TWILIO_API_URL=double.url,
        IVR_JOBS="worker",
        IVR_VOICEMAIL_DAYS="30",
    )
    return app


def pruned(app: Flask) -> list[tuple[str, dict[str, Any]]]:
    with app.app_context():
        session = db.session()
        session.expire_all()
        query = select(AuditEvent).where(AuditEvent.action == "voicemail.pruned")
        return [
            (event.actor, event.details) for event in session.scalars(query.order_by(AuditEvent.id))
        ]


def test_the_job_deletes_old_messages_at_twilio_then_here(
    twilio_app: Flask, double: RecordingsDouble
) -> None:
    old_ok = add_voicemail(twilio_app, 1, age=timedelta(days=31))
    old_gone = add_voicemail(twilio_app, 2, age=timedelta(days=40))
    old_broken = add_voicemail(twilio_app, 3, age=timedelta(days=35))
    young = add_voicemail(twilio_app, 4, age=timedelta(days=29))
    erased = add_voicemail(twilio_app, 5, age=timedelta(minutes=1), status="erased")
    double.answers = {sid_of(2): 404, sid_of(3): 500}
    with twilio_app.app_context():
        TASKS[jobqueue.VOICEMAIL_PRUNE]({})
    left = rows(twilio_app)
    assert set(left) == {old_broken, young}  # 500 kept for the next run; 404 is deleted
    assert {old_ok, old_gone, erased}.isdisjoint(left)
    deletes = [path for method, path, _ in double.requests if method == "DELETE"]
    assert sorted(deletes) == sorted(double.deleted_path(n) for n in (1, 2, 3, 5))
    expected = "Basic " + base64.b64encode(f"{TWILIO_SID}:{TWILIO_TOKEN}".encode()).decode()
    assert {auth for _, _, auth in double.requests} == {expected}
    [(actor, details)] = pruned(twilio_app)
    assert actor == "scheduler"
    assert (details["deleted"], details["kept"], details["days"]) == (3, 1, 30)
    # Twilio is back: the next run deletes what was kept.
    double.answers = {}
    double.requests.clear()
    with twilio_app.app_context():
        TASKS[jobqueue.VOICEMAIL_PRUNE]({})
    assert set(rows(twilio_app)) == {young}
    assert [path for _, path, _ in double.requests] == [double.deleted_path(3)]


def test_the_job_is_queued_daily(twilio_app: Flask) -> None:
    with twilio_app.app_context():
        jobs = jobqueue.get(twilio_app)
        start = 1_800_000_000.0
        assert jobqueue.VOICEMAIL_PRUNE in schedule.queue_due(jobs, start)
        assert jobqueue.VOICEMAIL_PRUNE not in schedule.queue_due(jobs, start + 3600)
        assert jobqueue.VOICEMAIL_PRUNE in schedule.queue_due(jobs, start + schedule.PRUNE_EVERY)


def test_in_local_development_there_is_nothing_at_twilio_to_delete(app: Flask) -> None:
    old = add_voicemail(app, 1, age=timedelta(days=31))
    young = add_voicemail(app, 2)
    with app.app_context():
        assert isinstance(
            retention.recordings_for(app.config["IVR_SETTINGS"]), retention.NothingAtTwilio
        )
        TASKS[jobqueue.VOICEMAIL_PRUNE]({})
    assert set(rows(app)) == {young} and old not in rows(app)


def test_the_cli_prunes_with_a_dry_run_first(twilio_app: Flask, double: RecordingsDouble) -> None:
    runner: FlaskCliRunner = twilio_app.test_cli_runner()
    add_voicemail(twilio_app, 1, age=timedelta(days=12))
    young = add_voicemail(twilio_app, 2, age=timedelta(days=2))
    dry = runner.invoke(args=["voicemail", "prune", "--days", "10", "--dry-run"])
    assert dry.exit_code == 0 and "would delete 1 message(s)" in dry.output
    assert double.requests == [] and len(rows(twilio_app)) == 2
    done = runner.invoke(args=["voicemail", "prune", "--days", "10"])
    assert done.exit_code == 0, done.output
    assert "deleted 1 message(s)" in done.output
    assert set(rows(twilio_app)) == {young}
    assert [actor for actor, _ in pruned(twilio_app)] == ["cli"]


def test_the_cli_says_what_twilio_kept_and_fails(
    twilio_app: Flask, double: RecordingsDouble
) -> None:
    add_voicemail(twilio_app, 1, age=timedelta(days=40))
    double.answers = {sid_of(1): 500}
    result = twilio_app.test_cli_runner().invoke(args=["voicemail", "prune"])
    assert result.exit_code == 1
    assert "1 kept" in result.output and "Traceback" not in result.output


def test_the_cli_lists_messages_masked(app: Flask) -> None:
    add_voicemail(app, 1)
    result = app.test_cli_runner().invoke(args=["voicemail", "list"])
    assert result.exit_code == 0
    assert "+1415•••0100" in result.output and "unhandled" in result.output
    bad = app.test_cli_runner().invoke(args=["voicemail", "prune", "--days", "0"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output


def test_an_agent_plays_the_audio_through_the_page(
    twilio_app: Flask, double: RecordingsDouble
) -> None:
    first = add_voicemail(twilio_app, 1)
    add_user(twilio_app, "alice")
    client = twilio_app.test_client()
    sign_in(client)
    response = client.get(f"/agent/voicemail/{first}/audio")
    assert response.status_code == 200
    assert response.mimetype == "audio/mpeg"
    assert response.get_data() == AUDIO
    [(method, path, auth)] = double.requests
    assert (method, path) == (
        "GET",
        f"/2010-04-01/Accounts/{TWILIO_SID}/Recordings/{sid_of(1)}.mp3",
    )
    assert auth.startswith("Basic ")
    signed_out = twilio_app.test_client().get(f"/agent/voicemail/{first}/audio")
    assert signed_out.status_code == 302 and len(double.requests) == 1


def test_the_cut_off_is_days_before_now_and_at_least_one_day() -> None:
    now = datetime.now(UTC)
    assert retention.cutoff_for(30, now) == now - timedelta(days=30)
    with pytest.raises(ValueError):
        retention.cutoff_for(0, now)


@pytest.mark.parametrize("twilio_status", [204, 404, 500])
def test_erasing_a_customer_deletes_their_recordings_at_twilio(
    twilio_app: Flask, double: RecordingsDouble, twilio_status: int
) -> None:
    from kit import JANE_PHONE, add_account

    account_id = add_account(twilio_app, "Jane Doe", JANE_PHONE, "10004321", "jane@example.com")
    by_account = add_voicemail(twilio_app, 1, account_id=account_id)
    by_number = add_voicemail(twilio_app, 2)  # from her number, about no account
    double.answers = {sid_of(1): twilio_status, sid_of(2): twilio_status}
    result = twilio_app.test_cli_runner().invoke(args=["customers", "erase", "10004321", "--yes"])
    assert result.exit_code == 0, result.output
    assert "2 voicemails" in result.output
    deletes = sorted(path for method, path, _ in double.requests if method == "DELETE")
    assert deletes == sorted(double.deleted_path(n) for n in (1, 2))
    left = rows(twilio_app)
    if twilio_status != 500:
        assert left == {}
        return
    # Twilio kept them: the rows stay, with nothing pointing at her, for the daily prune.
    assert "not deleted at Twilio yet" in result.output
    assert set(left) == {by_account, by_number}
    for row in left.values():
        assert (row.status, row.caller, row.caller_key, row.account_id) == (
            "erased",
            "",
            None,
            None,
        )
    double.answers = {}
    with twilio_app.app_context():
        TASKS[jobqueue.VOICEMAIL_PRUNE]({})
    assert rows(twilio_app) == {}
