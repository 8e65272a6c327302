"""`make bench`: the service, a bare Flask app and a minimal stateful sample, side by side.

    .venv/bin/python -m scripts.bench [--seconds 10] [--rounds 2] [--connections 16,64]
        [--instances 1|2] [--json tests/artifacts/bench.json] [--worker-class gthread]

On PostgreSQL + Redis when IVR_BENCH_DATABASE_URL / IVR_BENCH_REDIS_URL are set (a
scratch database is created on that server and dropped after; the Redis database is
cleared of the service's keys), else on the embedded defaults (SQLite + the in-process
Redis stand-in, one gunicorn worker). docs/capacity.md explains the output.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if not __package__:  # run as a file: make `scripts.bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scripts.bench import counting, launcher, report, seed
from scripts.bench.driver import RoundResult, Target, check_journeys, run_round
from scripts.bench.journeys import ACCOUNT_SID, Pools

PUBLIC_URL = "https://ivr.bench.invalid"  # what Twilio would request; only signed, never resolved
DEFAULT_JSON = launcher.ROOT / "tests" / "artifacts" / "bench.json"
# Each process's stderr (the service's log lines), kept after the run for a look.
LOGS = launcher.ROOT / "tests" / "artifacts" / "bench-logs"
# --instances 2: the service held to CPU 0, then two instances on CPUs 0 and 1.
ONE_CORE, TWO_CORES = "1 inst, 1 core", "2 inst, 2 cores"
REDIS_PREFIX = f"ivrbench{secrets.token_hex(3)}"  # this run's Redis keys
# Settings of the person running the bench that must not leak into the apps under test.
_OWN_PREFIXES = ("IVR_", "TWILIO_", "BENCH_")
_OWN_NAMES = ("DATABASE_URL", "REDIS_URL")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.bench", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="per round (default 10)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per target (default 2)")
    parser.add_argument("--connections", default="16,64", help="comma-separated (default 16,64)")
    parser.add_argument("--instances", type=int, choices=(1, 2), default=1)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write")
    parser.add_argument("--logs", type=Path, default=LOGS, help="where each process logs")
    parser.add_argument("--customers", type=int, default=9000, help="generated customers")
    parser.add_argument("--worker-class", help="instead of the Procfile's (sync, gevent...)")
    parser.add_argument("--workers", type=int, help="gunicorn workers (default: Procfile's)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds per target first")
    parser.add_argument("--count-calls", type=int, default=5, help="per shape, counting pass")
    parser.add_argument("--no-count", action="store_true", help="skip the counting pass")
    options = parser.parse_args(argv)
    options.connection_counts = [int(part) for part in options.connections.split(",") if part]
    return options


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def base_env() -> dict[str, str]:
    """This process's environment without any setting of the apps under test."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(_OWN_PREFIXES) and name not in _OWN_NAMES
    }


@contextlib.contextmanager
def database(workdir: Path) -> Iterator[str]:
    server = os.environ.get("IVR_BENCH_DATABASE_URL", "").strip()
    if server:
        with seed.scratch_database(server) as url:
            yield url
    else:
        yield f"sqlite:///{workdir / 'bench.sqlite3'}"


def _claimed(redis_url: str | None) -> contextlib.AbstractContextManager[None]:
    return seed.claimed_redis(redis_url) if redis_url else contextlib.nullcontext()


def jobs_redis_url() -> str | None:
    """The job queue's own Redis (IVR_BENCH_JOBS_REDIS_URL), needed beside a cluster."""
    return os.environ.get("IVR_BENCH_JOBS_REDIS_URL", "").strip() or None


def is_cluster_url(url: str | None) -> bool:
    from ivr.storage import kv

    return kv.is_cluster_url(url)


def _clear(redis_url: str | None) -> None:
    """Delete this run's keys (and the job queue's) where the bench put them."""
    for url in (redis_url, jobs_redis_url()):
        if url:
            seed.clear_redis(url, REDIS_PREFIX)


def main(argv: list[str] | None = None) -> None:
    options = parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm)
    try:
        result = bench(options)
    except KeyboardInterrupt:
        print("\ninterrupted: every process the bench started is stopped", file=sys.stderr)
        raise SystemExit(130) from None
    report.print_report(result)
    report.write_json(result, options.json)
    print(f"\nwritten: {options.json}")


def bench(options: argparse.Namespace) -> dict[str, Any]:
    redis_url = os.environ.get("IVR_BENCH_REDIS_URL", "").strip() or None
    on_services = bool(os.environ.get("IVR_BENCH_DATABASE_URL", "").strip()) and bool(redis_url)
    if options.instances == 2 and not on_services:
        raise SystemExit("--instances 2 needs IVR_BENCH_DATABASE_URL and IVR_BENCH_REDIS_URL")
    if options.instances == 2 and len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("--instances 2 needs two CPUs it may run on (one per instance)")
    if is_cluster_url(redis_url) and not jobs_redis_url():
        raise SystemExit(
            "IVR_BENCH_REDIS_URL names a Redis Cluster: set IVR_BENCH_JOBS_REDIS_URL to a "
            "single Redis for the job queue (RQ cannot use a cluster)"
        )
    with tempfile.TemporaryDirectory(prefix="ivr-bench-") as tmp:
        workdir = Path(tmp)
        options.logs.mkdir(parents=True, exist_ok=True)
        processes = launcher.Processes(options.logs)
        try:
            with (
                database(workdir) as database_url,
                _claimed(redis_url),
                _claimed(jobs_redis_url()),
            ):
                _clear(redis_url)
                try:
                    return _bench(options, processes, workdir, database_url, redis_url)
                finally:
                    processes.stop_all()
                    _clear(redis_url)
        finally:
            processes.stop_all()


def _bench(
    options: argparse.Namespace,
    processes: launcher.Processes,
    workdir: Path,
    database_url: str,
    redis_url: str | None,
) -> dict[str, Any]:
    production = redis_url is not None and not database_url.startswith("sqlite")
    # The in-process Redis stand-in lives in one process: one worker shares it.
    workers = options.workers or (None if redis_url else 1)
    auth_token = secrets.token_hex(16)
    env = base_env()

    double_port = launcher.free_port()
    double = processes.start(
        "twilio-double",
        [sys.executable, "-m", "scripts.bench.twilio_double", "--port", str(double_port)],
        env,
    )
    launcher.wait_until_answering(double, double_port, "/bench/count")

    service_env = {
        **env,
        "IVR_ENV": "production" if production else "development",
        "DATABASE_URL": database_url,
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": auth_token,
        "IVR_SECRET_KEY": secrets.token_hex(32),
        "IVR_PUBLIC_URL": PUBLIC_URL,
        "IVR_TWILIO_API_URL": f"http://127.0.0.1:{double_port}",
        "IVR_DELIVERY": "twilio",
        "IVR_REDIS_PREFIX": REDIS_PREFIX,
    }
    if redis_url:
        service_env["REDIS_URL"] = redis_url
    if jobs_redis_url():
        service_env["IVR_JOBS_REDIS_URL"] = jobs_redis_url() or ""
    backend = describe_backend(database_url, redis_url, production)
    print(f"bench on {backend}", flush=True)
    started = time.monotonic()
    seed.seed(service_env, workdir, options.customers)
    print(f"seeded {options.customers} customers in {time.monotonic() - started:.1f} s")

    ports: dict[str, tuple[int, ...]] = {}
    sample_env = {
        **env,
        "BENCH_AUTH_TOKEN": auth_token,
        "BENCH_PUBLIC_URL": PUBLIC_URL,
        "BENCH_KEY_PREFIX": REDIS_PREFIX,
    }
    if redis_url:
        sample_env["BENCH_REDIS_URL"] = redis_url
    apps: list[tuple[str, str, dict[str, str], set[int] | None]] = [
        ("bare", "scripts.bench.baselines:bare", env, None),
        ("sample", "scripts.bench.baselines:sample", sample_env, None),
    ]
    apps.append(("service1", "wsgi:app", service_env, None))
    if options.instances == 2:
        # Scale-out, measured where it can show: one instance held to one core, then two
        # instances with a core each (same PostgreSQL + Redis); the stores, the driver
        # and the jobs worker run on either core.
        first, second = sorted(os.sched_getaffinity(0))[:2]  # CPUs this run may use
        apps += [
            ("core0", "wsgi:app", service_env, {first}),
            ("core1", "wsgi:app", service_env, {second}),
        ]
    for name, app, app_env, cpus in apps:
        port = launcher.free_port()
        command = launcher.gunicorn_command(
            app, port, app_env, workers=workers, worker_class=options.worker_class
        )
        proc = processes.start(name, command, app_env, cpus=cpus)
        launcher.wait_until_answering(proc, port, "/healthz")
        ports[name] = (port,)
    if production:  # jobs run in the Procfile's worker: process, as in production
        ivr = str(Path(sys.executable).with_name("ivr"))
        processes.start("jobs-worker", [ivr, "jobs", "worker"], service_env)

    targets = [
        Target("bare", ports["bare"], live=False),
        Target("sample", ports["sample"], live=False),
        Target("service", ports["service1"], live=True),
    ]
    if options.instances == 2:
        targets += [
            Target(ONE_CORE, ports["core0"], live=True),
            Target(TWO_CORES, ports["core0"] + ports["core1"], live=True),
        ]

    pools = Pools(options.customers)
    common = {"auth_token": auth_token, "public_url": PUBLIC_URL, "double_port": double_port}
    problems = check_journeys(targets[2], **common, pools=pools)  # type: ignore[arg-type]
    if problems:
        raise SystemExit(
            "the service did not play the journeys: "
            + "; ".join(problems)
            + f" (the service's log: {options.logs / 'service1.log'})"
        )
    for target in targets:
        if options.warmup > 0:
            run_round(target, 4, options.warmup, **common, pools=pools)  # type: ignore[arg-type]

    results: dict[str, dict[str, Any]] = {}
    for connections in options.connection_counts:
        rounds: dict[str, list[RoundResult]] = {target.name: [] for target in targets}
        for number in range(options.rounds):
            for target in targets:
                done = run_round(target, connections, options.seconds, **common, pools=pools)  # type: ignore[arg-type]
                rounds[target.name].append(done)
                print(
                    f"  {connections:>3} connections, round {number + 1}: {target.name:<16}"
                    f" {done.rate:8.1f} webhooks/s, {done.errors} errors",
                    flush=True,
                )
        table = {name: report.summarise(found) for name, found in rounds.items()}
        results[str(connections)] = report.with_ratios(table)

    counted = None
    if not options.no_count:
        counted = counting.count(
            service_env,
            public_url=PUBLIC_URL,
            auth_token=auth_token,
            double_port=double_port,
            pools=pools,
            calls_per_shape=options.count_calls,
        )
    wrapped = [shape for shape, flag in pools.wrapped.items() if flag]
    worker_class = options.worker_class or _procfile_value("--worker-class")
    result: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "backend": {
            "description": backend,
            "database": "postgresql" if database_url.startswith("postgresql") else "sqlite",
            "redis": ("redis cluster" if is_cluster_url(redis_url) else "redis")
            if redis_url
            else "in-process stand-in",
            "env": service_env["IVR_ENV"],
        },
        "settings": {
            "seconds": options.seconds,
            "rounds": options.rounds,
            "connections": options.connection_counts,
            "instances": options.instances,
            "worker_class": worker_class,
            "workers": workers or int(env.get("WEB_CONCURRENCY") or _procfile_value("--workers")),
            # Only gthread workers run threads; sync serves one request at a time, gevent
            # one greenlet per connection.
            "threads": int(env.get("GUNICORN_THREADS") or _procfile_value("--threads"))
            if worker_class == "gthread"
            else None,
            "customers": options.customers,
            "pools_wrapped": wrapped,
        },
        "results": results,
        "scale_out": {count: report.scale_out(table) for count, table in results.items()},
        "costs": report.costs(counted),
    }
    result["goals"] = report.goals(result)
    return result


def _procfile_value(flag: str) -> str:
    words = launcher.procfile_web().split()
    value = words[words.index(flag) + 1]
    if value.startswith("${"):
        return value.split(":-", 1)[1].rstrip("}")
    return value


def describe_backend(database_url: str, redis_url: str | None, production: bool) -> str:
    database = "PostgreSQL" if database_url.startswith("postgresql") else "SQLite (embedded)"
    redis = "Redis" if redis_url else "the in-process Redis stand-in (one worker)"
    if is_cluster_url(redis_url):
        redis = "a Redis Cluster (jobs on their own Redis)"
    mode = "production settings, jobs worker" if production else "development settings"
    return f"{database} + {redis}, {mode}"


if __name__ == "__main__":
    main()
