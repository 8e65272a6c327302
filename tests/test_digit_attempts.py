"""Account digits entered at the same moment on many calls cannot overshoot the limit.

Each entry is reserved in the account's counter (added and counted in one round trip)
before it is compared; one that finds the limit already reached is refused and given
back. Threads released together by a barrier play calls keying wrong digits at 9 of 10
failures: exactly one more guess is compared, and the count stops at the limit.
"""

from __future__ import annotations

import threading

from flask import Flask
from kit import JANE_PHONE, add_account
from sqlalchemy import select

from ivr.storage import db, kv
from ivr.storage.models import AuditEvent
from ivr.verification import digits
from ivr.verification.digits import DigitFailures

LIMIT = 10
CALLS = 30


def _counter() -> DigitFailures:
    return DigitFailures(kv.client(), db.session(), "test-secret-key", LIMIT)


def test_concurrent_wrong_entries_at_the_last_try_get_one_guess_between_them(app: Flask) -> None:
    jane = add_account(app, "Jane Doe", JANE_PHONE, "10004321")
    with app.app_context():
        for _ in range(LIMIT - 1):
            _counter().failed("CA" + "0" * 32, [jane], JANE_PHONE, "last4")
            db.session().commit()
    barrier, comparing = threading.Barrier(CALLS), threading.Barrier(CALLS)
    compared: list[int] = []
    errors: list[BaseException] = []

    def call(index: int) -> None:
        try:
            with app.app_context():
                counter = _counter()
                barrier.wait()
                attempt = counter.attempt([jane], JANE_PHONE)
                comparing.wait()  # every call is between its check and its comparison
                if attempt.refused:
                    return
                compared.append(index)  # the digits would be compared here: wrong
                attempt.wrong(f"CA{index:032d}", "last4")
                db.session().commit()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(index,)) for index in range(CALLS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(compared) <= 1  # never more than the one try left
    with app.app_context():
        assert _counter().counts([jane], None) == [LIMIT - 1 + len(compared)]
        rows = db.session().scalars(select(AuditEvent.action)).all()
    assert len(rows) == LIMIT - 1 + len(compared)  # one record per wrong entry compared
    assert _counter_is_locked_after(app, jane) == (len(compared) == 1)


def _counter_is_locked_after(app: Flask, account_id: int) -> bool:
    with app.app_context():
        return _counter().locked([account_id], None)


def test_a_right_entry_gives_its_reservation_back(app: Flask) -> None:
    jane = add_account(app, "Jane Doe", JANE_PHONE, "10004321")
    with app.app_context():
        counter = _counter()
        counter.failed("CA" + "0" * 32, [jane], JANE_PHONE, "last4")
        attempt = counter.attempt([jane], JANE_PHONE)
        assert not attempt.refused
        assert counter.counts([jane], None) == [2]  # reserved while being compared
        attempt.matched()
        assert counter.counts([jane], None) == [1]


def test_an_entry_at_the_limit_is_refused_and_not_counted(app: Flask) -> None:
    jane = add_account(app, "Jane Doe", JANE_PHONE, "10004321")
    with app.app_context():
        counter = _counter()
        for _ in range(LIMIT):
            counter.failed("CA" + "0" * 32, [jane], JANE_PHONE, "last4")
        db.session().commit()
        attempt = counter.attempt([jane], JANE_PHONE)
        assert attempt.refused
        assert counter.counts([jane], None) == [LIMIT]
        actions = db.session().scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert actions == [digits.FAILED] * (LIMIT - 1) + [digits.LOCKED]
