"""The real `twilio` REST client, pointed at `IVR_TWILIO_API_URL` and bounded in time.

twilio-python has no base-URL setting; its documented extension point is a
`TwilioHttpClient` subclass, so this one rewrites the Twilio API host of every
request to the configured base URL (a Prism mock, a Twilio-compatible API) and
gives each request a timeout.

Two timeouts. On the webhook path a caller is listening: Twilio waits 15 s for our
answer, security.md budgets well under 1 s at p99, and a Twilio that hangs must not
hold a webhook past 2 s (issue 11). Twilio answers `messages.create` and
`calls.create` in a few hundred milliseconds, so 1.5 s per connect and per read is
generous, and a timeout costs little: a request that reached Twilio and got no
answer is "uncertain" (DeliveryUncertain), the code stays valid and the caller hears
it may take a moment. Background jobs have nobody waiting and use 10 s.
"""

from __future__ import annotations

import re

from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from ivr.config import Settings

TWILIO_API_URL = "https://api.twilio.com"

# Seconds per connect and per read while a caller waits (the webhook path) ...
DEFAULT_TIMEOUT = 1.5
# ... and in background jobs (notices, the after-call call-back), where nobody waits.
JOB_TIMEOUT = 10.0

# api.twilio.com, or api.<edge>.<region>.twilio.com when TWILIO_EDGE/TWILIO_REGION
# are set in the environment (the client reads them itself): both go to the override.
_TWILIO_API_PREFIX = re.compile(r"^https://api(?:\.[A-Za-z0-9-]+)*\.twilio\.com(?=/|$)")


class RebasedHttpClient(TwilioHttpClient):
    """A TwilioHttpClient that sends Twilio API requests to another base URL."""

    def __init__(self, base_url: str = TWILIO_API_URL, timeout: float = DEFAULT_TIMEOUT):
        super().__init__(timeout=timeout)
        self.base_url = base_url.rstrip("/")

    def rebase(self, url: str) -> str:
        """The URL to request instead of `url` (unchanged when no override is set)."""
        if self.base_url == TWILIO_API_URL:
            return url
        return _TWILIO_API_PREFIX.sub(lambda _: self.base_url, url, count=1)

    def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        """Send the request to the rebased URL, with the default timeout unless one is given."""
        return super().request(
            method,
            self.rebase(url),
            params=params,
            data=data,
            headers=headers,
            auth=auth,
            timeout=timeout,
            allow_redirects=allow_redirects,
        )


def make_client(settings: Settings, *, timeout: float = DEFAULT_TIMEOUT) -> Client:
    """A twilio REST client for the configured account, API base URL and timeout."""
    return Client(
        settings.twilio_account_sid,
        settings.twilio_auth_token,
        http_client=RebasedHttpClient(settings.twilio_api_url, timeout=timeout),
    )


def close(client: Client) -> None:
    """Close the client's pooled connections (tests and short-lived commands)."""
    http_client = client.http_client
    if isinstance(http_client, TwilioHttpClient) and http_client.session is not None:
        http_client.session.close()
