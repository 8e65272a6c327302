"""Twilio's REST API on a local port, answering Messages and Calls create like Twilio.

The service reaches it through `IVR_TWILIO_API_URL` with the real `twilio` client.
Every create answers 201 with a fresh SID after `--delay` (2 ms: Twilio's own latency
is a few hundred ms, but the caller-facing part we measure is ours). The driver reads
back what was "sent" to play the other side of a journey: the code in the latest
text message to a number (`GET /bench/message?to=`) and the call placed to a number,
with its URLs (`GET /bench/call?to=`). Run as its own process so its threads never
share a GIL with the driver or the service:

    python -m scripts.bench.twilio_double --port 8901
"""

from __future__ import annotations

import argparse
import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

DEFAULT_DELAY = 0.002  # seconds before each create is answered


class Sent:
    """What the double was asked to create, latest per destination number."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: dict[str, dict[str, str]] = {}
        self.calls: dict[str, dict[str, str]] = {}
        self.counter = itertools.count(1)
        self.created = 0

    def create(self, kind: str, form: dict[str, str]) -> dict[str, str]:
        with self.lock:
            number = next(self.counter)
            self.created += 1
            sid = ("CA" if kind == "call" else "SM") + f"{number:032x}"
            record = {**form, "sid": sid}
            (self.calls if kind == "call" else self.messages)[form.get("To", "")] = record
        return record


def make_server(port: int, delay: float = DEFAULT_DELAY) -> ThreadingHTTPServer:
    """A threaded HTTP/1.1 server (keep-alive, like Twilio's API) on 127.0.0.1:`port`."""
    sent = Sent()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = parse_qs(self.rfile.read(length).decode(), keep_blank_values=True)
            form = {key: values[0] for key, values in raw.items()}
            path = urlsplit(self.path).path
            if path.endswith("/Calls.json"):
                kind = "call"
            elif path.endswith("/Messages.json"):
                kind = "message"
            else:
                self._reply(404, {"code": 20404, "message": "not found", "status": 404})
                return
            time.sleep(delay)
            record = sent.create(kind, form)
            account = path.split("/")[3] if path.count("/") >= 4 else ""
            self._reply(
                201,
                {
                    "sid": record["sid"],
                    "account_sid": account,
                    "to": form.get("To", ""),
                    "from": form.get("From", ""),
                    "status": "queued",
                    "api_version": "2010-04-01",
                },
            )

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            to = parse_qs(parts.query).get("to", [""])[0]
            with sent.lock:
                if parts.path == "/bench/message":
                    found = sent.messages.get(to)
                elif parts.path == "/bench/call":
                    found = sent.calls.get(to)
                elif parts.path == "/bench/count":
                    found = {"created": str(sent.created)}
                else:
                    found = None
            self._reply(200 if found else 404, found or {})

        def log_message(self, format: str, *args: Any) -> None:
            pass  # a line per request would cost more than the answer

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=DEFAULT_DELAY)
    options = parser.parse_args()
    server = make_server(options.port, options.delay)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
