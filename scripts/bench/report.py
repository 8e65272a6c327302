"""The bench's result: one table per connection count, the per-webhook costs, the
issue's targets met or not, and the same as JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scripts.bench.counting import Counted
from scripts.bench.driver import RoundResult, percentile

# Issue 12's targets (full journeys, 16 connections, same run).
GOALS = {
    "vs_sample_min": 1.0,
    "p99_ms_max": 25.0,
    "redis_per_webhook_max": 2.0,
    "sql_per_webhook_max": 1.0,
    "state_bytes_max": 2048,
}
GOAL_CONNECTIONS = 16


def summarise(rounds: Sequence[RoundResult]) -> dict[str, Any]:
    """Several rounds of one target at one connection count, merged."""
    seconds = sum(r.seconds for r in rounds)
    webhooks = sum(r.webhooks for r in rounds)
    latencies = [value for r in rounds for value in r.latencies]
    samples = [sample for r in rounds for sample in r.error_samples][:5]
    return {
        "webhooks_per_s": round(webhooks / seconds, 1) if seconds else 0.0,
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "webhooks": webhooks,
        "journeys": sum(r.journeys for r in rounds),
        "errors": sum(r.errors for r in rounds),
        "error_samples": samples,
        "rounds": len(rounds),
        "seconds": seconds,
    }


def with_ratios(table: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each target's throughput as a multiple of the bare app's and the sample's."""
    for stats in table.values():
        for baseline, key in (("bare", "vs_bare"), ("sample", "vs_sample")):
            base = table.get(baseline, {}).get("webhooks_per_s", 0.0)
            stats[key] = round(stats["webhooks_per_s"] / base, 3) if base else None
    return table


def costs(counted: Counted | None) -> dict[str, Any] | None:
    if counted is None or not counted.webhooks:
        return None
    sizes = counted.state_bytes
    return {
        "webhooks": counted.webhooks,
        "redis_per_webhook": round(counted.redis / counted.webhooks, 2),
        "sql_per_webhook": round(counted.sql / counted.webhooks, 2),
        "state_bytes_mean": round(sum(sizes) / len(sizes)) if sizes else None,
        "state_bytes_max": max(sizes) if sizes else None,
        "per_shape": {
            shape: {key: round(value, 2) for key, value in values.items()}
            for shape, values in counted.per_shape.items()
        },
    }


def goals(result: dict[str, Any]) -> dict[str, Any]:
    """Where the service stands against the issue's targets."""
    measured_at = str(GOAL_CONNECTIONS)
    if measured_at not in result["results"]:  # not run at 16: the first count run
        measured_at = next(iter(result["results"]), measured_at)
    table = result["results"].get(measured_at, {})
    service = table.get("service", {})
    counted = result.get("costs") or {}
    found = {
        "vs_sample": service.get("vs_sample"),
        "p99_ms": service.get("p99_ms"),
        "redis_per_webhook": counted.get("redis_per_webhook"),
        "sql_per_webhook": counted.get("sql_per_webhook"),
        "state_bytes_max": counted.get("state_bytes_max"),
    }
    met = {
        "vs_sample": _at_least(found["vs_sample"], GOALS["vs_sample_min"]),
        "p99_ms": _at_most(found["p99_ms"], GOALS["p99_ms_max"]),
        "redis_per_webhook": _at_most(found["redis_per_webhook"], GOALS["redis_per_webhook_max"]),
        "sql_per_webhook": _at_most(found["sql_per_webhook"], GOALS["sql_per_webhook_max"]),
        "state_bytes_max": _at_most(found["state_bytes_max"], GOALS["state_bytes_max"]),
    }
    return {"targets": GOALS, "connections": int(measured_at), "measured": found, "met": met}


def scale_out(table: dict[str, dict[str, Any]]) -> float | None:
    """Two pinned instances' throughput over one pinned instance's (--instances 2)."""
    names = [name for name in table if name.endswith(("1 core", "2 cores"))]
    if len(names) != 2:
        return None
    one, two = (table[name]["webhooks_per_s"] for name in names)
    return round(two / one, 2) if one else None


def _at_least(value: float | None, bound: float) -> bool | None:
    return None if value is None else value >= bound


def _at_most(value: float | None, bound: float) -> bool | None:
    return None if value is None else value <= bound


def print_report(result: dict[str, Any]) -> None:
    """The human summary on stdout."""
    print()
    print(f"backend: {result['backend']['description']}")
    settings = result["settings"]
    threads = f" x {settings['threads']} threads" if settings["threads"] else ""
    print(
        f"gunicorn: {settings['worker_class']}, {settings['workers']} worker(s){threads}; "
        f"{settings['rounds']} round(s) of "
        f"{settings['seconds']} s per target and connection count"
    )
    if settings["pools_wrapped"]:
        print(
            "warning: customers used up for "
            + ", ".join(settings["pools_wrapped"])
            + " journeys (reused ones hit per-account limits): raise --customers"
        )
    for connections, table in result["results"].items():
        print()
        print(f"{connections} connections")
        print(
            f"  {'target':<16}{'webhooks/s':>11}{'p50 ms':>9}{'p99 ms':>9}"
            f"{'x bare':>8}{'x sample':>10}{'errors':>8}"
        )
        for name, stats in table.items():
            print(
                f"  {name:<16}{stats['webhooks_per_s']:>11.1f}{stats['p50_ms']:>9.2f}"
                f"{stats['p99_ms']:>9.2f}{_ratio(stats['vs_bare']):>8}"
                f"{_ratio(stats['vs_sample']):>10}{stats['errors']:>8}"
            )
            for sample in stats["error_samples"]:
                print(f"      error: {sample}")
        scaled = scale_out(table)
        if scaled is not None:
            print(
                f"  scale-out: two instances with a core each serve {scaled:.2f}x what one"
                " instance on one core does (2.00 would be perfect; the stores, the driver"
                " and the jobs worker share the same two cores)"
            )
    counted = result.get("costs")
    print()
    if counted:
        print(
            f"per webhook (in-process count over {counted['webhooks']} webhooks): "
            f"{counted['redis_per_webhook']} Redis round trips, "
            f"{counted['sql_per_webhook']} SQL statements; call state "
            f"{counted['state_bytes_mean']} bytes on average, {counted['state_bytes_max']} at most"
        )
        for shape, values in counted["per_shape"].items():
            print(
                f"  {shape:<8} {values['webhooks_per_call']:.0f} webhooks/call, "
                f"{values['redis_per_webhook']} Redis, {values['sql_per_webhook']} SQL per webhook"
            )
    else:
        print("per webhook: not counted (--no-count)")
    status = result["goals"]
    print()
    print(
        f"issue 12 targets (set at {GOAL_CONNECTIONS} connections; "
        f"measured here at {status['connections']}):"
    )
    labels = {
        "vs_sample": ">= 1.0x the minimal sample",
        "p99_ms": "p99 <= 25 ms",
        "redis_per_webhook": "<= 2 Redis round trips per webhook",
        "sql_per_webhook": "<= 1 SQL statement per webhook",
        "state_bytes_max": "call state <= 2 KB",
    }
    for key, label in labels.items():
        met = status["met"][key]
        word = "n/a" if met is None else ("met" if met else "NOT met")
        print(f"  {label:<36} {status['measured'][key]!s:>10}  {word}")


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def write_json(result: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
