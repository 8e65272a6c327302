"""Delivery channels against real local servers: the outbox file, an SMTP sink, a fake Twilio API.

Nothing here leaves 127.0.0.1. The SMTP sink and the fake Twilio API are small
servers started in the test; the real `smtplib` and the real `twilio` client
talk to them over sockets. Outbound calls (the Dialer) go the same way: to the
outbox, or through the real client to the fake Twilio API.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import socketserver
import ssl
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from flask import Flask
from twilio.rest import Client

from ivr.config import Settings
from ivr.delivery import DeliveryFailed, DeliveryUncertain, Outgoing, OutgoingCall, outbox, registry
from ivr.delivery.calls import TwilioCalls
from ivr.delivery.email import SmtpEmail, SmtpServer, parse_smtp_url
from ivr.delivery.outbox import Outbox
from ivr.delivery.sms import TwilioDeliveryFailed, TwilioSms
from ivr.delivery.twilio_client import (
    DEFAULT_TIMEOUT,
    JOB_TIMEOUT,
    RebasedHttpClient,
    close,
    make_client,
)
from ivr.errors import ConfigError

NUMBER = "+14155550100"
ADDRESS = "ann@example.com"
SID = "AC" + "1" * 32
SUPPORT = "+15005550006"
CODE_TEXT = "Your code is 482913. It is valid for 5 minutes."
AppFactory = Callable[..., Flask]
SinkFactory = Callable[..., "SmtpSink"]
SmsFactory = Callable[..., TwilioSms]
CallsFactory = Callable[..., TwilioCalls]
ClientFactory = Callable[..., Client]
CALLED = "+14155550199"
# Webhook URLs of an outbound call carry only an opaque id (no number, no code).
CALLBACK_ID = "Qx7TmWvRkZpYsNhBq3LdFe_w"
ANSWER_URL = f"https://ivr.example.test/voice/callback/answer?o={CALLBACK_ID}"
STATUS_URL = f"https://ivr.example.test/voice/callback/status?o={CALLBACK_ID}"
SMS_KEYS = {"id", "at", "channel", "to", "subject", "body", "call_sid", "purpose"}
SERVER_POLL = 0.05  # how often serve_forever checks for shutdown (its default waits 0.5 s)


# ---------------------------------------------------------------- outbox


def test_outbox_stores_each_message_as_one_private_json_line(tmp_path: Path) -> None:
    path = tmp_path / "dev" / "outbox.jsonl"  # the folder does not exist yet
    box = Outbox(path)
    sms_id = box.send(Outgoing("sms", NUMBER, CODE_TEXT, call_sid="CA1", purpose="verify"))
    email_id = box.send(Outgoing("email", ADDRESS, "Your code is 111222.", subject="Your code"))

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["id"] for line in lines] == [sms_id, email_id]
    first = json.loads(lines[0])
    assert first["channel"] == "sms"
    assert first["to"] == NUMBER
    assert first["body"] == CODE_TEXT
    assert first["call_sid"] == "CA1"
    assert first["purpose"] == "verify"
    assert first["at"].endswith("+00:00")
    assert set(first) == SMS_KEYS


def outbound_call(to: str = CALLED, ring_seconds: int = 30) -> OutgoingCall:
    return OutgoingCall(
        to=to,
        url=ANSWER_URL,
        status_callback=STATUS_URL,
        ring_seconds=ring_seconds,
        call_sid="CA5",
        purpose="verify",
    )


def test_outbox_place_stores_a_call_as_one_private_json_line_without_body(tmp_path: Path) -> None:
    path = tmp_path / "dev" / "outbox.jsonl"
    call_id = Outbox(path).place(outbound_call())

    assert re.fullmatch(r"CA[0-9a-f]{32}", call_id), call_id
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    [line] = path.read_text(encoding="utf-8").splitlines()
    stored = json.loads(line)
    assert stored["id"] == call_id
    assert stored["channel"] == "call"
    assert stored["to"] == CALLED
    assert stored["url"] == ANSWER_URL
    assert stored["status_callback"] == STATUS_URL
    assert stored["ring_seconds"] == 30
    assert stored["call_sid"] == "CA5"
    assert stored["purpose"] == "verify"
    assert (stored["body"], stored["subject"]) == ("", "")  # what it says comes from the webhook
    assert set(stored) == SMS_KEYS | {"url", "status_callback", "ring_seconds"}


def test_outbox_messages_keep_their_shape_beside_calls(tmp_path: Path) -> None:
    path = tmp_path / "outbox.jsonl"
    box = Outbox(path)
    box.send(Outgoing("sms", NUMBER, "before", purpose="verify"))
    box.place(outbound_call())
    box.send(Outgoing("email", ADDRESS, "after", subject="Your code"))

    shapes = [set(json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines()]
    assert shapes[0] == shapes[2] == SMS_KEYS  # no url, status_callback or ring_seconds
    assert "ring_seconds" in shapes[1]
    sms, call, email = outbox.read(path)  # old and new lines read back alike
    assert (sms.channel, sms.body, sms.url, sms.ring_seconds) == ("sms", "before", "", 0)
    assert (call.channel, call.url, call.ring_seconds) == ("call", ANSWER_URL, 30)
    assert (email.channel, email.body) == ("email", "after")
    assert [m.channel for m in outbox.read(path, to=CALLED)] == ["call"]


def test_outbox_tightens_a_file_created_with_a_looser_mode(tmp_path: Path) -> None:
    path = tmp_path / "outbox.jsonl"
    path.touch(mode=0o644)
    os.chmod(path, 0o644)
    Outbox(path).send(Outgoing("sms", NUMBER, CODE_TEXT))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_outbox_read_filters_by_recipient_and_keeps_the_newest(tmp_path: Path) -> None:
    path = tmp_path / "outbox.jsonl"
    box = Outbox(path)
    for n in range(3):
        box.send(Outgoing("sms", NUMBER, f"sms {n}"))
        box.send(Outgoing("email", ADDRESS, f"email {n}"))

    assert [m.body for m in outbox.read(path)] == [
        "sms 0",
        "email 0",
        "sms 1",
        "email 1",
        "sms 2",
        "email 2",
    ]
    assert [m.body for m in outbox.read(path, to=NUMBER)] == ["sms 0", "sms 1", "sms 2"]
    assert [m.body for m in outbox.read(path, to=NUMBER, limit=2)] == ["sms 1", "sms 2"]
    latest = outbox.latest_for(path, ADDRESS)
    assert latest is not None
    assert latest.body == "email 2"
    assert outbox.latest_for(path, "+14155550199") is None


def test_outbox_missing_file_reads_empty_and_clears_nothing(tmp_path: Path) -> None:
    path = tmp_path / "none.jsonl"
    assert outbox.read(path) == []
    assert outbox.latest_for(path, NUMBER) is None
    assert outbox.clear(path) == 0
    assert not path.exists()


def test_outbox_clear_empties_the_file_and_keeps_it_private(tmp_path: Path) -> None:
    path = tmp_path / "outbox.jsonl"
    box = Outbox(path)
    box.send(Outgoing("sms", NUMBER, "one"))
    box.send(Outgoing("sms", NUMBER, "two"))
    assert outbox.clear(path) == 2
    assert outbox.read(path) == []
    assert path.stat().st_size == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    box.send(Outgoing("sms", NUMBER, "three"))
    assert [m.body for m in outbox.read(path)] == ["three"]


WRITER = """
import sys
from ivr.delivery import Outgoing
from ivr.delivery.outbox import Outbox

box = Outbox(sys.argv[1])
name, count = sys.argv[2], int(sys.argv[3])
print("ready", flush=True)
sys.stdin.readline()  # the test releases both writers together
for n in range(count):
    box.send(Outgoing("sms", "+14155550100", name * 70000 + str(n), purpose=name))
"""


def test_two_processes_append_to_the_outbox_without_mixing_lines(tmp_path: Path) -> None:
    path = tmp_path / "outbox.jsonl"
    count = 60
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), name, str(count)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    try:
        for writer in writers:  # a barrier: both are running before either writes
            assert writer.stdout is not None
            assert writer.stdout.readline().strip() == "ready"
        for writer in writers:
            assert writer.stdin is not None
            writer.stdin.write("go\n")
            writer.stdin.close()
        for writer in writers:
            assert writer.wait(timeout=60) == 0
    finally:
        for writer in writers:
            if writer.poll() is None:
                writer.kill()
                writer.wait()
            if writer.stdout is not None:
                writer.stdout.close()

    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 * count
    messages = outbox.read(path)  # every line parses
    assert len(messages) == 2 * count
    for name in ("a", "b"):
        bodies = [m.body for m in messages if m.purpose == name]
        assert bodies == [name * 70000 + str(n) for n in range(count)]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# ---------------------------------------------------------------- registry


@pytest.mark.parametrize(
    ("env", "sms_type", "email_type"),
    [
        ({"IVR_DELIVERY": "outbox"}, Outbox, Outbox),
        ({"IVR_DELIVERY": "twilio", "TWILIO_ACCOUNT_SID": SID}, TwilioSms, None),
        (
            {
                "IVR_DELIVERY": "twilio",
                "TWILIO_ACCOUNT_SID": SID,
                "IVR_SMTP_URL": "smtps://mailer:secret@mail.example.test",
            },
            TwilioSms,
            SmtpEmail,
        ),
        ({"IVR_DELIVERY": "outbox", "IVR_SMTP_URL": "smtp://127.0.0.1:1025"}, Outbox, SmtpEmail),
        ({}, Outbox, Outbox),  # no Twilio account: the embedded default
    ],
    ids=["outbox", "twilio-no-email", "twilio-smtp", "outbox-smtp", "default"],
)
def test_registry_picks_channels_from_settings(
    make_app: AppFactory,
    tmp_path: Path,
    env: dict[str, str],
    sms_type: type,
    email_type: type | None,
) -> None:
    app: Flask = make_app(IVR_OUTBOX_PATH=str(tmp_path / "box.jsonl"), **env)
    with app.app_context():
        found = registry.get()
    assert type(found["sms"]) is sms_type
    if email_type is None:
        assert "email" not in found
    else:
        assert type(found["email"]) is email_type
    for channel in found.values():
        if isinstance(channel, Outbox):
            assert channel.path == tmp_path / "box.jsonl"


def test_registry_twilio_sms_uses_the_support_number_and_api_url(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "TWILIO_ACCOUNT_SID": SID,
            "IVR_SUPPORT_NUMBER": "+15005550009",
            "IVR_TWILIO_API_URL": "http://127.0.0.1:4010/",
        },
        instance_path=tmp_path,
    )
    sms = registry.channels(settings)["sms"]
    assert isinstance(sms, TwilioSms)
    assert sms.from_number == "+15005550009"
    http_client = sms.client.http_client
    assert isinstance(http_client, RebasedHttpClient)
    assert http_client.base_url == "http://127.0.0.1:4010"
    assert http_client.timeout == DEFAULT_TIMEOUT


def test_twilio_requests_wait_briefly_on_the_webhook_and_longer_in_jobs(tmp_path: Path) -> None:
    """A caller is waiting on the webhook: one connect and one read stay under the 2 s
    an outage may take (issue 11); a job has nobody waiting and gets longer."""
    settings = Settings.from_env(
        {"TWILIO_ACCOUNT_SID": SID, "IVR_TWILIO_API_URL": "http://127.0.0.1:4010/"},
        instance_path=tmp_path,
    )
    timeouts = {}
    for background in (False, True):
        sms = registry.channels(settings, background=background)["sms"]
        dialer = registry.dialer(settings, background=background)
        assert isinstance(sms, TwilioSms) and isinstance(dialer, TwilioCalls)
        sms_http, call_http = sms.client.http_client, dialer.client.http_client
        assert isinstance(sms_http, RebasedHttpClient) and isinstance(call_http, RebasedHttpClient)
        assert sms_http.timeout == call_http.timeout
        timeouts[background] = sms_http.timeout
    assert timeouts == {False: DEFAULT_TIMEOUT, True: JOB_TIMEOUT}
    assert DEFAULT_TIMEOUT < 2.0 < JOB_TIMEOUT


@pytest.mark.parametrize(
    ("env", "dialer_type"),
    [
        ({"IVR_DELIVERY": "outbox"}, Outbox),
        ({"IVR_DELIVERY": "outbox", "TWILIO_ACCOUNT_SID": SID}, Outbox),
        ({"IVR_DELIVERY": "twilio", "TWILIO_ACCOUNT_SID": SID}, TwilioCalls),
        ({"TWILIO_ACCOUNT_SID": SID}, TwilioCalls),  # an account and no choice: Twilio
        ({}, Outbox),  # the embedded default
    ],
    ids=["outbox", "outbox-with-account", "twilio", "account-only", "default"],
)
def test_registry_dialer_follows_ivr_delivery(
    make_app: AppFactory, tmp_path: Path, env: dict[str, str], dialer_type: type
) -> None:
    settings = Settings.from_env(
        {"IVR_OUTBOX_PATH": str(tmp_path / "box.jsonl"), **env}, instance_path=tmp_path
    )
    dialer = registry.dialer(settings)
    assert type(dialer) is dialer_type
    if isinstance(dialer, Outbox):
        assert dialer.path == tmp_path / "box.jsonl"

    app: Flask = make_app(IVR_OUTBOX_PATH=str(tmp_path / "box.jsonl"), **env)
    with app.app_context():
        assert type(registry.get_dialer()) is dialer_type


def test_registry_twilio_dialer_uses_the_support_number_and_api_url(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "IVR_DELIVERY": "twilio",
            "TWILIO_ACCOUNT_SID": SID,
            "IVR_SUPPORT_NUMBER": "+15005550009",
            "IVR_TWILIO_API_URL": "http://127.0.0.1:4010/",
        },
        instance_path=tmp_path,
    )
    dialer = registry.dialer(settings)
    assert isinstance(dialer, TwilioCalls)
    assert dialer.from_number == "+15005550009"
    http_client = dialer.client.http_client
    assert isinstance(http_client, RebasedHttpClient)
    assert http_client.base_url == "http://127.0.0.1:4010"
    assert http_client.timeout == DEFAULT_TIMEOUT


def test_a_bad_smtp_url_stops_the_boot(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"IVR_SMTP_URL": "http://mail.example.test"}, instance_path=tmp_path
    )
    with pytest.raises(ConfigError, match="IVR_SMTP_URL must start with smtp://"):
        registry.channels(settings)


# ---------------------------------------------------------------- ivr outbox


def test_outbox_list_shows_masked_numbers_and_bodies(make_app: AppFactory, tmp_path: Path) -> None:
    app: Flask = make_app(IVR_OUTBOX_PATH=str(tmp_path / "box.jsonl"))
    runner = app.test_cli_runner()
    empty = runner.invoke(args=["outbox", "list"])
    assert empty.exit_code == 0, empty.output
    assert "The outbox is empty." in empty.output

    box = Outbox(tmp_path / "box.jsonl")
    box.send(Outgoing("sms", NUMBER, "first sms", purpose="verify"))
    box.send(Outgoing("email", ADDRESS, "the email\nsecond line", subject="Your code"))
    box.send(Outgoing("sms", NUMBER, CODE_TEXT, purpose="verify"))

    result = runner.invoke(args=["outbox", "list"])
    assert result.exit_code == 0, result.output
    assert NUMBER not in result.output
    assert "+1415•••0100" in result.output
    assert ADDRESS in result.output
    assert "    Subject: Your code" in result.output
    assert "    second line" in result.output
    assert result.output.index("first sms") < result.output.index(CODE_TEXT)  # newest last

    only_sms = runner.invoke(args=["outbox", "list", "--to", "(415) 555-0100", "--limit", "1"])
    assert only_sms.exit_code == 0, only_sms.output
    assert CODE_TEXT in only_sms.output
    assert "first sms" not in only_sms.output
    assert "the email" not in only_sms.output

    nobody = runner.invoke(args=["outbox", "list", "--to", "bob@example.com"])
    assert "No messages to that recipient." in nobody.output


def test_outbox_list_shows_an_outbound_call_readably(make_app: AppFactory, tmp_path: Path) -> None:
    app: Flask = make_app(IVR_OUTBOX_PATH=str(tmp_path / "box.jsonl"))
    box = Outbox(tmp_path / "box.jsonl")
    box.send(Outgoing("sms", NUMBER, CODE_TEXT, purpose="verify"))
    box.place(outbound_call(ring_seconds=30))

    result = app.test_cli_runner().invoke(args=["outbox", "list"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[-2].endswith("  call   +1415•••0199  verify")  # columns line up with "email"
    assert lines[-1] == "    rings 30 s, then fetches /voice/callback/answer"
    assert CALLED not in result.output
    assert CALLBACK_ID not in result.output  # the opaque id stays out of the listing
    assert lines[-3] == f"    {CODE_TEXT}"  # the SMS above it is shown as before

    only_calls = app.test_cli_runner().invoke(args=["outbox", "list", "--to", "415 555 0199"])
    assert only_calls.exit_code == 0, only_calls.output
    assert CODE_TEXT not in only_calls.output
    assert "rings 30 s" in only_calls.output


def test_outbox_clear_command_empties_it(make_app: AppFactory, tmp_path: Path) -> None:
    app: Flask = make_app(IVR_OUTBOX_PATH=str(tmp_path / "box.jsonl"))
    Outbox(tmp_path / "box.jsonl").send(Outgoing("sms", NUMBER, CODE_TEXT))
    runner = app.test_cli_runner()
    cleared = runner.invoke(args=["outbox", "clear"])
    assert cleared.exit_code == 0, cleared.output
    assert "Cleared 1 message(s)" in cleared.output
    assert outbox.read(tmp_path / "box.jsonl") == []
    assert "The outbox is empty." in runner.invoke(args=["outbox", "list"]).output


def test_outbox_list_warns_when_sms_and_calls_go_through_twilio(
    make_app: AppFactory, tmp_path: Path
) -> None:
    app: Flask = make_app(
        IVR_OUTBOX_PATH=str(tmp_path / "box.jsonl"), IVR_DELIVERY="twilio", TWILIO_ACCOUNT_SID=SID
    )
    result = app.test_cli_runner().invoke(args=["outbox", "list"])
    assert result.exit_code == 0
    assert (
        "IVR_DELIVERY is 'twilio'; SMS and outbound calls are not written to the outbox."
        in result.stderr
    )


def test_outbox_list_says_nothing_about_delivery_when_it_is_the_outbox(
    make_app: AppFactory, tmp_path: Path
) -> None:
    app: Flask = make_app(IVR_OUTBOX_PATH=str(tmp_path / "box.jsonl"), IVR_DELIVERY="outbox")
    result = app.test_cli_runner().invoke(args=["outbox", "list"])
    assert result.exit_code == 0
    assert "IVR_DELIVERY" not in result.stderr


# ---------------------------------------------------------------- SMTP


@dataclass
class Received:
    """One SMTP transaction the sink accepted."""

    mail_from: str
    recipients: list[str]
    data: bytes
    tls: bool
    login: tuple[str, str] | None


@dataclass
class SinkOptions:
    tls_context: ssl.SSLContext | None = None
    starttls: bool = False
    implicit_tls: bool = False
    credentials: tuple[str, str] | None = None
    refuse_recipients: bool = False
    reply_delay: float = 0.0  # seconds before each answer: a slow server
    silent_after_data: bool = False  # takes the message, never says so
    received: list[Received] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)


class SmtpHandler(socketserver.BaseRequestHandler):
    """Just enough of RFC 5321 (with STARTTLS and AUTH PLAIN) for smtplib."""

    server: SmtpSink

    def handle(self) -> None:
        options = self.server.options
        conn: socket.socket = self.request
        tls = False
        if options.implicit_tls:
            assert options.tls_context is not None
            conn = options.tls_context.wrap_socket(conn, server_side=True)
            tls = True
        reader = conn.makefile("rb")
        mail_from, recipients, login = "", [], None
        try:
            conn.sendall(b"220 sink.test ESMTP\r\n")
            while line := reader.readline():
                command = line.decode("utf-8", "replace").rstrip("\r\n")
                verb = command.split(" ", 1)[0].upper()
                options.commands.append(verb)
                time.sleep(options.reply_delay)
                if verb in ("EHLO", "HELO"):
                    extensions = ["sink.test"]
                    if options.starttls and not tls:
                        extensions.append("STARTTLS")
                    if options.credentials:
                        extensions.append("AUTH PLAIN")
                    extensions.append("8BITMIME")
                    reply = "".join(f"250-{e}\r\n" for e in extensions[:-1])
                    conn.sendall(f"{reply}250 {extensions[-1]}\r\n".encode())
                elif verb == "STARTTLS" and options.starttls and options.tls_context:
                    conn.sendall(b"220 go ahead\r\n")
                    reader.close()
                    conn = options.tls_context.wrap_socket(conn, server_side=True)
                    reader = conn.makefile("rb")
                    tls = True
                elif verb == "AUTH" and options.credentials:
                    raw = base64.b64decode(command.split()[2]).split(b"\0")
                    given = (raw[1].decode(), raw[2].decode())
                    if given == options.credentials:
                        login = given
                        conn.sendall(b"235 ok\r\n")
                    else:
                        conn.sendall(b"535 5.7.8 no\r\n")
                elif verb == "MAIL":
                    mail_from = command.split("<", 1)[1].split(">", 1)[0]
                    conn.sendall(b"250 ok\r\n")
                elif verb == "RCPT":
                    address = command.split("<", 1)[1].split(">", 1)[0]
                    if options.refuse_recipients:
                        conn.sendall(f"550 5.1.1 <{address}> no such user\r\n".encode())
                    else:
                        recipients.append(address)
                        conn.sendall(b"250 ok\r\n")
                elif verb == "DATA":
                    conn.sendall(b"354 go on\r\n")
                    data = b""
                    while (chunk := reader.readline()) not in (b".\r\n", b""):
                        data += chunk[1:] if chunk.startswith(b"..") else chunk
                    options.received.append(Received(mail_from, recipients, data, tls, login))
                    if options.silent_after_data:
                        time.sleep(5)  # (the client cuts the line long before)
                        break
                    conn.sendall(b"250 queued\r\n")
                elif verb == "QUIT":
                    conn.sendall(b"221 bye\r\n")
                    break
                else:
                    conn.sendall(b"502 not here\r\n")
        except (OSError, ssl.SSLError):
            pass  # the client gave up (a test of a failure): nothing to answer
        finally:
            reader.close()
            conn.close()


class SmtpSink(socketserver.ThreadingTCPServer):
    daemon_threads = True

    def __init__(self, options: SinkOptions):
        self.options = options
        super().__init__(("127.0.0.1", 0), SmtpHandler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


@pytest.fixture
def smtp_sink() -> Iterator[SinkFactory]:
    """Start SMTP sinks on 127.0.0.1 with the given options; stopped after the test."""
    started: list[SmtpSink] = []

    def start(**options: Any) -> SmtpSink:
        sink = SmtpSink(SinkOptions(**options))
        threading.Thread(target=sink.serve_forever, args=(SERVER_POLL,), daemon=True).start()
        started.append(sink)
        return sink

    yield start
    for sink in started:
        sink.shutdown()
        sink.server_close()


@dataclass(frozen=True)
class Certificate:
    server: ssl.SSLContext
    client: ssl.SSLContext


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A throwaway self-signed certificate for 127.0.0.1, and contexts on both sides."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(cert))
    return Certificate(server=server, client=client)


def code_email(to: str = ADDRESS) -> Outgoing:
    return Outgoing("email", to, CODE_TEXT, subject="Your verification code", call_sid="CA9")


def test_smtp_plain_delivers_the_message(smtp_sink: SinkFactory) -> None:
    sink = smtp_sink()
    mailer = SmtpEmail(f"smtp://127.0.0.1:{sink.port}", "Support <support@example.com>", 5)
    message_id = mailer.send(code_email())

    [received] = sink.options.received
    assert received.mail_from == "support@example.com"
    assert received.recipients == [ADDRESS]
    email = message_from_bytes(received.data, policy=policy.default)
    assert email["To"] == ADDRESS
    assert email["Subject"] == "Your verification code"
    assert email["Message-ID"] == message_id
    assert message_id.endswith("@example.com>")
    assert isinstance(email, EmailMessage)
    assert email.get_content().strip() == CODE_TEXT


def test_smtp_starttls_upgrades_before_login_and_mail(
    smtp_sink: SinkFactory, certificate: Certificate
) -> None:
    sink = smtp_sink(
        tls_context=certificate.server, starttls=True, credentials=("mailer", "p@ss:word")
    )
    mailer = SmtpEmail(
        f"smtp+starttls://mailer:p%40ss%3Aword@127.0.0.1:{sink.port}",
        "support@example.com",
        5,
        ssl_context=certificate.client,
    )
    mailer.send(code_email())
    [received] = sink.options.received
    assert received.tls
    assert received.login == ("mailer", "p@ss:word")
    assert sink.options.commands.index("STARTTLS") < sink.options.commands.index("AUTH")


def test_smtps_speaks_tls_from_the_first_byte(
    smtp_sink: SinkFactory, certificate: Certificate
) -> None:
    sink = smtp_sink(tls_context=certificate.server, implicit_tls=True)
    mailer = SmtpEmail(
        f"smtps://127.0.0.1:{sink.port}", "support@example.com", 5, ssl_context=certificate.client
    )
    mailer.send(code_email())
    [received] = sink.options.received
    assert received.tls


def test_smtp_never_falls_back_to_plain_when_starttls_is_missing(smtp_sink: SinkFactory) -> None:
    sink = smtp_sink(credentials=("mailer", "secret"))
    mailer = SmtpEmail(f"smtp+starttls://mailer:secret@127.0.0.1:{sink.port}", "s@example.com", 5)
    with pytest.raises(DeliveryFailed, match="does not offer STARTTLS"):
        mailer.send(code_email())
    assert "AUTH" not in sink.options.commands
    assert "MAIL" not in sink.options.commands
    assert sink.options.received == []


def test_smtps_against_a_plain_server_fails_as_tls(smtp_sink: SinkFactory) -> None:
    sink = smtp_sink()
    mailer = SmtpEmail(f"smtps://127.0.0.1:{sink.port}", "support@example.com", 5)
    with pytest.raises(DeliveryFailed, match="TLS with the mail server failed"):
        mailer.send(code_email())
    assert sink.options.received == []


def test_smtp_certificate_not_trusted_fails(
    smtp_sink: SinkFactory, certificate: Certificate
) -> None:
    sink = smtp_sink(tls_context=certificate.server, starttls=True)
    mailer = SmtpEmail(f"smtp+starttls://127.0.0.1:{sink.port}", "support@example.com", 5)
    with pytest.raises(DeliveryFailed, match="TLS with the mail server failed"):
        mailer.send(code_email())
    assert sink.options.received == []


def test_smtp_refused_recipient_is_a_plain_failure_without_the_address(
    smtp_sink: SinkFactory,
) -> None:
    sink = smtp_sink(refuse_recipients=True)
    mailer = SmtpEmail(f"smtp://127.0.0.1:{sink.port}", "support@example.com", 5)
    with pytest.raises(DeliveryFailed) as failure:
        mailer.send(code_email())
    assert failure.value.channel == "email"
    assert failure.value.reason == "the mail server refused the recipient"
    assert ADDRESS not in str(failure.value)


def test_smtp_wrong_password_is_a_plain_failure(
    smtp_sink: SinkFactory, certificate: Certificate
) -> None:
    sink = smtp_sink(tls_context=certificate.server, starttls=True, credentials=("mailer", "right"))
    mailer = SmtpEmail(
        f"smtp+starttls://mailer:wrong@127.0.0.1:{sink.port}",
        "support@example.com",
        5,
        ssl_context=certificate.client,
    )
    with pytest.raises(DeliveryFailed, match="refused our login"):
        mailer.send(code_email())
    assert sink.options.received == []


def test_smtp_header_injection_is_refused_before_connecting() -> None:
    mailer = SmtpEmail(f"smtp://127.0.0.1:{unused_port()}", "support@example.com", 5)
    with pytest.raises(DeliveryFailed, match="not a valid email address"):
        mailer.send(code_email(to=f"{ADDRESS}\r\nBcc: thief@example.net"))


def test_a_sender_address_that_cannot_be_a_header_stops_the_boot() -> None:
    with pytest.raises(ConfigError, match="IVR_EMAIL_FROM"):
        SmtpEmail("smtp://127.0.0.1:25", "support@example.com\nBcc: x@example.net", 5)


def test_smtp_server_down_is_a_plain_failure() -> None:
    mailer = SmtpEmail(f"smtp://127.0.0.1:{unused_port()}", "support@example.com", 5)
    with pytest.raises(DeliveryFailed, match=r"could not reach the mail server \(Connection"):
        mailer.send(code_email())


def test_a_slow_mail_server_costs_the_timeout_in_all(smtp_sink: SinkFactory) -> None:
    """Each answer within the per-step timeout, but the conversation longer than it: the
    caller's webhook must not wait for every step in turn."""
    sink = smtp_sink(reply_delay=0.3)  # each answer well within 0.5 s; all of them not
    mailer = SmtpEmail(f"smtp://127.0.0.1:{sink.port}", "support@example.com", 0.5)
    with pytest.raises(DeliveryFailed) as failed:
        mailer.send(code_email())
    assert not isinstance(failed.value, DeliveryUncertain)
    assert sink.options.received == []
    assert "DATA" not in sink.options.commands


def test_silence_after_the_message_is_uncertain_not_failed(smtp_sink: SinkFactory) -> None:
    """The server took the message and went quiet: it may deliver it, so a job must not
    send it again (DeliveryUncertain is never retried)."""
    sink = smtp_sink(silent_after_data=True)
    mailer = SmtpEmail(f"smtp://127.0.0.1:{sink.port}", "support@example.com", 0.5)
    with pytest.raises(DeliveryUncertain, match="went silent after taking the message"):
        mailer.send(code_email())
    assert len(sink.options.received) == 1


def test_smtp_server_that_never_answers_times_out(silent_port: int) -> None:
    mailer = SmtpEmail(f"smtp://127.0.0.1:{silent_port}", "support@example.com", 0.3)
    with pytest.raises(DeliveryFailed, match="did not answer in time"):
        mailer.send(code_email())


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://127.0.0.1:1025", SmtpServer("127.0.0.1", 1025, "none", None, None)),
        ("smtp://mail.example.test", SmtpServer("mail.example.test", 25, "none", None, None)),
        (
            "smtp://u:p@mail.example.test:587",
            SmtpServer("mail.example.test", 587, "starttls", "u", "p"),
        ),
        (
            "smtp+starttls://u:p@mail.example.test",
            SmtpServer("mail.example.test", 587, "starttls", "u", "p"),
        ),
        (
            "smtp+starttls://mail.example.test:2525",
            SmtpServer("mail.example.test", 2525, "starttls", None, None),
        ),
        (
            "smtps://u%40x:p%2Fq@mail.example.test",
            SmtpServer("mail.example.test", 465, "implicit", "u@x", "p/q"),
        ),
        (
            "SMTPS://mail.example.test:2465",
            SmtpServer("mail.example.test", 2465, "implicit", None, None),
        ),
        ("smtp://u:p@localhost:1025", SmtpServer("localhost", 1025, "none", "u", "p")),
    ],
)
def test_smtp_url_forms(url: str, expected: SmtpServer) -> None:
    assert parse_smtp_url(url) == expected


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://mail.example.test", "must start with smtp://"),
        ("mail.example.test:25", "must start with smtp://"),
        ("smtp://:25", "names no host"),
        ("smtp://mail.example.test:port", "port that is not a number"),
        ("smtp://u:p@mail.example.test:25", "password but no TLS"),
    ],
)
def test_smtp_url_problems_are_config_errors(url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        parse_smtp_url(url)


# ---------------------------------------------------------------- Twilio SMS


@dataclass
class SeenRequest:
    method: str
    path: str
    form: dict[str, list[str]]
    authorization: str | None


class FakeTwilio(ThreadingHTTPServer):
    """Answers every POST with `status` and `payload`, remembering what it was sent."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), FakeTwilioHandler)
        self.status = 201
        self.payload: dict[str, object] = {"sid": "SM" + "f" * 32, "status": "queued"}
        self.seen: list[SeenRequest] = []
        self.raw: bytes | None = None  # sent instead of the JSON payload when set

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class FakeTwilioHandler(BaseHTTPRequestHandler):
    server: FakeTwilio

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        form = parse_qs(self.rfile.read(length).decode())
        self.server.seen.append(
            SeenRequest("POST", self.path, form, self.headers.get("Authorization"))
        )
        body = self.server.raw or json.dumps(self.server.payload).encode()
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test asserts on what was seen."""


@pytest.fixture
def fake_twilio() -> Iterator[FakeTwilio]:
    server = FakeTwilio()
    threading.Thread(target=server.serve_forever, args=(SERVER_POLL,), daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield listener.getsockname()[1]


def unused_port() -> int:
    """A port nothing listens on (connection refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def twilio_settings(tmp_path: Path, api_url: str) -> Settings:
    return Settings.from_env(
        {
            "TWILIO_ACCOUNT_SID": SID,
            "TWILIO_AUTH_TOKEN": "test-token",
            "IVR_TWILIO_API_URL": api_url,
            "IVR_SUPPORT_NUMBER": SUPPORT,
        },
        instance_path=tmp_path,
    )


@pytest.fixture
def twilio_client(tmp_path: Path) -> Iterator[ClientFactory]:
    """Build the real client as the registry does, for an API URL; pools closed afterwards."""
    clients = []

    def build(api_url: str, timeout: float = DEFAULT_TIMEOUT) -> Client:
        client = make_client(twilio_settings(tmp_path, api_url), timeout=timeout)
        clients.append(client)
        return client

    yield build
    for client in clients:
        close(client)


@pytest.fixture
def sms_channel(twilio_client: ClientFactory) -> SmsFactory:
    """Build the SMS channel as the registry does, for an API URL."""

    def build(api_url: str, timeout: float = DEFAULT_TIMEOUT) -> TwilioSms:
        return TwilioSms(twilio_client(api_url, timeout), SUPPORT)

    return build


def code_sms() -> Outgoing:
    return Outgoing("sms", NUMBER, CODE_TEXT, call_sid="CA7", purpose="verify")


def test_sms_goes_through_the_real_client_to_the_configured_api(
    sms_channel: SmsFactory, fake_twilio: FakeTwilio
) -> None:
    sms = sms_channel(fake_twilio.url)
    assert sms.send(code_sms()) == "SM" + "f" * 32
    [seen] = fake_twilio.seen
    assert seen.path == f"/2010-04-01/Accounts/{SID}/Messages.json"
    assert seen.form == {"To": [NUMBER], "From": [SUPPORT], "Body": [CODE_TEXT]}
    expected = base64.b64encode(f"{SID}:test-token".encode()).decode()
    assert seen.authorization == f"Basic {expected}"


INVALID_NUMBER_ANSWERS = {
    "legacy": {
        "code": 21211,
        "message": f"The 'To' number {NUMBER} is not a valid phone number.",
        "more_info": "https://www.twilio.com/docs/errors/21211",
        "status": 400,
    },
    "rfc9457": {
        "type": "https://www.twilio.com/docs/errors/21211",
        "title": "Invalid 'To' Phone Number",
        "status": 400,
        "code": 21211,
        "detail": f"The 'To' number {NUMBER} is not a valid phone number.",
    },
}


@pytest.mark.parametrize("shape", sorted(INVALID_NUMBER_ANSWERS))
def test_twilio_error_becomes_a_plain_failure_without_number_or_body(
    sms_channel: SmsFactory, fake_twilio: FakeTwilio, caplog: pytest.LogCaptureFixture, shape: str
) -> None:
    fake_twilio.status = 400
    fake_twilio.payload = INVALID_NUMBER_ANSWERS[shape]
    caplog.set_level("DEBUG")
    sms = sms_channel(fake_twilio.url)
    with pytest.raises(TwilioDeliveryFailed) as failure:
        sms.send(code_sms())
    error = failure.value
    assert isinstance(error, DeliveryFailed)
    assert error.channel == "sms"
    assert (error.code, error.status) == (21211, 400)
    assert error.reason == "the number is not a valid phone number (Twilio error 21211)"
    assert error.__cause__ is None and error.__suppress_context__  # Twilio's text is dropped
    for text in (str(error), caplog.text):
        assert NUMBER not in text
        assert "482913" not in text


def test_twilio_error_without_a_code_names_the_http_status(
    sms_channel: SmsFactory, fake_twilio: FakeTwilio
) -> None:
    fake_twilio.status = 503
    fake_twilio.payload = {"message": "try later"}
    sms = sms_channel(fake_twilio.url)
    with pytest.raises(
        DeliveryFailed, match=r"^sms delivery failed: Twilio had a problem \(HTTP 503\)$"
    ):
        sms.send(code_sms())


@pytest.mark.parametrize(
    "raw",
    [b"<html>502 Bad Gateway</html>", b'["not", "a", "message"]', b'{"status": "queued"}'],
    ids=["html", "json-list", "no-sid"],
)
def test_twilio_answer_that_is_not_a_message_is_a_failure(
    sms_channel: SmsFactory, fake_twilio: FakeTwilio, raw: bytes
) -> None:
    fake_twilio.raw = raw
    sms = sms_channel(fake_twilio.url)
    with pytest.raises(DeliveryFailed, match="Twilio sent an answer we could not read"):
        sms.send(code_sms())


def test_twilio_that_never_answers_times_out(sms_channel: SmsFactory, silent_port: int) -> None:
    sms = sms_channel(f"http://127.0.0.1:{silent_port}", timeout=0.3)
    with pytest.raises(DeliveryFailed) as failure:
        sms.send(code_sms())
    assert failure.value.reason == "Twilio did not answer in time"
    # The request reached Twilio: the message may still go out.
    assert isinstance(failure.value, DeliveryUncertain)
    assert not failure.value.permanent
    assert NUMBER not in str(failure.value)


def test_twilio_unreachable_is_a_plain_failure(sms_channel: SmsFactory) -> None:
    sms = sms_channel(f"http://127.0.0.1:{unused_port()}")
    with pytest.raises(
        DeliveryFailed, match=r"could not reach Twilio \(ConnectionError\)"
    ) as failure:
        sms.send(code_sms())
    assert not isinstance(failure.value, DeliveryUncertain)  # nothing can go out


@pytest.mark.parametrize(
    ("status", "permanent"), [(400, True), (404, True), (429, False), (500, False), (503, False)]
)
def test_only_refusals_are_permanent(
    sms_channel: SmsFactory, fake_twilio: FakeTwilio, status: int, permanent: bool
) -> None:
    """A background job gives up at once on a refusal, and retries the rest."""
    fake_twilio.status = status
    fake_twilio.payload = {"message": "no"}
    with pytest.raises(TwilioDeliveryFailed) as failure:
        sms_channel(fake_twilio.url).send(code_sms())
    assert failure.value.permanent is permanent


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://api.twilio.com/2010-04-01/Accounts.json",
            "http://mock:4010/2010-04-01/Accounts.json",
        ),
        ("https://api.twilio.com", "http://mock:4010"),
        ("https://api.dublin.ie1.twilio.com/2010-04-01/x", "http://mock:4010/2010-04-01/x"),
        ("https://verify.twilio.com/v2/Services", "https://verify.twilio.com/v2/Services"),
        ("https://api.twilio.com.example.net/x", "https://api.twilio.com.example.net/x"),
    ],
)
def test_rebase_rewrites_only_the_twilio_api_host(url: str, expected: str) -> None:
    assert RebasedHttpClient("http://mock:4010/").rebase(url) == expected


def test_rebase_leaves_urls_alone_without_an_override() -> None:
    url = "https://api.dublin.ie1.twilio.com/2010-04-01/x"
    assert RebasedHttpClient().rebase(url) == url


# ---------------------------------------------------------------- Twilio calls

CALL_SID = "CA" + "e" * 32


@pytest.fixture
def dialer(twilio_client: ClientFactory) -> CallsFactory:
    """Build the Twilio dialer as the registry does, for an API URL."""

    def build(api_url: str, timeout: float = DEFAULT_TIMEOUT) -> TwilioCalls:
        return TwilioCalls(twilio_client(api_url, timeout), SUPPORT)

    return build


@pytest.fixture
def fake_twilio_calls(fake_twilio: FakeTwilio) -> FakeTwilio:
    """The fake Twilio API, answering as `calls.create` does."""
    fake_twilio.payload = {"sid": CALL_SID, "status": "queued"}
    return fake_twilio


def no_number_in(text: str) -> None:
    """Neither the called number nor its national digits appear in `text`."""
    assert CALLED not in text
    assert CALLED[2:] not in text


def test_call_goes_through_the_real_client_with_only_our_webhooks(
    dialer: CallsFactory, fake_twilio_calls: FakeTwilio, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    assert dialer(fake_twilio_calls.url).place(outbound_call(ring_seconds=25)) == CALL_SID

    [seen] = fake_twilio_calls.seen
    assert seen.path == f"/2010-04-01/Accounts/{SID}/Calls.json"
    assert seen.form == {
        "To": [CALLED],
        "From": [SUPPORT],
        "Url": [ANSWER_URL],
        "Method": ["POST"],
        "StatusCallback": [STATUS_URL],
        "StatusCallbackMethod": ["POST"],
        "Timeout": ["25"],
    }
    expected = base64.b64encode(f"{SID}:test-token".encode()).decode()
    assert seen.authorization == f"Basic {expected}"
    assert f"sid={CALL_SID}" in caplog.text
    assert "+1415•••0199" in caplog.text
    no_number_in(caplog.text)


CALL_ERROR_ANSWERS = {
    "geo-permission": (
        400,
        {
            "code": 21215,
            "message": f"Account not authorized to call {CALLED}. Perhaps you need to enable "
            "some international permissions: https://www.twilio.com/console/voice/calls/geo-permissions/low-risk",
            "more_info": "https://www.twilio.com/docs/errors/21215",
            "status": 400,
        },
        21215,
        "calling that country or region is not enabled (Twilio error 21215)",
    ),
    "geo-permission-rfc9457": (
        400,
        {
            "type": "https://www.twilio.com/docs/errors/21215",
            "title": "Geo Permission configuration is not permitting call",
            "status": 400,
            "code": 21215,
            "detail": f"Account not authorized to call {CALLED}.",
        },
        21215,
        "calling that country or region is not enabled (Twilio error 21215)",
    ),
    "invalid-number": (
        400,
        {
            "code": 13223,
            "message": f"Dial: Invalid phone number format {CALLED}",
            "more_info": "https://www.twilio.com/docs/errors/13223",
            "status": 400,
        },
        13223,
        "the number is not a valid phone number to call (Twilio error 13223)",
    ),
    "credentials": (
        401,
        {
            "code": 20003,
            "message": "Authenticate",
            "more_info": "https://www.twilio.com/docs/errors/20003",
            "status": 401,
        },
        20003,
        "Twilio refused our credentials (Twilio error 20003)",
    ),
    "unknown-code": (
        400,
        {"code": 21205, "message": f"Url is not a valid URL for {CALLED}", "status": 400},
        21205,
        "Twilio refused the request (Twilio error 21205)",
    ),
    "server-error": (
        500,
        {"message": f"Internal error placing a call to {CALLED}", "status": 500},
        None,
        "Twilio had a problem (HTTP 500)",
    ),
}


@pytest.mark.parametrize("answer", list(CALL_ERROR_ANSWERS))
def test_twilio_call_error_becomes_a_plain_failure_without_the_number(
    dialer: CallsFactory,
    fake_twilio_calls: FakeTwilio,
    caplog: pytest.LogCaptureFixture,
    answer: str,
) -> None:
    status, payload, code, reason = CALL_ERROR_ANSWERS[answer]
    fake_twilio_calls.status = status
    fake_twilio_calls.payload = payload
    caplog.set_level("DEBUG")
    with pytest.raises(TwilioDeliveryFailed) as failure:
        dialer(fake_twilio_calls.url).place(outbound_call())
    error = failure.value
    assert error.channel == "call"
    assert (error.code, error.status) == (code, status)
    assert error.reason == reason
    assert str(error) == f"call delivery failed: {reason}"
    assert error.__cause__ is None and error.__suppress_context__  # Twilio's text is dropped
    no_number_in(str(error))
    no_number_in(caplog.text)


@pytest.mark.parametrize(
    "raw",
    [
        b"<html><body>502 Bad Gateway</body></html>",
        b'["not", "a", "call"]',
        b'{"status": "queued", "to": "+14155550199"}',
        b'{"sid": null, "status": "queued"}',
        b'{"sid": "", "status": "queued"}',
    ],
    ids=["html", "json-list", "no-sid", "null-sid", "empty-sid"],
)
def test_twilio_call_answer_that_is_not_a_call_is_a_failure(
    dialer: CallsFactory, fake_twilio_calls: FakeTwilio, raw: bytes
) -> None:
    fake_twilio_calls.raw = raw
    with pytest.raises(DeliveryFailed) as failure:
        dialer(fake_twilio_calls.url).place(outbound_call())
    assert failure.value.channel == "call"
    assert failure.value.reason == "Twilio sent an answer we could not read"
    no_number_in(str(failure.value))


def test_twilio_that_never_answers_a_call_request_times_out(
    dialer: CallsFactory, silent_port: int
) -> None:
    with pytest.raises(DeliveryFailed) as failure:
        dialer(f"http://127.0.0.1:{silent_port}", timeout=0.3).place(outbound_call())
    assert failure.value.channel == "call"
    assert failure.value.reason == "Twilio did not answer in time"
    no_number_in(str(failure.value))


def test_twilio_unreachable_for_a_call_is_a_plain_failure(dialer: CallsFactory) -> None:
    with pytest.raises(
        DeliveryFailed, match=r"^call delivery failed: could not reach Twilio \(ConnectionError\)$"
    ):
        dialer(f"http://127.0.0.1:{unused_port()}").place(outbound_call())
