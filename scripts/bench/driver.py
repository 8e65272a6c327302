"""Load rounds: N threads, each on keep-alive connections, playing journeys until time.

A round measures one target (a list of ports: one per instance; each journey goes to
the next port) at one connection count. Each thread plays whole journeys one after
another (a connection is one caller's Twilio edge, so to speak); throughput counts the
webhooks answered within the round's seconds, latency is each webhook's round trip as
the driver saw it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from twilio.request_validator import RequestValidator

from scripts.bench.journeys import (
    PLAYERS,
    DoubleClient,
    HttpTransport,
    Journey,
    JourneyError,
    Pools,
    Stopped,
)

MAX_ERROR_SAMPLES = 5


@dataclass
class RoundResult:
    target: str
    connections: int
    seconds: float
    webhooks: int = 0
    errors: int = 0
    journeys: int = 0
    latencies: list[float] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.webhooks / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class Target:
    name: str
    ports: tuple[int, ...]
    live: bool  # the service: answers are checked and codes read from the double


def run_round(
    target: Target,
    connections: int,
    seconds: float,
    *,
    auth_token: str,
    public_url: str,
    double_port: int,
    pools: Pools,
) -> RoundResult:
    """Play journeys against `target` from `connections` threads for `seconds`."""
    result = RoundResult(target.name, connections, seconds)
    lock = threading.Lock()
    ready = threading.Barrier(connections + 1)
    start: list[float] = []

    def worker() -> None:
        validator = RequestValidator(auth_token)
        transports = [HttpTransport(port) for port in target.ports]
        double = DoubleClient(double_port) if target.live else None
        latencies: list[float] = []
        counts = {"ok": 0, "errors": 0, "journeys": 0}
        samples: list[str] = []
        ready.wait()
        deadline = start[0] + seconds

        def record(elapsed: float, ok: bool) -> None:
            if time.monotonic() <= deadline:
                latencies.append(elapsed)
                counts["ok" if ok else "errors"] += 1

        turn = 0
        try:
            while time.monotonic() < deadline:
                shape = pools.next_shape()
                journey = Journey(
                    transport=transports[turn % len(transports)],
                    validator=validator,
                    public_url=public_url,
                    record=record,
                    deadline=deadline,
                    live=target.live,
                    double=double,
                )
                turn += 1
                index = pools.take(shape) if target.live else 0
                try:
                    PLAYERS[shape](journey, index)
                    counts["journeys"] += 1
                except Stopped:
                    break
                except JourneyError as exc:
                    if len(samples) < MAX_ERROR_SAMPLES:
                        samples.append(f"{shape}: {exc}")
                    journey.transport.close()  # type: ignore[attr-defined]
        finally:
            for transport in transports:
                transport.close()
            if double is not None:
                double.close()
            with lock:
                result.webhooks += counts["ok"]
                result.errors += counts["errors"]
                result.journeys += counts["journeys"]
                result.latencies.extend(latencies)
                room = MAX_ERROR_SAMPLES - len(result.error_samples)
                result.error_samples.extend(samples[: max(0, room)])

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(connections)]
    for thread in threads:
        thread.start()
    start.append(time.monotonic())
    ready.wait()
    for thread in threads:
        thread.join()
    return result


def check_journeys(
    target: Target, *, auth_token: str, public_url: str, double_port: int, pools: Pools
) -> list[str]:
    """Play one journey of each shape, one after another; what went wrong (empty: none)."""
    validator = RequestValidator(auth_token)
    transport = HttpTransport(target.ports[0])
    double = DoubleClient(double_port)
    problems = []
    try:
        for shape, player in PLAYERS.items():
            journey = Journey(
                transport=transport,
                validator=validator,
                public_url=public_url,
                record=lambda elapsed, ok: None,
                deadline=time.monotonic() + 60,
                live=True,
                double=double,
            )
            try:
                player(journey, pools.take(shape))
            except JourneyError as exc:
                problems.append(f"{shape}: {exc}")
    finally:
        transport.close()
        double.close()
    return problems


def percentile(values: Sequence[float], fraction: float) -> float:
    """The value below which `fraction` of `values` lie (nearest rank); 0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]
