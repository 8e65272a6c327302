"""The sandbox itself: a private app built with `create_app` on development settings
(a SQLite file in a temporary folder, its own Redis stand-in, the local outbox, jobs
run as each webhook ends), emptied and seeded with the demo customers before every
replay, serving the chosen flow version as live."""

from __future__ import annotations

import atexit
import logging
import secrets
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from functools import partial
from pathlib import Path
from typing import Any

from flask import Flask

from ivr.calls import runtime
from ivr.calls import store as call_store
from ivr.config import Settings
from ivr.customers.seed import seed_demo
from ivr.delivery import outbox
from ivr.jobs import queue as jobs_queue
from ivr.phone import mask
from ivr.simulator.codes import written_code
from ivr.simulator.player import Simulator
from ivr.simulator.sandbox.play import (
    NeedsAnswer,
    Player,
    Replay,
    ScriptKeypad,
    SeededCodes,
    Sent,
    derived,
)
from ivr.simulator.sandbox.script import Script, caller_number
from ivr.simulator.transport import InProcess
from ivr.storage import db, kv
from ivr.storage.db import Base
from ivr.verification.codes import codes_from
from ivr.versions.store import LoadedFlow

log = logging.getLogger(__name__)

AppFactory = Callable[[Mapping[str, str]], Flask]  # environ -> app (ivr.app.create_app)

SANDBOX_URL = "https://sandbox.ivr.invalid"  # the sandbox's public URL (never reached)
LOG_PREFIX = "simulator."  # what the sandbox's log lines are named under

_replaying: ContextVar[bool] = ContextVar("ivr_sandbox_replaying", default=False)


class SandboxLogName(logging.Filter):
    """Renames the log lines written while a replay runs (in this thread) from
    `ivr.delivery.outbox` to `simulator.ivr.delivery.outbox` and so on: "code sent" or
    "call placed" from a simulated call must never read like the service's own."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _replaying.get() and not record.name.startswith(LOG_PREFIX):
            record.name = LOG_PREFIX + record.name
        return True


_NAMER = SandboxLogName()


def _name_sandbox_lines() -> None:
    """Put the renaming filter on the process's log handlers (once each)."""
    for handler in logging.getLogger().handlers:
        if _NAMER not in handler.filters:
            handler.addFilter(_NAMER)


def sandbox_environ(settings: Settings, folder: Path) -> dict[str, str]:
    """The sandbox's environment: development, its own storage, the service's call rules."""
    return {
        "IVR_ENV": "development",
        "DATABASE_URL": f"sqlite:///{folder / 'sandbox.sqlite3'}",
        "IVR_DELIVERY": "outbox",
        "IVR_OUTBOX_PATH": str(folder / "outbox.jsonl"),
        "IVR_JOBS": "in-process",
        "IVR_PUBLIC_URL": SANDBOX_URL,
        "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
        "TWILIO_AUTH_TOKEN": secrets.token_hex(16),
        "IVR_SECRET_KEY": secrets.token_hex(32),
        "IVR_FLOW": settings.flow,
        "IVR_FLOWS_DIR": str(settings.flows_dir),
        "IVR_PROMPTS_DIR": str(settings.prompts_dir),
        "IVR_DEFAULT_REGION": settings.default_region,
        "IVR_SUPPORT_NUMBER": settings.support_number,
        "IVR_AGENT_TARGET": settings.agent_target,
        "IVR_CODE_TTL": str(settings.code_ttl),
        "IVR_CODE_LENGTH": str(settings.code_length),
        "IVR_ALLOWED_COUNTRIES": ",".join(sorted(settings.allowed_countries)),
        "IVR_ALLOWED_LINE_TYPES": ",".join(sorted(settings.allowed_line_types)),
        "IVR_NUMBER_CHANGE_COOLING_OFF_DAYS": str(
            max(1, settings.number_change_cooling_off // 86400)
        ),
        "IVR_DIGITS_MAX_FAILURES": str(settings.digits_max_failures),
        "IVR_CALL_STATE_TTL": str(settings.call_state_ttl),
    }


class Sandbox:
    """A private app for simulated calls; `replay` plays one script in it."""

    def __init__(self, settings: Settings, factory: AppFactory):
        self.folder = Path(tempfile.mkdtemp(prefix="ivr-sandbox-"))
        atexit.register(shutil.rmtree, self.folder, True)
        environ = sandbox_environ(settings, self.folder)
        self.app: Flask = factory(environ)  # an app like the service's, on its own stores
        self.settings: Settings = self.app.config["IVR_SETTINGS"]
        self.auth_token = environ["TWILIO_AUTH_TOKEN"]
        self.lock = threading.Lock()
        with self.app.app_context():
            Base.metadata.create_all(db.engine())
        self.transport = InProcess(self.app, self.auth_token)

    def replay(self, loaded: LoadedFlow, script: Script) -> Replay:
        """Play `script` on `loaded` from the first ring, on emptied storage, until the
        call needs an answer the script lacks or ends; ScriptError if it does not fit."""
        with self.lock, self._fresh(loaded):
            call_sid = "CA" + derived(script.seed, "call-sid")[:32]
            player = Player(script, loaded.flow, call_sid, self.node_of)
            simulator = Simulator(
                self.transport,
                SANDBOX_URL,
                agent="accept",
                echo=player.events.append,
                support_number=self.settings.support_number,
                outbox=partial(outbox.read, self.settings.outbox_path),
                callee=player.callee,
            )
            result = Replay(events=player.events)
            _name_sandbox_lines()
            replaying = _replaying.set(True)
            try:
                self._play(simulator, player, script, call_sid, result)
            finally:
                _replaying.reset(replaying)
            result.node = self.node_of(call_sid) or player.node
            result.unused = len(script.answers) - player.position
            self._read_outbox(result, simulator.codes)
            return result

    def _play(
        self, simulator: Simulator, player: Player, script: Script, call_sid: str, result: Replay
    ) -> None:
        with codes_from(SeededCodes(script.seed)):
            try:
                ended = simulator.call(
                    caller_number(script.caller),
                    ScriptKeypad(player, "caller"),
                    call_sid=call_sid,
                )
                result.ended_by = ended.ended_by
            except NeedsAnswer as needs:
                result.turn = needs.turn

    def node_of(self, call_sid: str) -> str | None:
        """The node a call of the sandbox is at, from its stored state."""
        with self.app.app_context():
            state = call_store.load(call_sid)
        return state.node if state is not None else None

    def _read_outbox(self, result: Replay, codes: list[str]) -> None:
        written: set[str] = set()
        for message in outbox.read(self.settings.outbox_path):
            if message.channel == "call":
                result.placed.append(mask(message.to))
                continue
            code = written_code(message.body)
            if code:
                written.add(code)
                to = mask(message.to) if message.channel == "sms" else _mask_email(message.to)
                result.sent.append(Sent(message.channel, to, code))
        callees = [e for e in result.events if e.who == "callee" and e.kind == "say"]
        phone = result.placed[-1] if result.placed else "the phone called back"
        for code in dict.fromkeys(codes):  # a code read out twice is one code
            if code not in written and any(_spoken(code) in e.text for e in callees):
                result.sent.append(Sent("voice", phone, code))

    @contextmanager
    def _fresh(self, loaded: LoadedFlow) -> Iterator[None]:
        """Empty every store of the sandbox, seed the demo customers, serve `loaded`."""
        app = self.app
        with app.app_context():
            with db.engine().begin() as connection:
                for table in reversed(Base.metadata.sorted_tables):
                    connection.execute(table.delete())
            client = kv.client()
            client.flushdb()
            jobs = jobs_queue.get(app).connection
            if jobs is not client:
                jobs.flushdb()
            outbox.clear(self.settings.outbox_path)
            seed_demo(db.session(), self.settings.default_region)
            runtime.get().serve(loaded)
        yield


def _spoken(code: str) -> str:
    return ", ".join(code)


def _mask_email(address: str) -> str:
    name, at, domain = address.partition("@")
    return f"{name[:2]}•••{at}{domain}" if at else "•••"


_sandboxes: dict[tuple[Any, ...], Sandbox] = {}
_building = threading.Lock()


def sandbox_for(settings: Settings, factory: AppFactory) -> Sandbox:
    """This process's sandbox for the service's settings (built on first use, with the
    app factory the service was built with: `ivr.app.create_app`, handed in so the
    sandbox does not import the app that imports the console that imports it)."""
    key = (
        settings.flow,
        str(settings.flows_dir),
        str(settings.prompts_dir),
        settings.default_region,
        settings.support_number,
        settings.agent_target,
        settings.code_ttl,
        settings.code_length,
        settings.allowed_countries,
        settings.allowed_line_types,
        settings.number_change_cooling_off,
        settings.digits_max_failures,
        settings.call_state_ttl,
    )
    with _building:
        found = _sandboxes.get(key)
        if found is None:
            found = _sandboxes[key] = Sandbox(settings, factory)
        return found
