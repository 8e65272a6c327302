"""A private redis-server for the outage tests, on a free port of its own.

The tests pause it (SIGSTOP: the process holds its connections and answers nothing),
resume it (SIGCONT), stop it (the port refuses) and start it again on the same port.
The machine's shared Redis is never touched: other test runs use it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis

START_SECONDS = 10.0


def redis_server_binary() -> str | None:
    """Where redis-server is installed, or None."""
    return shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    """One redis-server process with no persistence, in `directory`."""

    def __init__(self, binary: str, directory: Path):
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.paused = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start on this server's port and wait until it answers PING."""
        self.process = subprocess.Popen(
            [
                self.binary,
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        probe = redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)
        ends = time.monotonic() + START_SECONDS
        try:
            while True:
                try:
                    if probe.ping():
                        return
                except redis.exceptions.ConnectionError:
                    if self.process.poll() is not None or time.monotonic() > ends:
                        raise
                    time.sleep(0.05)
        finally:
            probe.close()

    def pause(self) -> None:
        """SIGSTOP: connections stay open, the kernel still accepts, nothing answers."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)
        self.paused = False

    def stop(self) -> None:
        """Stop the server (resumed first if paused, so it can exit); the port then refuses."""
        if self.process is None:
            return
        if self.paused:
            self.resume()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None
