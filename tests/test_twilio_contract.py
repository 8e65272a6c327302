"""Contract test: what the service sends to Twilio matches Twilio's own OpenAPI description.

Prism (`@stoplight/prism-cli`) serves tests/twilio/twilio_api_v2010.json on
127.0.0.1 and validates every request against it: a request that breaks the
contract gets a 4xx (422 for a bad body or path, 401 without credentials), one
that keeps it gets the spec's example answer. The real `twilio` client reaches
it through `IVR_TWILIO_API_URL`, exactly as the service does.

Prism is found at .cache/node/node_modules/.bin/prism (`make test` installs it
there when npm is present), else run through `npx`. Without Node.js the Prism
tests skip with that reason on a developer's machine; when the CI variable is
set, a missing Prism fails instead.

Prism accepts parameters the spec does not declare and cannot see what a URL
means, so the outbound-call form is also checked here directly: against the
CreateCall request schema read from the spec (which needs no Prism), and for
webhook URLs that carry only an opaque id.
"""

from __future__ import annotations

import json
import logging
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
from typing import Any, NoReturn
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from twilio.http import HttpClient
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from ivr.config import Settings
from ivr.delivery import DeliveryFailed, Outgoing, OutgoingCall
from ivr.delivery.calls import TwilioCalls
from ivr.delivery.sms import TwilioSms
from ivr.delivery.twilio_client import close, make_client

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SPEC = Path(__file__).resolve().parent / "twilio" / "twilio_api_v2010.json"
LOCAL_PRISM = PROJECT_ROOT / ".cache" / "node" / "node_modules" / ".bin" / "prism"
PRISM_PACKAGE = "@stoplight/prism-cli@5"
START_LIMIT = 120.0  # seconds; npx may have to fetch Prism first
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
SUPPORT = "+15005550006"
MESSAGES = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
CALLS = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"
CREATE_CALL = ("post", "/2010-04-01/Accounts/{AccountSid}/Calls.json")
CALLED = "+14155550100"
CODE = "482913"  # a code the call is about; it must travel in no request
CALLBACK_ID = (
    "Qx7TmWvRkZpYsNhBq3LdFe_w"  # opaque, like ivr.calls.outbound makes them (token_urlsafe)
)
# Everything a call request may carry: what it says comes from our webhook, later.
CALL_PARAMETERS = {
    "To",
    "From",
    "Url",
    "Method",
    "StatusCallback",
    "StatusCallbackMethod",
    "Timeout",
}


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
    port = _free_port()
    command = _prism_command(port)
    if command is None:
        _unavailable(f"Prism needs Node.js: no node and npx, and no {LOCAL_PRISM}")
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


# ---------------------------------------------------------------- outbound calls


def outbound_call(url_base: str = "https://ivr.example.test") -> OutgoingCall:
    return OutgoingCall(
        to=CALLED,
        url=f"{url_base}/voice/callback/answer?o={CALLBACK_ID}",
        status_callback=f"{url_base}/voice/callback/status?o={CALLBACK_ID}",
        ring_seconds=30,
        call_sid="CA" + "7" * 32,
        purpose="verify",
    )


def form_of(request: requests.PreparedRequest) -> dict[str, list[str]]:
    """The form a request carried, as it went on the wire."""
    body = request.body or ""
    assert isinstance(body, str | bytes), type(body)
    text = body.decode() if isinstance(body, bytes) else body
    return parse_qs(text, keep_blank_values=True, strict_parsing=bool(text))


@pytest.fixture
def exchanges(client: Client) -> list[requests.Response]:
    """Every answer the service's client gets, with the request it sent (`.request`)."""
    recorded: list[requests.Response] = []

    def record(response: requests.Response, **_: object) -> None:
        recorded.append(response)

    http_client = client.http_client
    assert isinstance(http_client, TwilioHttpClient)
    http_client.request_hooks["response"].append(record)
    return recorded


class CannedTwilio(HttpClient):
    """An http client that answers every request as `calls.create` does, offline.

    Requests are prepared with `requests`, as TwilioHttpClient prepares them, so
    `sent` holds the form that would go on the wire.
    """

    def __init__(self) -> None:
        super().__init__(logging.getLogger(__name__), is_async=False)
        self.sent: list[requests.PreparedRequest] = []

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
        assert not params, params  # a create carries everything in its form
        prepared = requests.Request(
            method.upper(), url, data=data, headers=headers, auth=auth
        ).prepare()
        self.sent.append(prepared)
        return Response(201, json.dumps({"sid": "CA" + "c" * 32, "status": "queued"}))


@pytest.fixture(scope="module")
def create_call_schema() -> dict[str, Any]:
    """CreateCall's form schema, found in the spec by its operationId."""
    spec = json.loads(SPEC.read_text(encoding="utf-8"))
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if isinstance(operation, dict) and operation.get("operationId") == "CreateCall":
                assert (method, path) == CREATE_CALL
                content = operation["requestBody"]["content"]
                schema: dict[str, Any] = content["application/x-www-form-urlencoded"]["schema"]
                return schema
    pytest.fail(f"no CreateCall operation in {SPEC}")


def schema_problems(form: dict[str, list[str]], schema: dict[str, Any]) -> list[str]:
    """What in `form` breaks CreateCall's schema (and its documented Url-or-Twiml rule)."""
    properties: dict[str, Any] = schema["properties"]
    problems = [f"{name} is required" for name in schema.get("required", []) if name not in form]
    if not {"Url", "Twiml", "ApplicationSid"} & set(form):
        problems.append("Url (or Twiml) is required")
    for name, values in form.items():
        declared = properties.get(name)
        if declared is None:
            problems.append(f"{name} is not a CreateCall parameter")
            continue
        if len(values) != 1:
            problems.append(f"{name} is sent {len(values)} times")
        value = values[-1]
        if declared.get("type") == "integer" and not re.fullmatch(r"-?[0-9]+", value):
            problems.append(f"{name} is not an integer")
        if "enum" in declared and value not in declared["enum"]:
            problems.append(f"{name} is not one of {declared['enum']}")
        if declared.get("format") == "uri":
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                problems.append(f"{name} is not an absolute URL")
    return problems


def assert_private_call_form(form: dict[str, list[str]], call: OutgoingCall) -> None:
    """Only the parameters a call needs, and webhook URLs with an opaque id and nothing else."""
    assert set(form) == CALL_PARAMETERS
    assert form["To"] == [call.to]
    assert form["From"] == [SUPPORT]
    assert form["Url"] == [call.url]
    assert form["StatusCallback"] == [call.status_callback]
    assert form["Method"] == form["StatusCallbackMethod"] == ["POST"]
    assert form["Timeout"] == [str(call.ring_seconds)]
    for name in ("Url", "StatusCallback"):
        [url] = form[name]
        parts = urlsplit(url)
        assert parse_qs(parts.query) == {"o": [CALLBACK_ID]}, url
        assert not re.search(r"[0-9]", parts.path), url  # no number, no code, no account
        assert CODE not in url
        assert call.to.lstrip("+") not in url
        assert call.to[-4:] not in url
    sent_text = json.dumps(form)
    assert CODE not in sent_text
    assert sent_text.count(call.to.lstrip("+")) == 1  # in To, and only there


def test_call_form_meets_the_create_call_schema(create_call_schema: dict[str, Any]) -> None:
    """Without Prism: the real client's form for a call, checked against the spec itself."""
    canned = CannedTwilio()
    twilio = Client(ACCOUNT_SID, "contract-test-token", http_client=canned)
    call = outbound_call()
    assert TwilioCalls(twilio, SUPPORT).place(call) == "CA" + "c" * 32

    [request] = canned.sent
    assert request.method == "POST"
    assert request.url == CALLS
    form = form_of(request)
    assert schema_problems(form, create_call_schema) == []
    assert_private_call_form(form, call)


def test_schema_check_finds_a_form_that_breaks_create_call(
    create_call_schema: dict[str, Any],
) -> None:
    """The guard that makes the test above able to fail."""
    form = {
        "To": [CALLED],
        "Url": ["/voice/callback/answer"],
        "Method": ["PUT"],
        "Timeout": ["thirty"],
        "MachineDetectionCode": [CODE],
    }
    assert schema_problems(form, create_call_schema) == [
        "From is required",
        "Url is not an absolute URL",
        "Method is not one of ['GET', 'POST']",
        "Timeout is not an integer",
        "MachineDetectionCode is not a CreateCall parameter",
    ]
    assert schema_problems({"To": [CALLED], "From": [SUPPORT]}, create_call_schema) == [
        "Url (or Twiml) is required"
    ]


def test_call_request_meets_twilios_contract(
    client: Client, exchanges: list[requests.Response], create_call_schema: dict[str, Any]
) -> None:
    call = outbound_call()
    sid = TwilioCalls(client, SUPPORT).place(call)
    assert re.fullmatch(r"CA[0-9a-fA-F]{32}", sid), sid

    [exchange] = exchanges
    assert exchange.status_code == 201, exchange.text
    request = exchange.request
    assert request.method == "POST"
    assert urlsplit(request.url or "").path == urlsplit(CALLS).path
    form = form_of(request)
    assert schema_problems(form, create_call_schema) == []
    assert_private_call_form(form, call)


def test_prism_rejects_a_call_without_to(client: Client) -> None:
    """Prism does validate call bodies: the required To is checked."""
    data = {"From": SUPPORT, "Url": outbound_call().url}
    response = client.request("POST", CALLS, data=data)
    assert response.status_code == 422, response.text
    assert "'To'" in response.text


def test_dialer_reports_a_refused_call_as_delivery_failed_without_the_number(
    client: Client, exchanges: list[requests.Response], caplog: pytest.LogCaptureFixture
) -> None:
    """A webhook URL built without our public host is not a URI: Prism refuses the call."""
    caplog.set_level("DEBUG")
    dialer = TwilioCalls(client, SUPPORT)
    with pytest.raises(DeliveryFailed) as failure:
        dialer.place(outbound_call(url_base=""))
    error = failure.value
    assert error.channel == "call"
    assert error.reason == "Twilio refused the request (HTTP 422)"
    [exchange] = exchanges  # Prism saw the request, and refused it for its URLs
    assert exchange.status_code == 422
    assert "Request body property Url must match format" in exchange.text
    for text in (str(error), caplog.text):
        assert CALLED not in text
        assert CALLED.lstrip("+") not in text
