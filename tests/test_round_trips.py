"""Storage round trips per webhook over complete journeys (issue 12): counted, not timed.

Each journey is played by the tests' Phone over signed webhooks; every webhook is
counted with `ivr.storage.roundtrips` (Redis round trips: a command or a whole
pipeline/transaction; SQL statements: each one the driver sends, BEGIN/COMMIT/ROLLBACK
included). The jobs the test app runs as a request ends are counted apart: in
production a worker runs them, not the webhook. `pytest -s` prints the table.

The live-version check (one Redis GET per worker every few seconds) is made once
before counting and the runtime's clock is then held still, so counts do not depend
on how fast the test runs; the first start's publish of the working files is not a
webhook's cost either.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import caller
import pytest
from caller import Phone
from flask import Flask
from kit import JANE_PHONE, add_account

from ivr.calls import runtime
from ivr.hours import status as closure_status
from ivr.jobs import runner
from ivr.simulator.transport import Reply
from ivr.storage import keys, roundtrips

NEW_PHONE = "+14155550199"
VERIFIED = ["1", "4321", "@code"]  # English, the last four digits, the texted code
CHANGE = ["1", "4155550199#", "1"]  # menu: change number; the new number; confirm

# Issue 12's budget per webhook on average over the journeys: reached for SQL, not yet
# for Redis. Until it is, the suite holds the counts where they are now (both backends),
# so they can only go down: measured before this work 3.98 Redis / 2.77 SQL (PostgreSQL;
# 1.42 SQLite), then 4.02 / 1.98 before the round-trip cuts, 2.72 / 1.00 after them, and
# 2.58 / 0.91 once calls without a number change stopped queuing an after-call job and the
# first name was kept from the digits check, 2.44 once a right entry's give-back and the
# transfer's listing rode in the step's save (2.60 on a cluster, where they cannot). Each step of a call costs
# two Redis round trips by itself (lock + read, then save + release), so the remaining
# Redis budget is what digit limits, codes, transfers and number changes add on top.
# Issue 14 moved the `call.ended` audit off the status webhook into the job that writes the
# call's history (its timeline) in one batch: one SQL statement per call became one RQ
# round trip (the job, with its key's marker in the same round trip; the take is a script), +0.11 Redis and
# -0.12 SQL per webhook; the timeline itself rides in each step's save.
TARGET_REDIS, TARGET_SQL = 2.0, 1.0
AVERAGE_REDIS = 2.80  # 2.60 on Redis, 2.79 on the stand-in (each app loads the scripts anew)
AVERAGE_SQL = 0.68  # 0.65 on PostgreSQL and SQLite: the status webhook writes nothing now
MAX_REDIS = 11  # the number change's confirm step: the process's first job is queued there now
# (10 while every call's end queued a job: RQ's first enqueue costs one more, moved, not added)
MAX_SQL = 6  # the number change's confirm step (BEGIN, claim, swap, history, audit, COMMIT)
MAX_STATE_BYTES = 2048


@dataclass
class Webhook:
    journey: str
    endpoint: str
    redis: int
    sql: int


@dataclass
class Recorder:
    """Counts each webhook the Phone posts (and, apart, the jobs run as requests end)."""

    app: Flask
    journey: str = ""
    webhooks: list[Webhook] = field(default_factory=list)
    jobs: roundtrips.Counts = field(default_factory=roundtrips.Counts)
    state_bytes: dict[str, int] = field(default_factory=dict)

    def post(self, original: Callable[..., Reply]) -> Callable[..., Reply]:
        def counted(transport: caller.SchemaCheckingTransport, url: str, form: dict[str, str]):
            with roundtrips.counting(self.app) as counts:
                reply = original(transport, url, form)
            endpoint = url.split("?")[0].split("/voice/", 1)[-1]
            self.webhooks.append(Webhook(self.journey, endpoint, counts.redis, counts.sql))
            self._measure_state(form.get("CallSid", ""))
            return reply

        return counted

    def run_burst(self, original: Callable[..., bool]) -> Callable[..., bool]:
        def apart(app: Flask, **kwargs: float | None) -> bool:
            with roundtrips.paused(app), roundtrips.counting(app) as counts:
                ran = original(app, **kwargs)
            self.jobs.redis += counts.redis
            self.jobs.sql += counts.sql
            return ran

        return apart

    def _measure_state(self, call_sid: str) -> None:
        raw = self.app.extensions["ivr.redis"].get(keys.call_state(call_sid))
        if raw:
            size = len(raw)
            self.state_bytes[self.journey] = max(self.state_bytes.get(self.journey, 0), size)

    def table(self) -> str:
        """Per endpoint: webhooks, Redis round trips and SQL statements (total, mean, max)."""
        by_endpoint: dict[str, list[Webhook]] = defaultdict(list)
        for hook in self.webhooks:
            by_endpoint[hook.endpoint].append(hook)
        lines = [
            f"{'endpoint':<16}{'hooks':>6}{'redis':>7}{'avg':>6}{'max':>5}"
            f"{'sql':>6}{'avg':>6}{'max':>5}"
        ]
        for endpoint, hooks in sorted(by_endpoint.items()):
            lines.append(_row(endpoint, hooks))
        lines.append(_row("all webhooks", self.webhooks))
        lines.append(
            f"jobs run as requests ended (apart): redis {self.jobs.redis}, sql {self.jobs.sql}"
        )
        lines.append(f"largest call state: {self.state_bytes}")
        return "\n".join(lines)


def _row(name: str, hooks: list[Webhook]) -> str:
    redis = [hook.redis for hook in hooks]
    sql = [hook.sql for hook in hooks]
    return (
        f"{name:<16}{len(hooks):>6}{sum(redis):>7}{sum(redis) / len(hooks):>6.2f}{max(redis):>5}"
        f"{sum(sql):>6}{sum(sql) / len(hooks):>6.2f}{max(sql):>5}"
    )


@pytest.fixture
def recorder(app: Flask, monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    with app.app_context():
        runtime.get().live()  # the first start publishes the working files: not counted
    monkeypatch.setattr(app.extensions["ivr.runtime"], "clock", lambda: 0.0)
    # The emergency closure is read once per process per few seconds: hold that clock
    # too, so a schedule node costs exactly one read per run, however slow the machine.
    monkeypatch.setattr(closure_status.cache(app), "clock", lambda: 0.0)
    recorder = Recorder(app)
    monkeypatch.setattr(
        caller.SchemaCheckingTransport, "post", recorder.post(caller.SchemaCheckingTransport.post)
    )
    monkeypatch.setattr(runner, "run_burst", recorder.run_burst(runner.run_burst))
    yield recorder


def _journeys(app: Flask, phone: Phone, recorder: Recorder) -> None:
    """Complete journeys of every common shape, each on fresh accounts."""
    add_account(app, "Jane Doe", JANE_PHONE, "10004321", "jane@example.test")
    add_account(app, "Ann Lee", "+14155550111", "20005678")
    add_account(app, "Bob Roe", "+14155550122", "30001111")
    add_account(app, "Bea Roe", "+14155550122", "30002222")

    recorder.journey = "known caller, digits + SMS code, agent"
    result = phone.call(JANE_PHONE, ["1", "4321", "@code", "2"])
    assert result.transfers, result

    recorder.journey = "unknown number, account number + code, agent"
    result = phone.call("+14155550177", ["1", "20005678#", "@code", "2"])
    assert result.transfers, result

    recorder.journey = "family line, last 4 pick the account, agent"
    result = phone.call("+14155550122", ["1", "2222", "@code", "2"])
    assert result.transfers, result

    recorder.journey = "hangs up at the digits prompt"
    result = phone.call(JANE_PHONE, ["1"])
    assert not result.transfers

    recorder.journey = "number change with call-back"
    result = phone.call(JANE_PHONE, [*VERIFIED, *CHANGE, "@code", "3"], callee_keys=["1"])
    assert len(caller.calls_placed(app)) == 1, result


def test_round_trips_per_webhook_over_complete_journeys(
    app: Flask, phone: Phone, recorder: Recorder
) -> None:
    """Round trips per webhook no higher than measured (on the way to issue 12's 2 Redis
    round trips and 1 SQL statement), no webhook far above that, and the call state
    within 2 KB all the way."""
    _journeys(app, phone, recorder)
    print("\n" + recorder.table())

    hooks = recorder.webhooks
    assert len({hook.journey for hook in hooks}) == 5
    average_redis = sum(hook.redis for hook in hooks) / len(hooks)
    average_sql = sum(hook.sql for hook in hooks) / len(hooks)
    # Every step takes its lock with the state and saves with the release: fewer than two
    # counted means the counting lost them (a cluster pipeline once went uncounted).
    steps = [hook for hook in hooks if hook.endpoint in ("incoming", "input", "dial")]
    assert min(hook.redis for hook in steps) >= 2, recorder.table()
    assert average_redis <= AVERAGE_REDIS, recorder.table()
    assert average_sql <= AVERAGE_SQL, recorder.table()
    assert max(hook.redis for hook in hooks) <= MAX_REDIS, recorder.table()
    assert max(hook.sql for hook in hooks) <= MAX_SQL, recorder.table()
    assert recorder.state_bytes, "no call state was seen"
    assert max(recorder.state_bytes.values()) <= MAX_STATE_BYTES, recorder.state_bytes
