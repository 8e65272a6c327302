"""A TCP proxy in front of a server (PostgreSQL in the outage tests) that can pass,
stall or refuse, and drop every connection at once (a failover).

- pass: bytes flow both ways;
- stall: connections stay open and new ones are accepted, but nothing is forwarded
  (what arrives is held): a server, or a network path, that stopped answering without
  closing anything — the case only a client-side deadline can bound;
- refuse: nothing listens on the port any more and open connections are reset: a
  server that is down;
- drop: every open connection is closed, new ones pass: a restart or a failover.

One thread accepts; each connection has a thread per direction. Threads are daemons
and every socket is shut down on `close`, so a test that fails mid-stall does not hang.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress


class TcpProxy:
    """Listens on 127.0.0.1 (a free port) and forwards to `upstream`."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self._lock = threading.Lock()
        self._flowing = threading.Event()
        self._flowing.set()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._closed = False
        self.port = self._listen(0)

    # --- modes -------------------------------------------------------------------------

    def passthrough(self) -> None:
        """Forward again (listening again if refusing); held bytes go on their way."""
        if self._listener is None:
            self._listen(self.port)
        self._flowing.set()

    def stall(self) -> None:
        """Keep every connection open and accept new ones, but forward nothing."""
        self._flowing.clear()

    def refuse(self) -> None:
        """Stop listening and reset every open connection."""
        with self._lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            _shut(listener)
        self._drop(reset=True)

    def drop(self) -> None:
        """Close every open connection; new ones are forwarded as before."""
        self._drop(reset=False)

    def close(self) -> None:
        self._closed = True
        self.refuse()
        self._flowing.set()  # wake the threads holding bytes, so they see the end

    @contextmanager
    def stalled(self) -> Iterator[None]:
        self.stall()
        try:
            yield
        finally:
            self.passthrough()

    # --- machinery -----------------------------------------------------------------------

    def _listen(self, port: int) -> int:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(64)
        with self._lock:
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        bound: int = listener.getsockname()[1]
        return bound

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # shut down: refusing or closed
            self._track(client)
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        """Hold a connection made while stalled; forward once flowing."""
        while not self._flowing.wait(0.05):
            if client not in self._sockets:
                return
        if self._closed or client not in self._sockets:
            return
        try:
            upstream = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            self._forget(client)
            return
        upstream.settimeout(None)
        self._track(upstream)
        for source, target in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if data:
                while not self._flowing.wait(0.05):  # stalled: hold what arrived
                    if source not in self._sockets:
                        return
            if not data or self._closed or source not in self._sockets:
                self._forget(source)
                self._forget(target)
                return
            try:
                target.sendall(data)
            except OSError:
                self._forget(source)
                self._forget(target)
                return

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _forget(self, sock: socket.socket, *, reset: bool = False) -> None:
        with self._lock:
            known = sock in self._sockets
            self._sockets.discard(sock)
        if known:
            if reset:  # RST instead of FIN, as a host that went away
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            _shut(sock)

    def _drop(self, *, reset: bool) -> None:
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            self._forget(sock, reset=reset)


def _shut(sock: socket.socket) -> None:
    """Shut down (which wakes a thread blocked on it) and close."""
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
