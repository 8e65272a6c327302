"""Complete signed call journeys, played the way Twilio and the people on the line would.

Shapes (one customer of its own each, see `seed`):

- `known`: a known caller picks English, keys the last four account digits, then the
  code texted to the phone on file (read back from the Twilio double), and asks for an
  agent (`<Enqueue>`, its action, the status callback): 7 webhooks.
- `unknown`: a caller from an unknown number keys the full account number and `#`,
  then the code, then an agent: 7 webhooks.
- `change`: a verified caller changes the number on file: the new number, confirmed,
  the code call-back the service places through the double (answered, a key pressed,
  the code read out, its status callback), the code keyed on the first call, goodbye:
  13 webhooks.

Every webhook carries Twilio's full form (26 fields on an inbound call's request) and
an `X-Twilio-Signature` over the public URL. Against the service each answer is checked
for the next step's URL, so a journey that strays (a limit hit, a lost state) counts as
an error; against the baselines (`live=False`) the same requests are sent blind.
"""

from __future__ import annotations

import http.client
import itertools
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote, urlencode

from twilio.request_validator import RequestValidator

from scripts.bench.seed import (
    NEW_NUMBER_AREA,
    SHAPES,
    STRANGER_AREA,
    Customer,
    customer,
    number,
)

ACCOUNT_SID = "AC" + "b" * 32
SUPPORT_NUMBER = "+15005550006"
CODE_IN_TEXT = re.compile(r"\b(\d{6,10})\b")
CODE_READ_OUT = re.compile(r"(\d(?:, \d){5,9})")
SAY = re.compile(r"<Say[^>]*>([^<]*)</Say>")
DOUBLE_WAIT = 2.0  # seconds to wait for a send the service reported done to show up


class JourneyError(Exception):
    """A webhook's answer was not what the journey expected (or did not come)."""


class Stopped(Exception):
    """The round's time is up: the journey ends where it is."""


class Transport(Protocol):
    def post(self, path: str, form: dict[str, str], signature: str) -> tuple[int, str]: ...


class HttpTransport:
    """POSTs over one keep-alive connection (reopened when the server closed it idle)."""

    def __init__(self, port: int, timeout: float = 15.0):
        self.port = port
        self.timeout = timeout  # Twilio's own webhook budget
        self.connection: http.client.HTTPConnection | None = None

    def post(self, path: str, form: dict[str, str], signature: str) -> tuple[int, str]:
        body = urlencode(form)
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        }
        for attempt in (1, 2):
            reused = self.connection is not None
            if self.connection is None:
                self.connection = http.client.HTTPConnection(
                    "127.0.0.1", self.port, timeout=self.timeout
                )
            try:
                self.connection.request("POST", path, body, headers)
                response = self.connection.getresponse()
                data = response.read()
            except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine):
                self.close()
                if reused and attempt == 1:
                    continue  # the server closed an idle keep-alive connection: reconnect
                raise
            if response.will_close:
                self.close()
            return response.status, data.decode("utf-8", errors="replace")
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


class DoubleClient:
    """Reads from the Twilio double what the service sent (one keep-alive connection)."""

    def __init__(self, port: int):
        self.port = port
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)

    def _get(self, kind: str, to: str) -> dict[str, str] | None:
        deadline = time.monotonic() + DOUBLE_WAIT
        while True:
            try:
                self.connection.request("GET", f"/bench/{kind}?to={quote(to)}")
                response = self.connection.getresponse()
                payload = response.read()
            except (ConnectionError, http.client.HTTPException):
                self.connection.close()
                self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                raise
            if response.status == 200:
                found: dict[str, str] = json.loads(payload)
                return found
            if time.monotonic() > deadline:
                return None
            time.sleep(0.01)

    def code_texted_to(self, to: str, after: str | None = None) -> str:
        """The code in the latest text message to `to` (other than the one `after`)."""
        deadline = time.monotonic() + DOUBLE_WAIT
        while True:
            message = self._get("message", to)
            if message and message["sid"] != after:
                found = CODE_IN_TEXT.search(message.get("Body", ""))
                if found:
                    return found.group(1)
            if time.monotonic() > deadline:
                raise JourneyError("no code was texted to the customer")
            time.sleep(0.01)

    def last_message_sid(self, to: str) -> str | None:
        try:
            self.connection.request("GET", f"/bench/message?to={quote(to)}")
            response = self.connection.getresponse()
            payload = response.read()
        except (ConnectionError, http.client.HTTPException):
            self.connection.close()
            self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            raise
        return json.loads(payload).get("sid") if response.status == 200 else None

    def call_placed_to(self, to: str) -> dict[str, str]:
        placed = self._get("call", to)
        if placed is None:
            raise JourneyError("the service placed no call-back")
        return placed

    def close(self) -> None:
        self.connection.close()


class Pools:
    """Hands out customers and numbers: each journey shape has its own share."""

    def __init__(self, customers: int, start: int = 0):
        self.share = max(1, customers // len(SHAPES))
        self.lock = threading.Lock()
        self.used = dict.fromkeys(SHAPES, start)
        self.turn = itertools.count()
        self.wrapped = dict.fromkeys(SHAPES, False)

    def next_shape(self) -> str:
        return SHAPES[next(self.turn) % len(SHAPES)]

    def take(self, shape: str) -> int:
        """The next index in the shape's share (it wraps around, noted, when used up)."""
        with self.lock:
            index = self.used[shape]
            self.used[shape] += 1
        if index >= self.share:
            self.wrapped[shape] = True
        return SHAPES.index(shape) * self.share + index % self.share


@dataclass
class Journey:
    """One call being played; `post` signs and sends one webhook and checks its answer."""

    transport: Transport
    validator: RequestValidator
    public_url: str
    record: Callable[[float, bool], None]  # (seconds, ok) of each webhook
    deadline: float
    live: bool
    double: DoubleClient | None
    account_sid: str = ACCOUNT_SID

    def post(self, path: str, form: dict[str, str], expect: str = "<Response") -> str:
        if time.monotonic() >= self.deadline:
            raise Stopped
        signature = self.validator.compute_signature(self.public_url + path, form)
        started = time.perf_counter()
        try:
            status, body = self.transport.post(path, form, signature)
        except OSError as exc:
            self.record(time.perf_counter() - started, False)
            raise JourneyError(f"{path.split('?')[0]}: {exc.__class__.__name__}") from exc
        elapsed = time.perf_counter() - started
        ok = status == 200 and (not self.live or expect in body)
        self.record(elapsed, ok)
        if not ok:
            # The answer's start says where the journey went (no code: a read-out is
            # only ever expected, never reported).
            heard = "" if "/callback/key" in path else " " + " ".join(re.findall(SAY, body))[:160]
            raise JourneyError(f"{path.split('?')[0]}: HTTP {status}, expected {expect!r};{heard}")
        return body


def new_sid() -> str:
    return "CA" + secrets.token_hex(16)


def inbound_form(journey: Journey, sid: str, caller: str, status: str) -> dict[str, str]:
    """What Twilio posts on every webhook of an inbound call: 26 fields."""
    return {
        "AccountSid": journey.account_sid,
        "ApiVersion": "2010-04-01",
        "CallSid": sid,
        "CallStatus": status,
        "Called": SUPPORT_NUMBER,
        "CalledCity": "SAN FRANCISCO",
        "CalledCountry": "US",
        "CalledState": "CA",
        "CalledZip": "94105",
        "Caller": caller,
        "CallerCity": "BOSTON",
        "CallerCountry": "US",
        "CallerState": "MA",
        "CallerZip": "02108",
        "Direction": "inbound",
        "From": caller,
        "FromCity": "BOSTON",
        "FromCountry": "US",
        "FromState": "MA",
        "FromZip": "02108",
        "To": SUPPORT_NUMBER,
        "ToCity": "SAN FRANCISCO",
        "ToCountry": "US",
        "ToState": "CA",
        "ToZip": "94105",
        "StirVerstat": "TN-Validation-Passed-A",
    }


def outbound_form(journey: Journey, sid: str, to: str) -> dict[str, str]:
    """What Twilio posts on the webhooks of a call the service placed."""
    form = inbound_form(journey, sid, SUPPORT_NUMBER, "in-progress")
    form.update(Direction="outbound-api", To=to, Called=to, From=SUPPORT_NUMBER)
    del form["StirVerstat"]
    return form


def ended(form: dict[str, str], seconds: int) -> dict[str, str]:
    """A final status callback."""
    return {
        **form,
        "CallStatus": "completed",
        "CallDuration": str(seconds),
        "CallbackSource": "call-progress-events",
        "SequenceNumber": "0",
        "Timestamp": "Mon, 01 Jan 2024 12:00:00 +0000",
    }


def keys(form: dict[str, str], digits: str, finished: str = "") -> dict[str, str]:
    """A `<Gather>` result."""
    return {**form, "Digits": digits, "FinishedOnKey": finished, "msg": "Gather End"}


def action(step: int) -> str:
    return f'action="/voice/input?s={step}"'


def _verify(journey: Journey, form: dict[str, str], person: Customer, *, full: bool) -> None:
    """Incoming call, English, the account digits and the texted code: at the menu (s=4)."""
    journey.post("/voice/incoming", form, action(1))
    journey.post("/voice/input?s=1", keys(form, "1"), action(2))
    earlier = journey.double.last_message_sid(person.phone) if journey.double else None
    entered = keys(form, person.account_number, "#") if full else keys(form, person.last4)
    journey.post("/voice/input?s=2", entered, action(3))
    code = journey.double.code_texted_to(person.phone, earlier) if journey.double else "123456"
    journey.post("/voice/input?s=3", keys(form, code, "#"), action(4))


def _to_agent(journey: Journey, form: dict[str, str], step: int) -> None:
    journey.post(f"/voice/input?s={step}", keys(form, "2"), f'action="/voice/dial?s={step + 1}"')
    queued = {**form, "QueueResult": "bridged", "QueueSid": "QU" + "c" * 32, "QueueTime": "12"}
    journey.post(f"/voice/dial?s={step + 1}", queued)
    journey.post("/voice/status", ended(form, 95))


def known(journey: Journey, index: int) -> None:
    """Known caller, last four digits and code, then an agent."""
    person = customer(index)
    form = inbound_form(journey, new_sid(), person.phone, "ringing")
    _verify(journey, form, person, full=False)
    _to_agent(journey, {**form, "CallStatus": "in-progress"}, 4)


def unknown(journey: Journey, index: int) -> None:
    """A caller from a number we do not know: the full account number, code, an agent."""
    person = customer(index)
    form = inbound_form(journey, new_sid(), number(STRANGER_AREA, index), "ringing")
    _verify(journey, form, person, full=True)
    _to_agent(journey, {**form, "CallStatus": "in-progress"}, 4)


def change(journey: Journey, index: int) -> None:
    """A verified caller changes the number on file, confirmed by a code call-back."""
    person = customer(index)
    new_number = number(NEW_NUMBER_AREA, index)
    form = inbound_form(journey, new_sid(), person.phone, "ringing")
    _verify(journey, form, person, full=False)
    form = {**form, "CallStatus": "in-progress"}
    journey.post("/voice/input?s=4", keys(form, "1"), action(5))
    journey.post("/voice/input?s=5", keys(form, new_number.removeprefix("+1"), "#"), action(6))
    journey.post("/voice/input?s=6", keys(form, "1"), action(7))
    if journey.double:
        placed = journey.double.call_placed_to(new_number)
        answer_path = placed["Url"].removeprefix(journey.public_url)
        status_path = placed["StatusCallback"].removeprefix(journey.public_url)
        leg_sid = placed["sid"]
    else:
        answer_path = "/voice/callback/answer?o=bench"
        status_path = "/voice/callback/status?o=bench"
        leg_sid = new_sid()
    leg = outbound_form(journey, leg_sid, new_number)
    key_path = answer_path.replace("/answer?", "/key?")
    journey.post(answer_path, leg, f'action="{key_path}"')
    read_out = journey.post(key_path, keys(leg, "1"), "Your code is")
    found = CODE_READ_OUT.search(read_out)
    code = found.group(1).replace(", ", "") if found else "123456"
    journey.post(status_path, ended(leg, 30))
    journey.post("/voice/input?s=7", keys(form, code, "#"), action(8))
    journey.post("/voice/input?s=8", keys(form, "3"), "<Hangup")
    journey.post("/voice/status", ended(form, 180))


PLAYERS: dict[str, Callable[[Journey, int], None]] = {
    "known": known,
    "unknown": unknown,
    "change": change,
}
WEBHOOKS_PER_CALL = {"known": 7, "unknown": 7, "change": 13}
