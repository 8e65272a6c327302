"""One test per rule of security.md's one-time code table, on the suite's Redis."""

from __future__ import annotations

import hmac
import inspect
import threading

import pytest
from flask import Flask

from ivr.storage import keys, kv
from ivr.verification import codes
from ivr.verification.codes import (
    EXPIRED,
    LOCKED,
    OK,
    WRONG,
    CodePolicy,
    CodeService,
    Issued,
    Refused,
)

CALL = "CA" + "a" * 32
OTHER_CALL = "CA" + "b" * 32


class Clock:
    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(app: Flask, clock: Clock) -> CodeService:
    with app.app_context():
        return CodeService(kv.client(), "test-secret-key", CodePolicy(), clock)


def issue(service: CodeService, account: int = 1, call: str = CALL) -> str:
    result = service.issue(account, "verify", call)
    assert isinstance(result, Issued), result
    return result.code


def test_codes_are_six_digits_from_the_csprng(service: CodeService) -> None:
    seen = {issue(service, account=n) for n in range(1, 41)}
    assert all(len(code) == 6 and code.isdigit() for code in seen)
    assert len(seen) > 35  # random, not a counter or a constant
    assert "secrets.randbelow" in inspect.getsource(CodeService._new_code)


def test_length_is_configurable(app: Flask, clock: Clock) -> None:
    with app.app_context():
        long_codes = CodeService(kv.client(), "k", CodePolicy(length=8), clock)
        assert len(issue(long_codes)) == 8


def test_code_works_within_its_lifetime_and_not_after(service: CodeService, clock: Clock) -> None:
    code = issue(service)
    clock.now += 299
    assert service.check(1, "verify", CALL, code) == OK
    code = issue(service)
    clock.now += 301
    assert service.check(1, "verify", CALL, code) == EXPIRED


def test_code_is_single_use(service: CodeService) -> None:
    code = issue(service)
    assert service.check(1, "verify", CALL, code) == OK
    assert service.check(1, "verify", CALL, code) == EXPIRED


def test_code_is_bound_to_its_call_and_purpose(service: CodeService) -> None:
    code = issue(service)
    assert service.check(1, "verify", OTHER_CALL, code) == WRONG
    assert service.check(1, "change_number", CALL, code) == EXPIRED
    assert service.check(2, "verify", CALL, code) == EXPIRED
    assert service.check(1, "verify", CALL, code) == OK


def test_five_wrong_entries_kill_the_code(service: CodeService) -> None:
    code = issue(service)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    assert [service.check(1, "verify", CALL, wrong) for _ in range(5)] == [WRONG] * 5
    assert service.check(1, "verify", CALL, code) == EXPIRED


def test_a_resend_replaces_the_previous_code(service: CodeService) -> None:
    first = issue(service)
    second = issue(service)
    if first == second:  # one in a million: the old code must still be gone
        pytest.skip("the two random codes happened to be equal")
    assert service.check(1, "verify", CALL, first) == WRONG
    assert service.check(1, "verify", CALL, second) == OK


def test_five_sends_per_ten_minutes_without_a_successful_check(
    service: CodeService, clock: Clock
) -> None:
    for _ in range(5):
        issue(service)
        clock.now += 30
    assert service.issue(1, "verify", CALL) == Refused("rate_limited")
    clock.now += 600  # the window has rolled past the first sends
    code = issue(service)
    assert service.check(1, "verify", CALL, code) == OK
    for _ in range(5):  # a success resets the window
        issue(service)
    assert isinstance(service.issue(2, "verify", CALL), Issued)  # per account


def test_daily_cap(app: Flask, clock: Clock) -> None:
    with app.app_context():
        service = CodeService(kv.client(), "k", CodePolicy(sends_per_day=7), clock)
    for _ in range(7):
        code = issue(service)
        assert service.check(1, "verify", CALL, code) == OK
        clock.now += 60
    assert service.issue(1, "verify", CALL) == Refused("rate_limited")
    clock.now += 86_400
    assert isinstance(service.issue(1, "verify", CALL), Issued)


def test_lockout_after_consecutive_failures_survives_a_new_call(
    service: CodeService, clock: Clock
) -> None:
    outcomes = []
    for attempt in range(10):
        call = CALL if attempt < 5 else OTHER_CALL  # the caller hung up and called again
        code = issue(service, call=call) if attempt % 5 == 0 else None
        assert code is not None or attempt % 5
        outcomes.append(
            service.check(1, "verify", call, "000000" if code != "000000" else "111111")
        )
    assert outcomes[-1] == LOCKED and outcomes[:9] == [WRONG] * 9
    assert service.issue(1, "verify", OTHER_CALL) == Refused("locked")
    assert service.is_locked(1)
    clock.now += 901  # the lockout is timed
    assert not service.is_locked(1)
    assert isinstance(service.issue(1, "verify", OTHER_CALL), Issued)


def test_only_a_keyed_hash_is_stored(app: Flask, service: CodeService) -> None:
    code = issue(service)
    with app.app_context():
        client = kv.client()
        stored = b"".join(
            key + b"".join(f"{k!r}{v!r}".encode() for k, v in client.hgetall(key).items())
            if client.type(key) == b"hash"
            else key + (client.get(key) or b"")
            if client.type(key) == b"string"
            else key
            for key in client.keys("*")
        )
    assert code.encode() not in stored
    unkeyed = codes.hashlib.sha256(f"1:verify:{CALL}:{code}".encode()).hexdigest()
    assert unkeyed.encode() not in stored


def test_comparison_is_constant_time(monkeypatch: pytest.MonkeyPatch, service: CodeService) -> None:
    calls: list[tuple[str, str]] = []
    real_compare = hmac.compare_digest

    def recording_compare(a: str, b: str) -> bool:
        calls.append((a, b))
        return real_compare(a, b)

    monkeypatch.setattr(codes.hmac, "compare_digest", recording_compare)
    code = issue(service)
    assert service.check(1, "verify", CALL, code) == OK
    assert len(calls) == 1 and calls[0][0] == calls[0][1]


def test_concurrent_correct_entries_succeed_once(service: CodeService) -> None:
    code = issue(service)
    results: list[str] = []
    start = threading.Barrier(8)

    def enter() -> None:
        start.wait()
        results.append(service.check(1, "verify", CALL, code))

    threads = [threading.Thread(target=enter) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(OK) == 1
    assert set(results) <= {OK, EXPIRED}


@pytest.mark.parametrize("entry", ["", "12345", "1234567", "12a456", "******"])
def test_malformed_entries_are_wrong_not_errors(service: CodeService, entry: str) -> None:
    issue(service)
    assert service.check(1, "verify", CALL, entry) == WRONG


# ---------------------------------------------------------------- codes read out on a call


def test_a_reserved_code_exists_only_once_revealed_and_only_once(
    app: Flask, service: CodeService
) -> None:
    assert service.reserve(1, "verify", "ticket-1") is None
    with app.app_context():
        assert kv.client().hget(keys.code(1, "verify"), "mac") is None
    revealed = service.reveal(1, "verify", "ticket-1", CALL)
    assert isinstance(revealed, Issued) and len(revealed.code) == 6
    assert service.reveal(1, "verify", "ticket-1", CALL) == Refused("replaced")  # a second key
    assert service.check(1, "verify", CALL, revealed.code) == OK


def test_a_newer_send_replaces_a_reservation(service: CodeService) -> None:
    assert service.reserve(1, "verify", "ticket-1") is None
    sms_code = issue(service)
    assert service.reveal(1, "verify", "ticket-1", CALL) == Refused("replaced")
    assert service.check(1, "verify", CALL, sms_code) == OK
    assert service.reserve(1, "verify", "ticket-2") is None
    assert service.reserve(1, "verify", "ticket-3") is None
    assert service.reveal(1, "verify", "ticket-2", CALL) == Refused("replaced")
    assert isinstance(service.reveal(1, "verify", "ticket-3", CALL), Issued)


def test_entries_before_the_code_is_read_are_wrong_guesses(service: CodeService) -> None:
    assert service.reserve(1, "verify", "ticket-1") is None
    assert [service.check(1, "verify", CALL, "123456") for _ in range(4)] == [WRONG] * 4
    revealed = service.reveal(1, "verify", "ticket-1", CALL)
    assert isinstance(revealed, Issued)
    assert service.check(1, "verify", CALL, wrong_for(revealed.code)) == WRONG  # the fifth
    assert service.check(1, "verify", CALL, revealed.code) == EXPIRED  # dead after five


def test_a_reservation_nobody_answers_expires(service: CodeService, clock: Clock) -> None:
    assert service.reserve(1, "verify", "ticket-1") is None
    clock.now += service.policy.ttl + service.policy.ring_allowance + 1
    assert service.reveal(1, "verify", "ticket-1", CALL) == Refused("replaced")
    assert service.check(1, "verify", CALL, "123456") == EXPIRED


def test_a_revealed_code_lives_its_own_lifetime(service: CodeService, clock: Clock) -> None:
    assert service.reserve(1, "verify", "ticket-1") is None
    clock.now += 60  # ringing and answering
    revealed = service.reveal(1, "verify", "ticket-1", CALL)
    assert isinstance(revealed, Issued)
    clock.now += service.policy.ttl + 1
    assert service.check(1, "verify", CALL, revealed.code) == EXPIRED


def test_reservations_count_as_sends(service: CodeService, clock: Clock) -> None:
    for n in range(5):
        assert service.reserve(1, "verify", f"ticket-{n}") is None
    assert service.reserve(1, "verify", "ticket-5") == Refused("rate_limited")
    assert service.issue(1, "verify", CALL) == Refused("rate_limited")
    clock.now += 601
    assert service.reserve(1, "verify", "ticket-6") is None


def test_reservations_and_reveals_respect_a_lockout(app: Flask, clock: Clock) -> None:
    with app.app_context():
        service = CodeService(kv.client(), "k", CodePolicy(failures_before_lockout=2), clock)
    assert service.reserve(1, "verify", "ticket-1") is None
    assert service.check(1, "verify", CALL, "123456") == WRONG
    assert service.check(1, "verify", CALL, "123456") == LOCKED
    assert service.reveal(1, "verify", "ticket-1", CALL) == Refused("locked")
    assert service.reserve(1, "verify", "ticket-2") == Refused("locked")


def test_send_limits_are_counted_per_purpose(app: Flask, clock: Clock) -> None:
    with app.app_context():
        callbacks = CodeService(
            kv.client(), "k", CodePolicy(sends_per_day=3, sends_per_window=3), clock
        )
        verify = CodeService(kv.client(), "k", CodePolicy(), clock)
    for n in range(3):
        assert callbacks.reserve(1, "confirm_number", f"t{n}") is None
    assert callbacks.reserve(1, "confirm_number", "t3") == Refused("rate_limited")
    assert isinstance(verify.issue(1, "verify", CALL), Issued)


def wrong_for(code: str) -> str:
    return "".join(str((int(d) + 1) % 10) for d in code)
