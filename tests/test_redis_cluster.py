"""Call state and limits on a Redis Cluster (issue 12, item 3).

Keys used together share a hash tag, so they land in one slot and their transactions
(the per-call lock, code checks) run on one node; a whole verified call through signed
webhooks works on a real 3-master cluster, and two copies of a step still act once.
The cluster is the run's own when IVR_TEST_REDIS_URL names one (`.ci/run`'s third leg),
else one started here with tests/cluster/local.py (CI fails, never skips, without
redis-server). The job queue, which cannot use a cluster, gets a single Redis.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
from caller import Phone, calls_placed, sent_codes
from cluster.local import LocalCluster, binaries
from conftest import TEST_REDIS_IS_CLUSTER, TEST_REDIS_URL, _run
from flask import Flask
from kit import (
    AGENT,
    DIGITS_AND_SMS,
    JANE_PHONE,
    add_account,
    call_ended_rows,
    call_form,
    gather_step,
    new_sid,
    post,
    says,
    text,
    twiml,
    verified_whisper,
)
from outage.proxy import TcpProxy
from outage.redis_server import RedisServer, free_port, redis_server_binary
from redis.cluster import key_slot
from test_step_once import (
    add_jane,
    assert_one_answer,
    at_once,
    press,
    slow_delivery,  # noqa: F401  (a fixture: usefixtures below)
)

from ivr.agent import transfers
from ivr.config import Settings
from ivr.errors import ConfigError, StorageUnavailable
from ivr.jobs import queue
from ivr.staff import keys as staff_keys
from ivr.storage import keys, kv
from ivr.verification import digits

SID = "CA" + "1" * 32


def _need(what: str) -> None:
    message = f"{what} is not installed; the Redis Cluster tests need it"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The run's cluster, or a local one started for these tests."""
    if TEST_REDIS_IS_CLUSTER:
        yield TEST_REDIS_URL
        return
    if binaries() is None:
        _need("redis-server or redis-cli")
    cluster = LocalCluster(tmp_path_factory.mktemp("cluster"))
    cluster.start()
    yield cluster.url
    cluster.stop()


@pytest.fixture(scope="session")
def jobs_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A single Redis for the job queue: the run's claimed one, or a private server."""
    if "jobs_redis_url" in _run:
        yield _run["jobs_redis_url"]
        return
    binary = redis_server_binary()
    if binary is None:
        _need("redis-server")
    server = RedisServer(binary, tmp_path_factory.mktemp("jobs-redis"))
    server.start()
    yield server.url
    server.stop()


@pytest.fixture
def cluster_app(make_app: Any, cluster_url: str, jobs_redis_url: str) -> Flask:
    app: Flask = make_app(REDIS_URL=cluster_url, IVR_JOBS_REDIS_URL=jobs_redis_url)
    assert isinstance(app.extensions["ivr.redis"], kv.ClusterClient)
    return app


def _all_keys(app: Flask) -> set[bytes]:
    return set(app.extensions["ivr.redis"].scan_iter(match="*", count=1000))


# --- hash tags: the keys used together share a slot ----------------------------------------------


def _slots(names: list[str]) -> set[int]:
    return {key_slot(name.encode()) for name in names}


def test_the_keys_of_one_call_share_a_slot() -> None:
    names = [
        keys.call_state(SID),
        keys.call_lock(SID),
        keys.call_answer(SID),
        transfers.entry_key(SID),
    ]
    assert len(_slots(names)) == 1
    assert _slots(names) != _slots([keys.call_state("CA" + "2" * 32)])  # the tag holds the sid


def test_the_keys_of_one_account_share_a_slot() -> None:
    names = [keys.account_failures(7), keys.number_change(7), keys.lockout(7)]
    for purpose in ("verify", "confirm_number"):
        names += [
            keys.code(7, purpose),
            keys.code_sends(7, purpose),
            keys.code_sends_today(7, purpose, "2024-05-01"),
        ]
    names.append(digits.account_key(7))
    assert len(_slots(names)) == 1
    assert _slots(names) != _slots([keys.code(8, "verify")])


def test_the_keys_of_one_staff_sign_in_share_a_slot() -> None:
    # One attempt is counted in the username's, device's and client's windows in one MULTI.
    names = [
        staff_keys.login_failures("user", "alice"),
        staff_keys.login_failures("device", "d1"),
        staff_keys.login_failures("client", "203.0.113.0"),
    ]
    assert len(_slots(names)) == 1


def test_every_key_starts_with_the_run_prefix() -> None:
    names = [
        keys.call_state(SID),
        keys.live_flow("support"),
        keys.callback("cb1"),
        staff_keys.session("h"),
        queue.queued_key("k"),
        queue.done_key("k"),
        digits.account_key(7),
        transfers.target_key("queue:support"),
    ]
    assert keys.PREFIX.startswith("ivr-test-")  # conftest gave this run its own
    assert [name for name in names if not name.startswith(keys.PREFIX + ":")] == []


# --- configuration ------------------------------------------------------------------------


CLUSTER = "redis+cluster://127.0.0.1:7000,127.0.0.1:7001"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"REDIS_URL": CLUSTER}, "REDIS_URL names a Redis Cluster, which the job queue"),
        (
            {"REDIS_URL": "redis://r:6379/0", "IVR_JOBS_REDIS_URL": CLUSTER},
            "IVR_JOBS_REDIS_URL must name a single Redis",
        ),
        ({"IVR_REDIS_PREFIX": "ivr{x}"}, "IVR_REDIS_PREFIX may hold only"),
    ],
)
def test_settings_refuse_what_a_cluster_cannot_do(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({"IVR_ENV": "development", **environ})


def test_a_cluster_with_its_job_queue_elsewhere_is_accepted() -> None:
    environ = {"REDIS_URL": CLUSTER, "IVR_JOBS_REDIS_URL": "redis://jobs:6379/0"}
    settings = Settings.from_env({"IVR_ENV": "development", **environ})
    assert (settings.redis_url, settings.jobs_redis_url) == (CLUSTER, "redis://jobs:6379/0")


def test_a_cluster_url_names_its_startup_nodes_and_credentials() -> None:
    nodes, options = kv.cluster_nodes("rediss+cluster://app:s%40cret@a.example:7000, b:7001")
    assert [(node.host, node.port) for node in nodes] == [("a.example", 7000), ("b", 7001)]
    assert options == {"ssl": True, "username": "app", "password": "s@cret"}


@pytest.mark.parametrize(
    "url", ["redis+cluster://a:7000/3", "redis+cluster://a:7000?db=1", "redis+cluster://a"]
)
def test_a_cluster_url_with_a_database_or_without_a_port_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match=r"database 0|host:port"):
        kv.cluster_nodes(url)


# --- a real cluster ---------------------------------------------------------------------------


def test_a_verified_call_runs_on_the_cluster(cluster_app: Flask) -> None:
    """Digits, the texted code, the menu, the agent: every webhook on the cluster."""
    account_id = add_account(cluster_app, "Jane Doe", JANE_PHONE, "10004321")
    before = _all_keys(cluster_app)

    result = Phone(cluster_app).call(JANE_PHONE, ["1", "4321", "@code", "2"])

    assert result.heard("caller")[-2:] == [
        text(cluster_app, "main_menu", first_name="Jane"),
        text(cluster_app, "connecting"),
    ]
    assert result.transfers == [f"dial number {AGENT}"]
    assert result.heard("agent")[0] == verified_whisper(
        cluster_app, "Jane Doe", "4321", DIGITS_AND_SMS, "caller_request"
    )
    (row,) = call_ended_rows(cluster_app, result.call_sid)
    assert row.details["verification"] == "code"
    written = {
        name.decode()
        for name in _all_keys(cluster_app) - before
        # A cluster has only database 0: another test worker's keys (its own run prefix)
        # may appear meanwhile; anything else outside this run's prefix is a leak.
        if not (name.startswith(b"ivr-test-") and not name.startswith(keys.PREFIX.encode()))
    }
    assert written, "the call left nothing on the cluster"
    assert [name for name in written if not name.startswith(keys.PREFIX + ":")] == []
    account_tag = f"{{acct:{account_id}}}"
    account_keys = [name for name in written if account_tag in name]
    assert account_keys and len(_slots(account_keys)) == 1


@pytest.mark.usefixtures("slow_delivery")
def test_two_copies_of_a_step_on_the_cluster_send_one_code(cluster_app: Flask) -> None:
    add_jane(cluster_app)
    sid = new_sid()
    first = gather_step(twiml(post(cluster_app, "/voice/incoming", call_form(sid))))
    step = press(cluster_app, sid, first, "1")

    answers = at_once(cluster_app, f"/voice/input?s={step}", call_form(sid, Digits="4321"))

    body = assert_one_answer(answers)
    assert len(sent_codes(cluster_app)) == 1
    assert text(cluster_app, "code_sent_sms") in body


@pytest.mark.usefixtures("slow_delivery")
def test_two_copies_of_the_confirm_step_on_the_cluster_place_one_callback(
    cluster_app: Flask,
) -> None:
    """The call-back record is claimed with WATCH/MULTI on its own slot."""
    add_jane(cluster_app)
    sid = new_sid()
    step = gather_step(twiml(post(cluster_app, "/voice/incoming", call_form(sid))))
    for digits_pressed in ("1", "4321"):
        step = press(cluster_app, sid, step, digits_pressed)
    step = press(cluster_app, sid, step, sent_codes(cluster_app)[-1])
    step = press(cluster_app, sid, step, "1")  # menu: change the number
    step = press(cluster_app, sid, step, "4155550199#")

    answers = at_once(cluster_app, f"/voice/input?s={step}", call_form(sid, Digits="1"))

    assert_one_answer(answers)
    (placed,) = calls_placed(cluster_app)
    assert placed.to == "+14155550199"


def test_the_job_queue_is_on_its_own_single_redis(cluster_app: Flask, jobs_redis_url: str) -> None:
    jobs = queue.get(cluster_app)
    assert jobs.connection is not cluster_app.extensions["ivr.redis"]
    port = jobs.connection.connection_pool.connection_kwargs["port"]
    assert f":{port}/" in jobs_redis_url


def test_a_cluster_no_node_of_which_answers_is_a_storage_outage() -> None:
    """The client reads the slot map when built: no answer is StorageUnavailable, not a
    hang or a retry loop."""
    port = free_port()  # nothing listens there
    with pytest.raises(StorageUnavailable, match="redis cluster unavailable"):
        kv.connect(f"redis+cluster://127.0.0.1:{port}", 0.5)


def test_an_unusable_cluster_url_stops_the_boot(make_app: Any) -> None:
    url = "redis+cluster://127.0.0.1:7000/2"
    with pytest.raises(ConfigError, match="REDIS_URL is not usable: a cluster URL has only"):
        make_app(REDIS_URL=url, IVR_JOBS_REDIS_URL="redis://127.0.0.1:6379/0")


def test_the_service_starts_while_the_cluster_is_down_and_serves_once_it_is_back(
    make_app: Any, cluster_url: str, jobs_redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A web process (re)started during a cluster outage boots, answers calls with the
    apology and a transfer meanwhile, and reaches the cluster on first use once it is
    back, with no restart."""
    monkeypatch.setattr(kv, "RECONNECT_EVERY", 0.2)
    make_app(REDIS_URL=cluster_url, IVR_JOBS_REDIS_URL=jobs_redis_url)  # empties storage
    first_node = kv.cluster_nodes(cluster_url)[0][0]
    proxy = TcpProxy((first_node.host, int(first_node.port)))  # the one startup node
    try:
        proxy.refuse()
        app: Flask = make_app(
            REDIS_URL=f"redis+cluster://127.0.0.1:{proxy.port}",
            IVR_JOBS_REDIS_URL=jobs_redis_url,
            IVR_STORAGE_TIMEOUT="0.5",
        )
        add_jane(app)
        assert app.extensions["ivr.redis"] is None  # not reached yet

        doc = twiml(post(app, "/voice/incoming", call_form(new_sid())))
        assert text(app, "error_apology") in says(doc)
        assert doc.find("Dial") is not None  # to people, not a dead line

        proxy.passthrough()
        time.sleep(0.3)  # past RECONNECT_EVERY
        result = Phone(app).call(JANE_PHONE, ["1", "4321", "@code", "2"])
        assert result.transfers == [f"dial number {AGENT}"]
        assert isinstance(app.extensions["ivr.redis"], kv.ClusterClient)
    finally:
        proxy.close()


def test_a_master_that_stops_answering_mid_call_fails_that_call_closed(
    make_app: Any, jobs_redis_url: str, tmp_path: Any
) -> None:
    """The master holding a call's keys hangs between two webhooks (a private cluster:
    the run's own is shared): the next webhook answers the apology and a transfer
    within the storage timeout, not Twilio's 15 s; once the master answers again, a new
    call goes through verified on the same app."""
    if binaries() is None:
        _need("redis-server or redis-cli")
    cluster = LocalCluster(tmp_path / "private-cluster")
    cluster.start()
    try:
        app: Flask = make_app(
            REDIS_URL=cluster.url, IVR_JOBS_REDIS_URL=jobs_redis_url, IVR_STORAGE_TIMEOUT="0.5"
        )
        add_jane(app)
        call_sid = new_sid()
        doc = twiml(post(app, "/voice/incoming", call_form(call_sid)))
        step = press(app, call_sid, gather_step(doc), "1")  # English: asked for digits

        with app.app_context():
            client = kv.client()
            slot = key_slot(keys.call_state(call_sid).encode())
            owner = client.nodes_manager.get_node_from_slot(slot)
        hung = cluster.processes[cluster.ports.index(int(owner.port))]
        os.kill(hung.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            doc = twiml(post(app, f"/voice/input?s={step}", call_form(call_sid, Digits="4321")))
            took = time.monotonic() - started
        finally:
            os.kill(hung.pid, signal.SIGCONT)

        assert says(doc)[:1] == [text(app, "error_apology")]
        assert doc.findtext("Dial/Number") == AGENT
        # One storage timeout (0.5 s) for the lock and read; a plain cluster pipeline
        # would send each command again after it (2 s here).
        assert took < 1.8, f"the webhook waited {took:.1f} s on a hung master"

        _wait_cluster_ok(cluster)
        result = Phone(app).call(JANE_PHONE, ["1", "4321", "@code", "2"])
        assert result.transfers == [f"dial number {AGENT}"]
    finally:
        cluster.stop()


def _wait_cluster_ok(cluster: LocalCluster) -> None:
    """Until every node says cluster_state:ok again (a master back from a pause)."""
    import redis

    ends = time.monotonic() + 15
    while time.monotonic() < ends:
        states = []
        for port in cluster.ports:
            probe = redis.Redis(port=port, socket_timeout=1)
            try:
                states.append(probe.cluster("info").get("cluster_state"))
            except redis.exceptions.RedisError:
                states.append(None)
            finally:
                probe.close()
        if states == ["ok"] * len(cluster.ports):
            return
        time.sleep(0.1)
    raise AssertionError("the cluster did not come back to cluster_state:ok")


def test_one_reconnect_attempt_at_a_time_the_others_fail_at_once() -> None:
    """While one request tries to reach a cluster that was down at start (a timeout per
    startup node), the others answer the apology at once instead of queueing behind it;
    after a failed attempt the next waits RECONNECT_EVERY."""
    pending = kv._Pending(f"redis+cluster://127.0.0.1:{free_port()}", 0.3)
    fake: Any = type("App", (), {"extensions": {"ivr.redis": None}})()

    assert pending.lock.acquire(blocking=False)  # another request is trying
    started = time.monotonic()
    with pytest.raises(StorageUnavailable, match="reconnecting"):
        pending.connect(fake)
    assert time.monotonic() - started < 0.1
    pending.lock.release()

    with pytest.raises(StorageUnavailable, match="redis cluster unavailable"):
        pending.connect(fake)  # tries, and fails: nothing listens
    started = time.monotonic()
    with pytest.raises(StorageUnavailable, match="reconnecting"):
        pending.connect(fake)  # within RECONNECT_EVERY of the failure: no new attempt
    assert time.monotonic() - started < 0.1
