"""Contract test: what the service sends to Twilio matches Twilio's own OpenAPI description.

Prism (`@stoplight/prism-cli`) serves ../shared/twilio/twilio_api_v2010.json on
127.0.0.1 and validates every request against it: a request that breaks the
contract gets a 4xx (422 for a bad body or path, 401 without credentials), one
that keeps it gets the spec's example answer. The real `twilio` client reaches
it through `IVR_TWILIO_API_URL`, exactly as the service does.

Prism is found at .ci/node/node_modules/.bin/prism (preinstalled by CI), else
run through `npx`. Without either, or without the spec, the test skips with the
reason; when the CI variable is set, a missing Prism fails instead.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from twilio.rest import Client

from ivr.config import Settings
from ivr.delivery import DeliveryFailed, Outgoing
from ivr.delivery.sms import TwilioSms
from ivr.delivery.twilio_client import close, make_client

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SPEC = PROJECT_ROOT.parent / "shared" / "twilio" / "twilio_api_v2010.json"
LOCAL_PRISM = PROJECT_ROOT / ".ci" / "node" / "node_modules" / ".bin" / "prism"
PRISM_PACKAGE = "@stoplight/prism-cli@5"
START_LIMIT = 120.0  # seconds; npx may have to fetch Prism first
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
SUPPORT = "+15005550006"
MESSAGES = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"


def _unavailable(reason: str) -> NoReturn:
    """Skip on a developer's machine; in CI the contract test must run, so fail."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so the Twilio contract test may not skip)")
    pytest.skip(reason)


def _prism_command(port: int) -> list[str] | None:
    arguments = ["mock", "-h", "127.0.0.1", "-p", str(port), str(SPEC)]
    if LOCAL_PRISM.exists() and shutil.which("node"):
        return [str(LOCAL_PRISM), *arguments]
    npx = shutil.which("npx")
    if npx and shutil.which("node"):
        return [npx, "--yes", PRISM_PACKAGE, *arguments]
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers(url: str) -> bool:
    """True once anything answers HTTP at `url` (Prism says 404 for `/`)."""
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop Prism and whatever npx started under it (its own process group)."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def prism(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a Prism mock of Twilio's 2010-04-01 API, for the whole run."""
    if not SPEC.exists():
        pytest.skip(f"Twilio's OpenAPI description is not at {SPEC}")
    port = _free_port()
    command = _prism_command(port)
    if command is None:
        _unavailable(f"Prism needs node and npx (or {LOCAL_PRISM}); neither was found")
    log_path = tmp_path_factory.mktemp("prism") / "prism.log"
    url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + START_LIMIT
        while not _answers(url):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-2000:]
                _unavailable(f"Prism did not start ({' '.join(command[:3])}):\n{tail}")
            time.sleep(0.25)  # bounded polling while Prism starts (about 20 s at worst)
        yield url
    finally:
        _stop(process)


@pytest.fixture
def client(prism: str, tmp_path: Path) -> Iterator[Client]:
    """The service's own twilio client, pointed at Prism through IVR_TWILIO_API_URL."""
    settings = Settings.from_env(
        {
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": "contract-test-token",
            "IVR_TWILIO_API_URL": prism,
            "IVR_SUPPORT_NUMBER": SUPPORT,
        },
        instance_path=tmp_path,
    )
    twilio = make_client(settings)
    yield twilio
    close(twilio)


def test_sms_request_meets_twilios_contract(client: Client) -> None:
    sms = TwilioSms(client, SUPPORT)
    sid = sms.send(Outgoing("sms", "+14155550100", "Your code is 482913.", purpose="verify"))
    assert re.fullmatch(r"SM[0-9a-fA-F]{32}", sid), sid


def test_prism_rejects_a_message_without_to(client: Client) -> None:
    """The guard that makes the test above able to fail: Prism does validate bodies."""
    response = client.request("POST", MESSAGES, data={"From": SUPPORT, "Body": "hello"})
    assert response.status_code == 422, response.text
    assert "'To'" in response.text


def test_prism_rejects_a_malformed_account_sid(client: Client) -> None:
    url = MESSAGES.replace(ACCOUNT_SID, "AC123")
    response = client.request("POST", url, data={"To": "+14155550100", "From": SUPPORT})
    assert response.status_code == 422, response.text


def test_sms_channel_reports_a_rejected_request_as_delivery_failed(
    client: Client,
) -> None:
    client.account_sid = "AC123"  # breaks the path pattern of the contract
    sms = TwilioSms(client, SUPPORT)
    with pytest.raises(DeliveryFailed, match=r"Twilio refused the request \(HTTP 422\)"):
        sms.send(Outgoing("sms", "+14155550100", "Your code is 482913."))
