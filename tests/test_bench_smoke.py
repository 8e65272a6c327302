"""`make bench` runs: a few seconds of the benchmark on its embedded defaults (SQLite and
the in-process Redis stand-in, whatever backend this suite runs on: the bench never
touches the suite's data) writes a result with every section, throughput for each
target, and no errors. No timing is asserted: speed is the bench's business."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ("bare", "sample", "service")
SHAPES = ("known", "unknown", "change")


def processes_marked(mark: str) -> list[int]:
    """Processes whose environment holds `mark` (every process the bench started does)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if mark.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue  # gone, or not ours to read
    return found


def run_bench(tmp_path: Path, mark: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IVR_BENCH_")}
    env["SMOKE_RUN"] = mark  # inherited by everything the bench starts
    result = tmp_path / "bench.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "scripts.bench",
            "--seconds=1",
            "--rounds=1",
            "--connections=4",
            "--customers=90",
            "--warmup=0",
            "--count-calls=1",
            f"--json={result}",
            f"--logs={tmp_path / 'logs'}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "SQLite (embedded) + the in-process Redis stand-in" in done.stdout
    loaded: dict[str, Any] = json.loads(result.read_text(encoding="utf-8"))
    return loaded


def test_bench_runs_every_target_and_counts_the_service(tmp_path: Path) -> None:
    mark = f"bench-smoke-{uuid.uuid4().hex}"
    result = run_bench(tmp_path, mark)

    assert set(result) >= {"when", "machine", "backend", "settings", "results", "costs", "goals"}
    assert result["backend"]["database"] == "sqlite"
    table = result["results"]["4"]
    assert list(table) == list(TARGETS)
    for name in TARGETS:
        stats = table[name]
        assert stats["webhooks"] > 0 and stats["webhooks_per_s"] > 0, (name, stats)
        assert stats["errors"] == 0, (name, stats["error_samples"])
        assert stats["p99_ms"] >= stats["p50_ms"] > 0
    assert table["bare"]["vs_bare"] == 1.0 and table["sample"]["vs_sample"] == 1.0
    assert table["service"]["vs_bare"] > 0 and table["service"]["vs_sample"] > 0

    costs = result["costs"]
    assert costs["redis_per_webhook"] > 0 and costs["sql_per_webhook"] > 0
    assert 0 < costs["state_bytes_mean"] <= costs["state_bytes_max"]
    assert {shape: costs["per_shape"][shape]["webhooks_per_call"] for shape in SHAPES} == {
        "known": 7,
        "unknown": 7,
        "change": 13,
    }
    assert set(result["goals"]["met"]) == {
        "vs_sample",
        "p99_ms",
        "redis_per_webhook",
        "sql_per_webhook",
        "state_bytes_max",
    }
    logs = sorted(path.name for path in (tmp_path / "logs").iterdir())
    assert logs == ["bare.log", "sample.log", "service1.log", "twilio-double.log"]
    assert processes_marked(mark) == []  # every process it started (gunicorn workers too) ended
