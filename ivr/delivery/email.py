"""Email over SMTP (`IVR_SMTP_URL`), with TLS when the URL asks for it.

URL forms: `smtps://user:pass@host:465` (TLS from the first byte),
`smtp+starttls://user:pass@host:587` or any `smtp://…:587` (STARTTLS, refused to
go on in plain when the server does not offer it), `smtp://host:25` (plain, for
a local catcher). Server replies are not repeated in reasons: they often quote
the address. The whole conversation is bounded by the timeout (a watchdog cuts it),
and a server that goes silent once the message was handed over is reported as
"uncertain" (it may have taken it), never as a failure a retry would repeat.
"""

from __future__ import annotations

import contextlib
import logging
import smtplib
import socket
import ssl
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any
from urllib.parse import unquote, urlsplit

from ivr.delivery import DeliveryFailed, DeliveryUncertain, Outgoing
from ivr.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_PORTS = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}
STARTTLS_PORT = 587
# A local mail catcher may take a login in plain; nothing else may.
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


@dataclass(frozen=True)
class SmtpServer:
    """Where and how to connect, read from an `IVR_SMTP_URL`."""

    host: str
    port: int
    tls: str  # "implicit", "starttls" or "none"
    username: str | None
    password: str | None


def parse_smtp_url(url: str) -> SmtpServer:
    """Read an smtp://, smtp+starttls:// or smtps:// URL; raise ConfigError otherwise."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ConfigError(
            "IVR_SMTP_URL must start with smtp://, smtp+starttls:// or smtps://, "
            f"not {scheme + '://' if scheme else 'nothing'}"
        )
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        raise ConfigError("IVR_SMTP_URL has a port that is not a number") from None
    if not parts.hostname:
        raise ConfigError("IVR_SMTP_URL names no host")
    if scheme == "smtps":
        tls = "implicit"
    elif scheme == "smtp+starttls" or port == STARTTLS_PORT:
        tls = "starttls"
    else:
        tls = "none"
    if tls == "none" and parts.username and parts.hostname not in LOOPBACK_HOSTS:
        raise ConfigError(
            "IVR_SMTP_URL carries a password but no TLS: use smtps://, smtp+starttls:// or port 587"
        )
    return SmtpServer(
        host=parts.hostname,
        port=port,
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


class SmtpEmail:
    """The "email" channel: one SMTP connection per message, closed after it."""

    def __init__(
        self,
        url: str,
        from_address: str,
        timeout: float,
        *,
        ssl_context: ssl.SSLContext | None = None,
    ):
        self.server = parse_smtp_url(url)
        try:
            EmailMessage()["From"] = from_address
        except (ValueError, TypeError, IndexError):
            raise ConfigError("IVR_EMAIL_FROM is not a usable email address") from None
        self.from_address = from_address
        self.timeout = timeout
        # Certificates are checked against the system's CAs unless a context says otherwise.
        self.ssl_context = ssl_context or ssl.create_default_context()
        # Our EHLO name: the sender's domain, so smtplib never waits on a DNS lookup of ours.
        self.local_hostname = from_address.rpartition("@")[2] or "localhost"

    def build(self, message: Outgoing) -> EmailMessage:
        """The email for `message`; raise DeliveryFailed when a header value is unusable."""
        email = EmailMessage()
        try:
            email["From"] = self.from_address
            email["To"] = message.to
            email["Subject"] = message.subject
            email["Message-ID"] = make_msgid(domain=self.local_hostname)
        except (ValueError, TypeError, IndexError):
            # Raised for line breaks or malformed addresses (header injection attempts).
            raise DeliveryFailed("email", "the address is not a valid email address") from None
        email.set_content(message.body)
        return email

    def send(self, message: Outgoing) -> str:
        """Send through the SMTP server and return the Message-ID; raise DeliveryFailed,
        or DeliveryUncertain when the server went silent after the message was handed
        over (it may have taken it: a job must not send it again)."""
        email = self.build(message)
        try:
            self._deliver(email)
        except smtplib.SMTPException as exc:
            raise DeliveryFailed("email", _smtp_reason(exc)) from None
        except ssl.SSLError:
            raise DeliveryFailed("email", "TLS with the mail server failed") from None
        except TimeoutError:
            raise DeliveryFailed("email", "the mail server did not answer in time") from None
        except OSError as exc:
            raise DeliveryFailed(
                "email", f"could not reach the mail server ({type(exc).__name__})"
            ) from None
        log.info("email sent call_sid=%s", message.call_sid)
        return str(email["Message-ID"])

    def _deliver(self, email: EmailMessage) -> _Tracked:
        """The whole SMTP conversation, over by `timeout` from its start: a watchdog cuts
        the connection then, so a server answering each command slowly cannot hold a
        webhook (the caller waits) past it."""
        server = self.server
        smtp: _Tracked
        if server.tls == "implicit":
            smtp = _TrackedSSL(
                server.host,
                server.port,
                local_hostname=self.local_hostname,
                timeout=self.timeout,
                context=self.ssl_context,
            )
        else:
            smtp = _TrackedPlain(
                server.host, server.port, local_hostname=self.local_hostname, timeout=self.timeout
            )
        watchdog = threading.Timer(self.timeout, _cut, (smtp,))
        watchdog.daemon = True
        watchdog.start()
        try:
            with smtp:
                smtp.ehlo()
                if server.tls == "starttls":
                    if not smtp.has_extn("starttls"):
                        # Never fall back to plain when the URL asked for TLS.
                        raise DeliveryFailed("email", "the mail server does not offer STARTTLS")
                    smtp.starttls(context=self.ssl_context)
                    smtp.ehlo()
                if server.username:
                    smtp.login(server.username, server.password or "")
                try:
                    smtp.send_message(email)
                except smtplib.SMTPResponseException:
                    raise  # refused in words: not taken
                except OSError as exc:  # silence or a cut line (SMTPServerDisconnected too)
                    if smtp.handed_over:
                        raise DeliveryUncertain(
                            "email", "the mail server went silent after taking the message"
                        ) from exc
                    raise
        finally:
            watchdog.cancel()
        return smtp


class _Tracked(smtplib.SMTP):
    """An SMTP client that remembers whether the message itself was sent (DATA)."""

    handed_over = False

    def data(self, msg: Any) -> tuple[int, bytes]:
        self.handed_over = True
        return super().data(msg)


class _TrackedPlain(_Tracked):
    pass


class _TrackedSSL(_Tracked, smtplib.SMTP_SSL):
    pass


def _cut(smtp: smtplib.SMTP) -> None:
    """The watchdog: end the conversation now; whatever was waiting fails at once."""
    sock = getattr(smtp, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _smtp_reason(exc: smtplib.SMTPException) -> str:
    """Plain words for an SMTP failure, without the server's text (it may quote the address)."""
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return "the mail server does not support a step we need (AUTH or SMTPUTF8)"
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return "the mail server refused our login"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "the mail server refused the recipient"
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return "the mail server refused our sender address"
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        if isinstance(exc.__context__, TimeoutError):  # smtplib wraps a read timeout
            return "the mail server did not answer in time"
        return "the mail server closed the connection"
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"the mail server answered {exc.smtp_code}"
    return f"the mail server failed ({type(exc).__name__})"
