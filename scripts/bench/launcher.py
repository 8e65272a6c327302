"""Starts the processes of a bench run, waits until each answers, and stops every one.

Web apps run under gunicorn exactly as the Procfile's `web:` line says (worker class,
workers, threads, timeouts, keep-alive, access log), with only the app, the port and
the settings the bench chooses (worker count, optionally the worker class) replaced.
Every process starts in a session of its own and is stopped by its process group, so
gunicorn's workers go with their arbiter, including on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROCFILE = ROOT / "Procfile"
STARTUP_TIMEOUT = 60.0  # seconds for a process to answer its first request
STOP_TIMEOUT = 10.0  # seconds after SIGTERM before SIGKILL (the graceful timeout)

_DEFAULTED = re.compile(r"\$\{(\w+):-([^}]*)\}|\$(\w+)")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def procfile_web(procfile: Path = PROCFILE) -> str:
    """The command of the Procfile's `web:` process."""
    for line in procfile.read_text(encoding="utf-8").splitlines():
        if line.startswith("web:"):
            return line.removeprefix("web:").strip()
    raise SystemExit(f"{procfile} has no web: process")


def gunicorn_command(
    app: str,
    port: int,
    env: Mapping[str, str],
    *,
    workers: int | None = None,
    worker_class: str | None = None,
) -> list[str]:
    """The Procfile's web command for `app` on 127.0.0.1:`port`, its variables expanded
    from `env`; `workers` and `worker_class` replace the Procfile's when given."""
    values = {**env, "PORT": str(port)}

    def expand(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        default = match.group(2) or ""
        return values.get(name) or default

    words = shlex.split(_DEFAULTED.sub(expand, procfile_web()))
    if words[0] != "gunicorn":
        raise SystemExit("the Procfile's web: process is not gunicorn; the bench needs it")
    words = [app if word == "wsgi:app" else word for word in words]
    words = [f"127.0.0.1:{port}" if word == f"0.0.0.0:{port}" else word for word in words]
    for flag, value in (("--workers", workers), ("--worker-class", worker_class)):
        if value is not None:
            if flag in words:
                words[words.index(flag) + 1] = str(value)
            else:
                words += [flag, str(value)]
    return [str(Path(sys.executable).with_name("gunicorn")), *words[1:]]


@dataclass
class Started:
    name: str
    process: subprocess.Popen[bytes]
    log: Path


class Processes:
    """The processes of one run; `stop_all` ends every one of them (idempotent)."""

    def __init__(self, logs: Path):
        self.logs = logs
        self.started: list[Started] = []

    def start(
        self,
        name: str,
        command: list[str],
        env: Mapping[str, str],
        *,
        cpus: set[int] | None = None,
    ) -> Started:
        """Start `command`; with `cpus`, it and every process it forks run on those CPUs
        only (set before it runs, so gunicorn's workers inherit it)."""
        log = self.logs / f"{name}.log"
        with log.open("wb") as out:  # this run's lines only
            process = subprocess.Popen(
                command,
                preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
                cwd=ROOT,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,  # the access log: gunicorn writes it, nobody reads it
                stderr=out,
                start_new_session=True,
            )
        started = Started(name, process, log)
        self.started.append(started)
        return started

    def stop_all(self) -> None:
        for started in self.started:
            if started.process.poll() is None:
                _signal_group(started.process, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for started in self.started:
            try:
                started.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(started.process, signal.SIGKILL)
                started.process.wait(timeout=5)
        self.started.clear()


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


def wait_until_answering(started: Started, port: int, path: str, method: str = "GET") -> None:
    """Poll until the server on `port` answers `path` (any status); fail with its log."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if started.process.poll() is not None:
            break
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            connection.request(method, path)
            connection.getresponse().read()
            return
        except OSError:
            time.sleep(0.1)
        finally:
            connection.close()
    tail = started.log.read_text(encoding="utf-8", errors="replace")[-3000:]
    raise SystemExit(f"{started.name} did not start (log {started.log}):\n{tail}")
