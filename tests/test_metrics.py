"""`/metrics`: who may read it, that it parses, and that its counts move as calls, webhooks,
storage outages, Twilio errors and jobs happen; multiprocess mode across processes.

prometheus-client's registry is one per process and the suite builds many apps, so
every count is checked as a difference between two scrapes, never as an absolute.
"""

from __future__ import annotations

import os
import re
import runpy
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from kit import JANE_PHONE, add_account, call_form, new_sid, post
from prometheus_client.parser import text_string_to_metric_families
from twilio.base.exceptions import TwilioRestException

from ivr import scrape as endpoint
from ivr.delivery import DeliveryFailed, Outgoing
from ivr.delivery import registry as delivery
from ivr.delivery.twilio_errors import TwilioDeliveryFailed, calling_twilio
from ivr.errors import StorageUnavailable
from ivr.flow import timeline
from ivr.jobs import runner
from ivr.jobs.deliveries import send_later
from ivr.metrics import calls
from ivr.storage import kv

TOKEN = "metrics-token-" + "x" * 32
ROOT = Path(__file__).resolve().parent.parent

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def app(make_app: Any) -> Flask:
    """An app whose /metrics is on (with a bearer token): it counts."""
    built: Flask = make_app(IVR_METRICS_TOKEN=TOKEN)
    return built


def scrape(app: Flask) -> Samples:
    """Every sample of an authorised scrape, parsed by Prometheus' own text parser."""
    response = app.test_client().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/plain"  # Prometheus' text exposition format
    samples: Samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Our counters (and histogram counts) that changed between two scrapes, by how much
    (the scrape before `after` timed itself: left out)."""
    return {
        key: after[key] - before.get(key, 0.0)
        for key in after
        if key[0].startswith("ivr_")
        and (key[0].endswith("_total") or key[0].endswith("_count"))
        and after[key] != before.get(key, 0.0)
        and ("endpoint", "metrics.scrape") not in key[1]
    }


# --- access ---------------------------------------------------------------------------------


def test_metrics_is_off_without_a_token_or_an_allow_list(make_app: Any) -> None:
    app = make_app()
    assert app.test_client().get("/metrics").status_code == 404
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert app.test_client().get("/metrics", headers=bearer).status_code == 404


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", f"Bearer {TOKEN}x", f"Basic {TOKEN}", "Bearer "],
)
def test_a_missing_or_wrong_token_is_401_with_a_bearer_challenge(
    app: Flask, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = app.test_client().get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "ivr_" not in response.get_data(as_text=True)


def test_the_right_token_reads_metrics(app: Flask) -> None:
    samples = scrape(app)
    assert any(name.startswith("ivr_request_duration_seconds") for name, _ in samples)


@pytest.mark.parametrize(
    ("address", "status"),
    [("10.1.2.3", 200), ("192.168.1.5", 403), ("::ffff:10.0.0.9", 200), ("fd00::1", 403)],
)
def test_allow_list_by_address(make_app: Any, address: str, status: int) -> None:
    app = make_app(IVR_METRICS_ALLOW="10.0.0.0/8, 127.0.0.2")
    response = app.test_client().get("/metrics", environ_base={"REMOTE_ADDR": address})
    assert response.status_code == status
    if status == 403:
        assert "WWW-Authenticate" not in response.headers


def test_allow_list_with_a_token_asks_others_for_the_token(make_app: Any) -> None:
    app = make_app(IVR_METRICS_ALLOW="10.0.0.0/8", IVR_METRICS_TOKEN=TOKEN)
    client = app.test_client()
    outside = {"REMOTE_ADDR": "192.168.1.5"}
    assert client.get("/metrics", environ_base=outside).status_code == 401
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert client.get("/metrics", environ_base=outside, headers=bearer).status_code == 200
    inside = {"REMOTE_ADDR": "10.0.0.5"}
    assert client.get("/metrics", environ_base=inside).status_code == 200
    # A wrong token is refused even from an allowed address.
    wrong = {"Authorization": "Bearer not-it"}
    assert client.get("/metrics", environ_base=inside, headers=wrong).status_code == 401


def test_allow_list_sees_the_client_behind_the_trusted_proxy(make_app: Any) -> None:
    app = make_app(IVR_METRICS_ALLOW="10.0.0.0/8", IVR_PROXY_HOPS="1")
    client = app.test_client()
    proxy = {"REMOTE_ADDR": "192.168.1.1"}
    allowed = client.get("/metrics", environ_base=proxy, headers={"X-Forwarded-For": "10.9.9.9"})
    assert allowed.status_code == 200
    refused = client.get("/metrics", environ_base=proxy, headers={"X-Forwarded-For": "203.0.113.7"})
    assert refused.status_code == 403


# --- what a scrape holds --------------------------------------------------------------------


def test_a_webhook_is_timed_under_its_endpoint(app: Flask) -> None:
    before = scrape(app)
    response = post(app, "/voice/incoming", call_form(new_sid()))
    assert response.status_code == 200
    after = scrape(app)
    changed = moved(before, after)
    assert (
        changed[("ivr_request_duration_seconds_count", frozenset({("endpoint", "voice.incoming")}))]
        == 1
    )
    # Every latency bucket up to Twilio's 15 s budget is there.
    buckets = {
        dict(labels)["le"]
        for name, labels in after
        if name == "ivr_request_duration_seconds_bucket"
        and dict(labels)["endpoint"] == "voice.incoming"
    }
    assert {"0.1", "1.0", "15.0", "+Inf"} <= buckets


def test_unrouted_requests_share_one_label(app: Flask) -> None:
    before = scrape(app)
    assert app.test_client().get("/no/such/page/12345678").status_code == 404
    changed = moved(before, scrape(app))
    assert changed == {
        ("ivr_request_duration_seconds_count", frozenset({("endpoint", "unmatched")})): 1
    }


def test_the_live_flow_version_is_an_info_metric(app: Flask) -> None:
    samples = scrape(app)
    live = [dict(labels) for name, labels in samples if name == "ivr_flow_live_info"]
    runtime = app.extensions["ivr.runtime"]
    with app.app_context():
        flow = runtime.live().flow
    assert live == [{"flow": flow.name, "version": str(flow.version)}]
    assert value(samples, "ivr_flow_live_info", flow=flow.name, version=str(flow.version)) == 1
    assert value(samples, "ivr_jobs_failed_registry") == 0


def test_an_app_with_metrics_off_counts_nothing(app: Flask, make_app: Any) -> None:
    """The console's sandbox is such an app: its rehearsed calls are not calls."""
    quiet = make_app()
    before = scrape(app)
    with quiet.app_context():
        calls.observe_steps([timeline.step(timeline.START, 0, flow="default", version="1")])
        calls.observe_call_ended("ended", "completed")
    assert post(quiet, "/voice/incoming", call_form(new_sid())).status_code == 200
    assert moved(before, scrape(app)) == {}


# --- counting from the timeline -------------------------------------------------------------


def test_observe_steps_counts_each_kind_of_step(app: Flask) -> None:
    flow = app.extensions["ivr.runtime"].working.flow
    digits_node = next(
        node_id
        for node_id, node in flow.nodes.items()
        if type(node).__name__ == "CheckAccountDigitsNode"
    )
    steps = [
        timeline.step(timeline.START, 0, flow="default", version="3", language="en-US"),
        timeline.step(timeline.INPUT, 10, node=digits_node, input="keys", keys=4, result="invalid"),
        timeline.step(
            timeline.INPUT, 11, node=digits_node, input="keys", keys=4, result="accepted"
        ),
        timeline.step(timeline.INPUT, 12, node="main_menu", input="keys", keys=1, result="invalid"),
        timeline.step(timeline.VERIFIED, 20, method="account_digits"),
        timeline.step(timeline.CODE_SENT, 30, channel="sms", result="sent"),
        timeline.step(timeline.CODE_SENT, 31, channel="email", result="failed"),
        timeline.step(timeline.CODE_CHECKED, 40, result="wrong"),
        timeline.step(timeline.CODE_CHECKED, 41, result="ok"),
        timeline.step(timeline.VERIFIED, 42, method="code_sms"),
        timeline.step(timeline.CALLBACK, 50, result="calling"),
        timeline.step(timeline.CALLBACK_STATUS, 60, status="busy"),
        timeline.step(timeline.CALLBACK_CODE, 70, result="ok"),
    ]
    before = scrape(app)
    with app.app_context():
        calls.observe_steps(steps, flow.nodes)
        calls.observe_call_ended("transferred", "completed")
        calls.observe_call_ended("abandoned", "no-answer")
        calls.observe_call_ended("made-up", "+14155550100")  # never a label of its own
    changed = moved(before, scrape(app))

    def key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
        return (name, frozenset(labels.items()))

    assert changed == {
        key("ivr_calls_started_total"): 1,
        key("ivr_verifications_total", method="account_digits", outcome="wrong"): 1,
        key("ivr_verifications_total", method="account_digits", outcome="passed"): 1,
        key("ivr_verifications_total", method="code", outcome="wrong"): 1,
        key("ivr_verifications_total", method="code_sms", outcome="passed"): 1,
        key("ivr_codes_sent_total", channel="sms", result="sent"): 1,
        key("ivr_codes_sent_total", channel="email", result="failed"): 1,
        key("ivr_callbacks_total", stage="start", outcome="calling"): 1,
        key("ivr_callbacks_total", stage="status", outcome="busy"): 1,
        key("ivr_callbacks_total", stage="code", outcome="ok"): 1,
        key("ivr_calls_ended_total", outcome="transferred", status="completed"): 1,
        key("ivr_calls_ended_total", outcome="abandoned", status="no-answer"): 1,
        key("ivr_calls_ended_total", outcome="other", status="other"): 1,
    }


def test_failed_digits_are_not_counted_without_the_flow(app: Flask) -> None:
    before = scrape(app)
    with app.app_context():
        calls.observe_steps(
            [
                timeline.step(
                    timeline.INPUT, 1, node="x", input="keys", keys=4, result="too_many_tries"
                )
            ]
        )
    assert moved(before, scrape(app)) == {}


def test_a_label_value_is_never_a_number_or_a_code(app: Flask) -> None:
    before = scrape(app)
    with app.app_context():
        calls.observe_steps(
            [
                {"event": timeline.VERIFIED, "at": 0, "method": "4321"},
                {
                    "event": timeline.CODE_SENT,
                    "at": 0,
                    "channel": "+14155550100",
                    "result": "123456",
                },
                {"event": timeline.CALLBACK_CODE, "at": 0, "result": "code 654321"},
            ]
        )
    changed = moved(before, scrape(app))
    assert changed == {
        ("ivr_verifications_total", frozenset({("method", "other"), ("outcome", "passed")})): 1,
        ("ivr_codes_sent_total", frozenset({("channel", "other"), ("result", "other")})): 1,
        ("ivr_callbacks_total", frozenset({("stage", "code"), ("outcome", "other")})): 1,
    }


# --- storage, Twilio and jobs ---------------------------------------------------------------


def test_a_redis_outage_is_counted(app: Flask) -> None:
    before = scrape(app)
    with app.app_context(), pytest.raises(StorageUnavailable), kv.unavailable_as_storage_error():
        raise redis.ConnectionError("down")
    changed = moved(before, scrape(app))
    assert changed == {("ivr_storage_errors_total", frozenset({("store", "redis")})): 1}


def test_twilio_errors_are_counted_by_code(app: Flask) -> None:
    before = scrape(app)
    with app.app_context():
        with pytest.raises(DeliveryFailed), calling_twilio("sms"):
            raise TwilioRestException(400, "https://api.twilio.com/x", "not valid", code=21211)
        with pytest.raises(DeliveryFailed), calling_twilio("sms"):
            raise TwilioRestException(503, "https://api.twilio.com/x", "unavailable", code=503)
        with pytest.raises(DeliveryFailed), calling_twilio("call"):
            raise ValueError("an HTML page")
    changed = moved(before, scrape(app))
    assert changed == {
        ("ivr_twilio_errors_total", frozenset({("code", "21211")})): 1,
        ("ivr_twilio_errors_total", frozenset({("code", "http_503")})): 1,
        ("ivr_twilio_errors_total", frozenset({("code", "unreadable")})): 1,
    }


class RefusingSms:
    """An SMS channel Twilio refuses for good (a job that fails with no retry)."""

    def send(self, message: Outgoing) -> str:
        raise TwilioDeliveryFailed("sms", "the number is not valid", code=21211, status=400)


def queue_notice(app: Flask) -> bool:
    with app.test_request_context():
        message = Outgoing("sms", JANE_PHONE, "Your number changed.", call_sid="CA1", purpose="x")
        return send_later(message, key="notice:metrics:sms", account_id=0)


def test_jobs_queued_and_failed_are_counted(make_app: Any) -> None:
    app = make_app(IVR_JOBS="worker", IVR_METRICS_TOKEN=TOKEN)
    app.extensions[delivery.BACKGROUND_KEY] = {"sms": RefusingSms()}
    before = scrape(app)
    assert queue_notice(app) is True
    assert queue_notice(app) is False  # the same key: not queued again, not counted
    runner.run_pending(app, retries=True)
    after = scrape(app)
    changed = moved(before, after)
    assert changed == {
        ("ivr_jobs_queued_total", frozenset({("job", "notice")})): 1,
        ("ivr_jobs_failed_total", frozenset({("job", "notice"), ("final", "yes")})): 1,
    }
    assert value(after, "ivr_jobs_failed_registry") == 1


# --- multiprocess mode ----------------------------------------------------------------------

WORKER = textwrap.dedent(
    """
    from ivr.metrics import registry
    from ivr.metrics.calls import observe_call_ended
    for _ in range({n}):
        registry.count_storage_error("redis")
    observe_call_ended("ended", "completed")
    registry.REQUEST_SECONDS.labels(endpoint="voice.input").observe(0.2)
    """
)


def test_multiprocess_mode_adds_up_every_process(
    app: Flask, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes (as two gunicorn workers) write to the folder; a scrape adds them."""
    folder = tmp_path / "prometheus"
    environ = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder), "PYTHONPATH": str(ROOT)}
    for n in (2, 3):
        subprocess.run(
            [sys.executable, "-c", WORKER.format(n=n)], env=environ, check=True, timeout=60
        )
    assert len(list(folder.glob("*.db"))) >= 2  # made by the processes, one set each
    assert stat.S_IMODE(folder.lstat().st_mode) == 0o700  # made private when missing

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
    samples = scrape(app)
    assert value(samples, "ivr_storage_errors_total", store="redis") == 5
    assert value(samples, "ivr_calls_ended_total", outcome="ended", status="completed") == 2
    assert value(samples, "ivr_request_duration_seconds_count", endpoint="voice.input") == 2
    assert (
        value(samples, "ivr_request_duration_seconds_bucket", endpoint="voice.input", le="0.25")
        == 2
    )
    # Read at scrape time, beside the files: the live flow.
    assert any(name == "ivr_flow_live_info" for name, _ in samples)
    # This process's own registry is not what a multiprocess scrape reads.
    assert value(samples, "ivr_request_duration_seconds_count", endpoint="metrics.scrape") == 0


GUNICORN_CONF = ROOT / "gunicorn.conf.py"
CONFIG_SCRIPT = textwrap.dedent(
    f"""
    import os, runpy, sys
    os.umask(0o022)  # a usual umask: the settings file must not rely on a stricter one
    config = runpy.run_path({str(GUNICORN_CONF)!r})
    class Log:
        def info(self, *args): pass
    class Server:
        log = Log()
    config["on_starting"](Server())
    if "--fork" in sys.argv:  # as a worker would: its hooks, then a counted value
        config["post_fork"](Server(), None)
        from ivr.metrics import registry
        registry.count_storage_error("redis")
    print(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    """
)


def run_config(folder: Path | None, *args: str) -> subprocess.CompletedProcess[str]:
    """Read gunicorn.conf.py in a process of its own (as gunicorn's master does) with
    PROMETHEUS_MULTIPROC_DIR set to `folder` (unset for None), and start it."""
    environ = {key: val for key, val in os.environ.items() if key != "PROMETHEUS_MULTIPROC_DIR"}
    environ["PYTHONPATH"] = str(ROOT)
    if folder is not None:
        environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    return subprocess.run(
        [sys.executable, "-c", CONFIG_SCRIPT, *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_gunicorn_config_sets_and_empties_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "prom"
    folder.mkdir(mode=0o755)
    (folder / "counter_999.db").write_bytes(b"stale")
    (folder / "keep.txt").write_text("not ours")
    done = run_config(folder)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(folder)
    assert sorted(path.name for path in folder.iterdir()) == ["keep.txt"]


def test_gunicorn_config_makes_a_private_folder_of_its_own() -> None:
    made = [Path(run_config(None).stdout.strip()) for _ in range(2)]
    try:
        for folder in made:
            assert folder.is_dir() and folder.name.startswith("ivr-prometheus-")
            assert stat.S_IMODE(folder.lstat().st_mode) == 0o700
            assert folder.lstat().st_uid == os.geteuid()
        assert made[0] != made[1]
        # Not named after the master's pid: another user could not guess it.
        assert not re.fullmatch(r"ivr-prometheus-\d+", made[0].name)
    finally:
        for folder in made:
            folder.rmdir()


def test_gunicorn_config_makes_a_missing_folder_private(tmp_path: Path) -> None:
    folder = tmp_path / "missing" / "prom"
    done = run_config(folder)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(folder.lstat().st_mode) == 0o700


def unsafe_folder(tmp_path: Path, kind: str) -> tuple[Path, Path]:
    """A metrics folder another local user could have set up, and a real folder of
    ours holding a .db file (the symlink's target)."""
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "precious.db").write_bytes(b"not metrics")
    folder = tmp_path / "prom"
    if kind == "symlink":
        folder.symlink_to(target, target_is_directory=True)
    elif kind == "file":
        folder.write_text("")
    else:
        folder.mkdir()
        folder.chmod({"world-writable": 0o777, "group-writable": 0o770, "sticky": 0o1777}[kind])
    return folder, target


@pytest.mark.parametrize("kind", ["symlink", "file", "world-writable", "group-writable", "sticky"])
def test_gunicorn_config_refuses_an_unsafe_folder(tmp_path: Path, kind: str) -> None:
    folder, target = unsafe_folder(tmp_path, kind)
    done = run_config(folder)
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()  # one line, no traceback
    assert line.startswith("ivr: refusing to start: PROMETHEUS_MULTIPROC_DIR")
    assert str(folder) in line
    # Nothing was deleted where the folder pointed.
    assert (target / "precious.db").exists()


LOOPBACK = ("--bind", "127.0.0.1:0", "--workers", "1")


def test_gunicorn_refuses_to_start_on_a_symlinked_folder(tmp_path: Path) -> None:
    """gunicorn itself, reading the settings file: it stops before any worker starts."""
    folder, target = unsafe_folder(tmp_path, "symlink")
    environ = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        # (Were it to start, it would listen on a free loopback port only.)
        [sys.executable, "-m", "gunicorn", "--config", str(GUNICORN_CONF), *LOOPBACK, "wsgi:app"],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"ivr: refusing to start: PROMETHEUS_MULTIPROC_DIR {str(folder)!r} is a symbolic link"
    ]
    assert (target / "precious.db").exists()


def test_gunicorn_config_refuses_a_folder_of_another_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "prom"
    folder.mkdir(mode=0o700)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
    owner = folder.lstat().st_uid
    monkeypatch.setattr(os, "geteuid", lambda: owner + 1)  # as if it were someone else's
    with pytest.raises(SystemExit, match=r"refusing to start: .* is owned by uid"):
        runpy.run_path(str(GUNICORN_CONF))


def test_worker_files_are_not_readable_by_others(tmp_path: Path) -> None:
    folder = tmp_path / "prom"
    folder.mkdir(mode=0o755)  # a folder others may enter: the files must still be private
    done = run_config(folder, "--fork")
    assert done.returncode == 0, done.stderr
    files = list(folder.glob("*.db"))
    assert files
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, (path, oct(path.stat().st_mode))


@pytest.mark.parametrize("kind", ["symlink", "world-writable"])
def test_an_ivr_command_refuses_an_unsafe_folder_too(tmp_path: Path, kind: str) -> None:
    folder, target = unsafe_folder(tmp_path, kind)
    environ = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", WORKER.format(n=1)],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "RuntimeError: PROMETHEUS_MULTIPROC_DIR" in done.stderr
    assert sorted(path.name for path in target.iterdir()) == ["precious.db"]


def test_scrape_registry_without_a_folder_forwards_this_process(app: Flask) -> None:
    with app.test_request_context("/metrics"):
        registry = endpoint.scrape_registry(None)
        names = {family.name for family in registry.collect()}
    assert {"ivr_calls_started", "ivr_request_duration_seconds", "ivr_flow_live"} <= names


# --- a simulated call -----------------------------------------------------------------------


def test_a_simulated_call_moves_the_counts_and_no_label_holds_a_secret(
    app: Flask, phone: Any
) -> None:
    from caller import sent_codes

    add_account(app, "Jane Doe", JANE_PHONE, "10004321")
    before = scrape(app)
    result = phone.call(JANE_PHONE, ["1", "4321", "@code", "2"])
    assert result.ended_by == "ivr"
    after = scrape(app)
    changed = moved(before, after)

    def key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
        return (name, frozenset(labels.items()))

    assert changed[key("ivr_calls_started_total")] == 1
    assert changed[key("ivr_verifications_total", method="account_digits", outcome="passed")] == 1
    assert changed[key("ivr_verifications_total", method="code_sms", outcome="passed")] == 1
    assert changed[key("ivr_codes_sent_total", channel="sms", result="sent")] == 1
    assert changed[key("ivr_request_duration_seconds_count", endpoint="voice.incoming")] == 1
    assert changed[key("ivr_request_duration_seconds_count", endpoint="voice.input")] >= 4
    ended = {k: v for k, v in changed.items() if k[0] == "ivr_calls_ended_total"}
    assert ended == {key("ivr_calls_ended_total", outcome="transferred", status="completed"): 1}

    secrets = {JANE_PHONE, JANE_PHONE.lstrip("+"), "4321", "10004321", *sent_codes(app)}
    for _name, labels in after:
        for label, label_value in labels:
            assert label_value not in secrets
            if label != "version":  # the flow's content hash: hex, ours, may run digits
                assert not re.search(r"\d{6,}", label_value), (label, label_value)


def test_a_simulated_call_with_wrong_digits_counts_failed_verifications(
    app: Flask, phone: Any
) -> None:
    add_account(app, "Jane Doe", JANE_PHONE, "10004321")
    before = scrape(app)
    phone.call(JANE_PHONE, ["1", "0000", "1111", "2222"])
    changed = moved(before, scrape(app))
    verifications = {
        (dict(labels)["method"], dict(labels)["outcome"]): count
        for (name, labels), count in changed.items()
        if name == "ivr_verifications_total"
    }
    assert verifications == {
        ("account_digits", "wrong"): 2,
        ("account_digits", "too_many_tries"): 1,
    }
    assert changed[("ivr_calls_started_total", frozenset())] == 1
    assert not any(name == "ivr_codes_sent_total" for name, _ in changed)
