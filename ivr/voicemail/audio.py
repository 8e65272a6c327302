"""A recording's audio, fetched from Twilio for a signed-in agent.

Twilio's recording URLs need the account's credentials (HTTP basic auth), which never
go to a browser; so the agent page plays a message through its own endpoint, which
fetches `…/Recordings/RE….mp3` with the service's credentials and streams it on. The
URL is built from the recording's SID (which we checked when storing it) under the
configured Twilio API base (`IVR_TWILIO_API_URL`), never taken from a stored URL, so
the endpoint cannot be pointed anywhere else.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import requests

from ivr.config import Settings
from ivr.voicemail.store import RECORDING_SID

CHUNK = 64 * 1024
TIMEOUT = (3.05, 30.0)  # connect, read: an agent waits, but a slow Twilio must not hang a worker


class NoAudio(Exception):
    """The audio cannot be had: local development (nothing at Twilio), or Twilio refused."""


@dataclass
class Audio:
    chunks: Iterator[bytes]
    content_type: str
    length: str | None


def audio_url(settings: Settings, recording_sid: str) -> str:
    """Where Twilio serves the recording as MP3."""
    if not RECORDING_SID.fullmatch(recording_sid):
        raise NoAudio("not a recording SID")
    base = settings.twilio_api_url.rstrip("/")
    account = settings.twilio_account_sid
    return f"{base}/2010-04-01/Accounts/{account}/Recordings/{recording_sid}.mp3"


def fetch(settings: Settings, recording_sid: str) -> Audio:
    """The recording's audio, streamed from Twilio; NoAudio when there is none to get."""
    if settings.delivery != "twilio" or not settings.twilio_account_sid:
        raise NoAudio("no Twilio account in local development: the simulator records nothing")
    try:
        response = requests.get(
            audio_url(settings, recording_sid),
            auth=(settings.twilio_account_sid, settings.twilio_auth_token),
            stream=True,
            timeout=TIMEOUT,
        )
    except requests.RequestException as exc:
        raise NoAudio(f"Twilio did not answer: {type(exc).__name__}") from exc
    if response.status_code != 200:
        response.close()
        raise NoAudio(f"Twilio answered {response.status_code}")

    def chunks() -> Iterator[bytes]:
        try:
            yield from response.iter_content(CHUNK)
        finally:
            response.close()

    return Audio(
        chunks(),
        response.headers.get("Content-Type", "audio/mpeg"),
        response.headers.get("Content-Length"),
    )
