"""Redis writes that wait for the call's save (ivr.storage.deferred, issue 12).

A digit reservation's give-back and a transfer's listing are queued during a webhook
and sent with the call's save: in its MULTI/EXEC on a single Redis (one round trip
fewer each), in a pipeline right after it on a cluster. What no save took is sent when
the request ends; a write lost to an outage after the save does not fail the call.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

import pytest
import redis
from caller import Phone
from conftest import TEST_REDIS_IS_CLUSTER
from flask import Flask
from kit import JANE_PHONE, add_account
from redis.cluster import RedisCluster
from redis.exceptions import ResponseError

from ivr.agent import transfers
from ivr.calls import store
from ivr.errors import StorageUnavailable
from ivr.flow.state import CallState
from ivr.storage import db, deferred, keys, kv, roundtrips
from ivr.verification.digits import DigitFailures, account_key


def _key() -> str:
    return f"{keys.PREFIX}:test:deferred:{{{secrets.token_hex(4)}}}"


def _setter(key: str) -> deferred.Write:
    def write(pipe: Any) -> None:
        pipe.set(key, "1", ex=60)

    return write


def _state(call_sid: str) -> CallState:
    return CallState(call_sid, "support", "v1", "en-US", "main_menu", 0.0)


def test_queued_writes_go_with_the_save(app: Flask) -> None:
    """Two writes queued during a step land with its save: one round trip for all on a
    single Redis, the save then one pipeline on a cluster."""
    sid = "CA" + secrets.token_hex(16)
    first, second = _key(), _key()
    with app.test_request_context():
        cluster = isinstance(kv.client(), RedisCluster)
        with store.step(sid, "request-1") as held:
            deferred.later(_setter(first))
            deferred.later(_setter(second))
            assert kv.client().get(first) is None  # queued, not sent
            with roundtrips.counting(app) as counts:
                held.save(_state(sid), None)
        assert kv.client().get(first) == b"1" and kv.client().get(second) == b"1"
        assert store.load(sid) is not None
    assert counts.redis == (2 if cluster else 1)
    assert cluster == TEST_REDIS_IS_CLUSTER


def test_writes_no_save_took_are_sent_when_the_request_ends(app: Flask) -> None:
    key = _key()
    with app.test_request_context():
        deferred.later(_setter(key))
        assert kv.client().get(key) is None
    with app.app_context():
        assert kv.client().get(key) == b"1"


def test_outside_a_request_a_write_is_sent_at_once(app: Flask) -> None:
    key = _key()
    with app.app_context():
        deferred.later(_setter(key))
        assert kv.client().get(key) == b"1"


def test_a_queued_write_the_server_refuses_does_not_undo_the_save(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    """A queued write refused inside the save's transaction (here: INCR on text) is
    logged; the state is saved and the step goes on."""
    sid = "CA" + secrets.token_hex(16)
    text = _key()
    with app.test_request_context(), caplog.at_level(logging.ERROR, logger=deferred.__name__):
        kv.client().set(text, "not a number", ex=60)
        with store.step(sid, "request-1") as held:
            deferred.later(lambda pipe: pipe.incr(text))
            held.save(_state(sid), None)
        assert store.load(sid) is not None
    assert "deferred Redis writes" in caplog.text


@pytest.mark.parametrize(
    "failure",
    [StorageUnavailable("redis unavailable"), ResponseError("READONLY You can't write")],
    ids=["outage", "refused"],
)
def test_writes_lost_after_the_save_are_logged_not_raised(
    app: Flask,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    failure: Exception,
) -> None:
    """Past the save the call's state is stored: an outage now costs the queued writes
    (logged), never the caller's answer."""

    def down(_writes: Any) -> None:
        raise failure

    monkeypatch.setattr(deferred, "_send", down)
    with app.test_request_context(), caplog.at_level(logging.ERROR, logger=deferred.__name__):
        deferred.later(_setter(_key()))
        deferred.send()  # no exception
    assert "deferred Redis writes lost" in caplog.text


def test_a_right_entry_is_given_back_with_the_save(app: Flask) -> None:
    """The engine's give-back waits for the save; until then the entry stays reserved
    (the safe side for an entry racing it), after it the counter is as before."""
    jane = add_account(app, "Jane Doe", JANE_PHONE, "10004321")
    sid = "CA" + secrets.token_hex(16)
    with app.test_request_context():
        limits = DigitFailures(kv.client(), db.session(), "k", 10, defer=deferred.later)
        with store.step(sid, "request-1") as held:
            attempt = limits.attempt([jane], JANE_PHONE)
            attempt.matched()
            assert kv.client().zcard(account_key(jane)) == 1  # still reserved
            held.save(_state(sid), None)
        assert kv.client().zcard(account_key(jane)) == 0


def test_a_count_read_later_in_the_request_sends_the_give_back_first(app: Flask) -> None:
    """A flow that asks for digits again in the same step (a second last-4 node) must
    not count this request's right entry against the caller."""
    jane = add_account(app, "Jane Doe", JANE_PHONE, "10004321")
    with app.test_request_context():
        limits = DigitFailures(kv.client(), db.session(), "k", 10, defer=deferred.later)
        limits.attempt([jane], JANE_PHONE).matched()
        assert kv.client().zcard(account_key(jane)) == 1  # waiting for the save
        assert limits.counts([jane], None) == [0]
        assert kv.client().zcard(account_key(jane)) == 0


def test_a_transferred_call_is_listed_for_agents(app: Flask, phone: Phone) -> None:
    """End to end through signed webhooks: the listing, written with the save, is
    there for the agent page, and the right digits left no failure counted."""
    jane = add_account(app, "Jane Doe", JANE_PHONE, "10004321")
    sid = "CA" + secrets.token_hex(16)
    result = phone.call(JANE_PHONE, ["1", "4321", "@code", "2"], call_sid=sid)
    assert result.transfers, result
    with app.app_context():
        entry = kv.client().hgetall(transfers.entry_key(sid))
        limits = DigitFailures(kv.client(), db.session(), "k", 10)
        assert limits.counts([jane], None) == [0]
    assert entry.get(b"call_sid") == sid.encode()
    assert entry.get(b"token")


def test_a_save_that_meets_an_outage_drops_the_queued_writes(
    app: Flask, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The call's save met a Redis outage: the queued writes are dropped (logged), not
    sent into the same outage at the end of the request, which would add another
    timeout before the caller hears the apology."""
    sid = "CA" + secrets.token_hex(16)

    def not_again(_writes: Any) -> None:
        raise AssertionError("sent into an outage")

    def down(_pipe: Any) -> None:
        raise redis.exceptions.TimeoutError("Timeout reading from socket")

    with (
        app.test_request_context(),
        caplog.at_level(logging.ERROR, logger=deferred.__name__),
        store.step(sid, "request-1") as held,
    ):
        deferred.later(_setter(_key()))
        monkeypatch.setattr(deferred, "execute_with", down)
        monkeypatch.setattr(deferred, "_send", not_again)
        with pytest.raises(StorageUnavailable):
            held.save(_state(sid), None)
    assert "deferred Redis writes dropped" in caplog.text


def test_an_outage_elsewhere_in_the_request_does_not_drop_them(app: Flask) -> None:
    """Only the call's own save or lock decides: a failure the request carried on from
    (the job queue's own Redis, say) leaves the queued writes to be sent."""
    key = _key()
    with app.test_request_context():
        deferred.later(_setter(key))
        with pytest.raises(StorageUnavailable), kv.unavailable_as_storage_error():
            raise redis.exceptions.ConnectionError("the job queue's Redis is down")
    with app.app_context():
        assert kv.client().get(key) == b"1"
