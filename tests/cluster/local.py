"""A local 3-master Redis Cluster: three redis-server processes and `redis-cli --cluster
create`, in a directory of its own, on free ports, without persistence.

The cluster tests start one in a fixture; `.ci/run` and developers start one from the
shell, and it keeps running until stopped:

    url=$(.venv/bin/python tests/cluster/local.py start /tmp/ivr-cluster)
    IVR_TEST_REDIS_URL=$url IVR_TEST_JOBS_REDIS_URL=redis://127.0.0.1:6379/14 .venv/bin/pytest
    .venv/bin/python tests/cluster/local.py stop /tmp/ivr-cluster

`start` prints the cluster's `redis+cluster://` URL (the form REDIS_URL takes) and
writes the servers' process ids to `<dir>/pids`, which `stop` reads.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis

MASTERS = 3
READY_SECONDS = 20.0  # start, create and agree on the slot map: ~2 s on a 2-core machine


class ClusterError(RuntimeError):
    """The cluster could not be started."""


def binaries() -> tuple[str, str] | None:
    """redis-server and redis-cli, or None when either is missing."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    return (server, cli) if server and cli else None


def _free_ports(count: int) -> list[int]:
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        # The cluster bus listens on port + 10000: keep below 55536 so it stays valid.
        ports = [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()
    if any(port + 10000 > 65535 for port in ports):
        return _free_ports(count)
    return ports


class LocalCluster:
    """Three masters on 127.0.0.1 with every slot assigned, in `directory`."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.ports: list[int] = []
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def start(self) -> str:
        """Start the servers, create the cluster, wait for `cluster_state:ok`; the URL."""
        found = binaries()
        if found is None:
            raise ClusterError("redis-server and redis-cli are needed for a local Redis Cluster")
        server, cli = found
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ports = _free_ports(MASTERS)
        try:
            for port in self.ports:
                self.processes.append(self._server(server, port))
            for port in self.ports:
                _wait(lambda port=port: _client(port).ping(), f"redis-server on {port}")
            nodes = [f"127.0.0.1:{port}" for port in self.ports]
            create = [
                cli,
                "--cluster",
                "create",
                *nodes,
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ]
            created = subprocess.run(
                create,
                capture_output=True,
                text=True,
                timeout=READY_SECONDS,
            )
            if created.returncode != 0:
                raise ClusterError(f"redis-cli --cluster create failed: {created.stdout[-500:]}")
            for port in self.ports:
                _wait(lambda port=port: _state_ok(port), f"cluster_state:ok on {port}")
        except BaseException:
            self.stop()
            raise
        (self.directory / "pids").write_text(
            "".join(f"{process.pid}\n" for process in self.processes)
        )
        return self.url

    def _server(self, binary: str, port: int) -> subprocess.Popen[bytes]:
        node_dir = self.directory / str(port)
        node_dir.mkdir(exist_ok=True)
        with open(node_dir / "redis.log", "wb") as log:  # the server keeps its own copy
            return subprocess.Popen(
                [
                    binary,
                    "--bind", "127.0.0.1",
                    "--port", str(port),
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", str(node_dir / "nodes.conf"),
                    "--cluster-node-timeout", "2000",
                    "--save", "",
                    "--appendonly", "no",
                    "--dir", str(node_dir),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives `local.py start`; stopped by pid
            )  # fmt: skip

    def stop(self) -> None:
        """Stop every server this object started."""
        for process in self.processes:
            _terminate(process.pid)
            process.wait(timeout=10)
        self.processes = []


def stop_directory(directory: Path) -> None:
    """Stop the servers a `start` in `directory` left running (by the ids it wrote)."""
    pids = directory / "pids"
    if not pids.exists():
        return
    for line in pids.read_text().split():
        _terminate(int(line))
    pids.unlink()


def _terminate(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.kill(pid, signal.SIGTERM)


def _client(port: int) -> redis.Redis:
    return redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=1)


def _state_ok(port: int) -> bool:
    info = _client(port).cluster("info")  # parsed into a dict by redis-py
    return bool(info.get("cluster_state") == "ok")


def _wait(check: object, what: str) -> None:
    ends = time.monotonic() + READY_SECONDS
    while True:
        try:
            if check():  # type: ignore[operator]
                return
        except redis.exceptions.ConnectionError:
            pass
        if time.monotonic() > ends:
            raise ClusterError(f"timed out waiting for {what}")
        time.sleep(0.05)


def main(argv: list[str]) -> int:
    usage = "usage: local.py start|stop DIRECTORY"
    if len(argv) != 3 or argv[1] not in ("start", "stop"):
        print(usage, file=sys.stderr)
        return 2
    directory = Path(argv[2])
    if argv[1] == "stop":
        stop_directory(directory)
        return 0
    try:
        print(LocalCluster(directory).start())
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
