"""One step acts once: truly concurrent copies of a webhook produce one action and one answer.

Two threads post the same signed request at the same moment (a barrier releases
them together) while the delivery channel is slowed down, so without the per-call
lock both would load the same state and both would send: the tests assert one code
in the outbox (or one call-back placed) and identical answers. They run on the
in-process Redis stand-in and, with IVR_TEST_REDIS_URL, on real Redis.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from caller import calls_placed, sent, sent_codes
from factories import make_account
from flask import Flask
from kit import (
    AGENT,
    JANE_PHONE,
    call_form,
    gather_step,
    new_sid,
    post,
    says,
    signature,
    state_of,
    text,
    twiml,
)

from ivr.calls import store
from ivr.delivery.outbox import Outbox
from ivr.flow.instructions import Gather, Say
from ivr.storage import db, keys, kv
from ivr.voice.views import _speaks_code

SLOW = 0.3  # seconds each send takes: far longer than the gap between the two copies
NEW_PHONE = "+14155550199"


@pytest.fixture
def slow_delivery(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every text and placed call of the local outbox takes SLOW seconds, as a real
    provider's round trip does: the window in which a second copy would act too."""
    for name in ("send", "place"):
        real = getattr(Outbox, name)

        def slowed(self: Outbox, message: Any, _real: Callable[..., str] = real) -> str:
            time.sleep(SLOW)
            return _real(self, message)

        monkeypatch.setattr(Outbox, name, slowed)


def add_jane(app: Flask) -> None:
    with app.app_context():
        make_account(db.session(), name="Jane Doe", phone=JANE_PHONE, account_number="10004321")


def press(app: Flask, call_sid: str, step: int, digits: str) -> int:
    """Key `digits` for the prompt of `step`; the next prompt's step."""
    return gather_step(
        twiml(post(app, f"/voice/input?s={step}", call_form(call_sid, Digits=digits)))
    )


def at_once(app: Flask, path: str, form: dict[str, str], copies: int = 2) -> list[tuple[int, str]]:
    """Post `copies` identical signed requests from as many threads, released together."""
    from conftest import PUBLIC_URL

    headers = {"X-Twilio-Signature": signature(form, PUBLIC_URL + path)}
    barrier = threading.Barrier(copies)
    answers: list[tuple[int, str]] = []
    errors: list[BaseException] = []

    def one() -> None:
        client = app.test_client()
        try:
            barrier.wait(timeout=10)
            response = client.post(path, data=form, headers=headers)
            answers.append((response.status_code, response.get_data(as_text=True)))
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(copies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    assert len(answers) == copies
    return answers


def assert_one_answer(answers: list[tuple[int, str]]) -> str:
    statuses = {status for status, _ in answers}
    bodies = {body for _, body in answers}
    assert statuses == {200}
    assert len(bodies) == 1, bodies
    body = bodies.pop()
    twiml_check(body)
    return body


def twiml_check(body: str) -> None:
    from twiml_schema import assert_valid_twiml

    assert_valid_twiml(body)


# --- the digits step: one code sent -----------------------------------------------------------


def test_two_copies_of_the_digits_step_send_one_code(app: Flask, slow_delivery: None) -> None:
    add_jane(app)
    sid = new_sid()
    step = press(app, sid, gather_step(twiml(post(app, "/voice/incoming", call_form(sid)))), "1")

    answers = at_once(app, f"/voice/input?s={step}", call_form(sid, Digits="4321"))

    body = assert_one_answer(answers)
    assert len(sent_codes(app)) == 1
    assert text(app, "code_sent_sms") in body  # the first answer itself, not a replay
    state = state_of(app, sid)
    assert state is not None and state["node"] == "enter_code"


def test_three_copies_still_send_one_code(app: Flask, slow_delivery: None) -> None:
    add_jane(app)
    sid = new_sid()
    step = press(app, sid, gather_step(twiml(post(app, "/voice/incoming", call_form(sid)))), "1")

    assert_one_answer(at_once(app, f"/voice/input?s={step}", call_form(sid, Digits="4321"), 3))

    assert len(sent_codes(app)) == 1


# --- the number change: one call-back placed ----------------------------------------------------


def test_two_copies_of_the_confirm_step_place_one_callback(app: Flask, slow_delivery: None) -> None:
    add_jane(app)
    sid = new_sid()
    step = gather_step(twiml(post(app, "/voice/incoming", call_form(sid))))
    step = press(app, sid, step, "1")  # English
    step = press(app, sid, step, "4321")  # the last four digits
    step = press(app, sid, step, sent_codes(app)[-1])  # the texted code
    step = press(app, sid, step, "1")  # menu: change the number
    step = press(app, sid, step, "4155550199#")  # the new number
    assert calls_placed(app) == []

    answers = at_once(app, f"/voice/input?s={step}", call_form(sid, Digits="1"))  # confirm

    body = assert_one_answer(answers)
    (placed,) = calls_placed(app)
    assert placed.to == NEW_PHONE
    assert text(app, "callback_calling") in body


# --- the start of a call: one start -------------------------------------------------------------


def test_two_copies_of_incoming_start_the_call_once(
    app: Flask, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_jane(app)
    sid = new_sid()
    real_start = store.Step.save

    def slow_save(self: store.Step, *args: Any) -> None:
        time.sleep(SLOW)  # the first start still running when the copy arrives
        real_start(self, *args)

    monkeypatch.setattr(store.Step, "save", slow_save)

    with caplog.at_level(logging.INFO, logger="ivr.voice.views"):
        answers = at_once(app, "/voice/incoming", call_form(sid))

    body = assert_one_answer(answers)
    started = [r for r in caplog.records if "started on" in r.getMessage()]
    assert len(started) == 1
    assert text(app, "welcome") in body


# --- the lock itself ----------------------------------------------------------------------------


def _hold_lock(app: Flask, call_sid: str, token: str = "someone-else") -> None:
    with app.app_context():
        kv.client().set(keys.call_lock(call_sid), token, px=60_000)


def test_a_step_that_cannot_get_the_lock_replays_and_saves_nothing(
    make_app: Any, slow_delivery: None
) -> None:
    """Another request holds the call past the wait: the prompt again, nothing sent, no save."""
    app = make_app(IVR_STORAGE_TIMEOUT="0.2")
    add_jane(app)
    sid = new_sid()
    step = press(app, sid, gather_step(twiml(post(app, "/voice/incoming", call_form(sid)))), "1")
    before = state_of(app, sid)
    _hold_lock(app, sid)

    doc = twiml(post(app, f"/voice/input?s={step}", call_form(sid, Digits="4321")))

    assert says(doc) == [text(app, "enter_last4")]
    assert gather_step(doc) == step
    assert sent(app) == []
    assert state_of(app, sid) == before
    with app.app_context():  # the other request's lock is left alone
        assert kv.client().get(keys.call_lock(sid)) == b"someone-else"


def test_a_start_that_cannot_get_the_lock_goes_to_an_agent(make_app: Any) -> None:
    """No state yet and the call busy elsewhere: the outage answer (apology, agent)."""
    app = make_app(IVR_STORAGE_TIMEOUT="0.2")
    sid = new_sid()
    _hold_lock(app, sid)

    doc = twiml(post(app, "/voice/incoming", call_form(sid)))

    assert says(doc) == [text(app, "error_apology")]
    assert doc.findtext("Dial/Number") == AGENT
    assert state_of(app, sid) is None


def test_a_step_that_outlived_its_lock_saves_nothing_and_frees_nothing(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the lock's life another request may hold it: the late step neither overwrites
    the state nor releases the other's lock."""
    monkeypatch.setattr(store, "LOCK_TTL", 0.05)
    sid = new_sid()
    with app.app_context():
        with store.step(sid, "input:1") as held:
            assert held.locked
            time.sleep(0.1)  # the lock lapses
            _hold_lock(app, sid, "the-next-request")
            held.save(_state(sid), "<Response/>")
        assert kv.client().get(keys.call_state(sid)) is None
        assert kv.client().get(keys.call_lock(sid)) == b"the-next-request"


def test_a_slow_step_that_still_holds_its_lock_saves(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The slow path saves when the lock is still ours (checked under WATCH)."""
    sid = new_sid()
    with app.app_context():
        with store.step(sid, "input:1") as held:
            held.deadline = 0.0  # as if the step ran past its deadline
            held.save(_state(sid), "<Response/>")
        assert kv.client().get(keys.call_state(sid)) is not None
        assert kv.client().get(keys.call_lock(sid)) is None


def test_a_failed_step_releases_the_lock(app: Flask) -> None:
    sid = new_sid()
    with app.app_context():
        with pytest.raises(ZeroDivisionError), store.step(sid, "input:1"):
            raise ZeroDivisionError("a bug mid-step")
        assert kv.client().get(keys.call_lock(sid)) is None


def test_a_copy_gets_the_stored_answer_only_for_the_same_request(app: Flask) -> None:
    sid = new_sid()
    with app.app_context():
        with store.step(sid, "input:3") as held:
            held.save(_state(sid), "<Response>first</Response>")
        with store.step(sid, "input:3") as copy:
            assert copy.answered == "<Response>first</Response>"
        with store.step(sid, "input:4") as later:
            assert later.answered is None and later.state is not None


def test_an_answer_that_reads_a_code_is_never_stored(app: Flask) -> None:
    """The code read to a caller on the new phone must not sit in Redis."""
    catalog = app.extensions["ivr.runtime"].working.catalog
    template = catalog.text("en-US", "read_code_new_number")
    spoken = template.format(code_digits="4, 8, 2, 9, 1, 3", new_number="", minutes="5")
    other = Say(text(app, "enter_code"), "en-US", None)

    assert _speaks_code([Say(spoken, "en-US", None)], catalog)
    assert _speaks_code([Gather((Say(spoken, "en-US", None),), 1, 5, 6, "#")], catalog)
    assert not _speaks_code([other, Gather((other,), 1, 5, 6, "#")], catalog)


def _state(call_sid: str) -> Any:
    from ivr.flow.state import CallState

    return CallState(call_sid, "support", "v", "en-US", "welcome", 0.0)
