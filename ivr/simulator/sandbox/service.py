"""The sandbox itself: a private app built with `create_app` on development settings
(a SQLite file in a temporary folder, its own Redis stand-in, the local outbox, jobs
run as each webhook ends), emptied and seeded with the demo customers before every
replay, serving the chosen flow version as live.

The sandbox never reads the service's working files: they are drafts on disk and may
be broken at any moment. It boots from a flows and prompts folder of its own, written
from the first version it is asked to serve, and every replay serves its own version
on top (`Runtime.serve`), so what it booted from is never heard."""

from __future__ import annotations

import atexit
import logging
import secrets
import shutil
import tempfile
import threading
import time
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
from ivr.errors import IvrError
from ivr.jobs import queue as jobs_queue
from ivr.phone import mask
from ivr.simulator.codes import spoken_codes, written_code
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
from ivr.simulator.sandbox.script import MAX_ANSWERS, Script, ScriptError, caller_number
from ivr.simulator.transport import InProcess, Reply
from ivr.storage import db, kv
from ivr.storage.db import Base
from ivr.verification.codes import codes_from
from ivr.versions.store import Draft, LoadedFlow

log = logging.getLogger(__name__)

AppFactory = Callable[[Mapping[str, str]], Flask]  # environ -> app (ivr.app.create_app)

SANDBOX_URL = "https://sandbox.ivr.invalid"  # the sandbox's public URL (never reached)
LOG_PREFIX = "simulator."  # what the sandbox's log lines are named under

# One replay at a time per sandbox; a console user waits this long for another's replay,
# then is told the simulator is busy (a web thread, which also serves webhooks, is never
# tied up for longer than this waiting).
LOCK_WAIT = 3.0

# A replay's work is bounded. Its script holds at most MAX_ANSWERS answers, and each
# answer is taken at one <Gather> or one ring, so an ordinary call needs a few webhooks
# per answer; the simulator itself stops a leg past MAX_REQUESTS webhooks and rings at
# most MAX_CALLBACKS call-backs, which would still allow (1 + MAX_CALLBACKS) legs of
# MAX_REQUESTS each. The sandbox's transport caps the whole replay well below that:
# MAX_REPLAY_REQUESTS webhooks (each a few milliseconds in process) and REPLAY_SECONDS.
MAX_REPLAY_REQUESTS = 5 * MAX_ANSWERS
REPLAY_SECONDS = 20.0

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


class SandboxBusy(IvrError):
    """Another replay held the sandbox for longer than LOCK_WAIT: try again in a moment."""


class SandboxFailed(IvrError):
    """The sandbox's app could not be built (its settings or boot files were refused)."""


class ReplayTooLong(ScriptError):
    """A replay needed more than its bound of work (MAX_REPLAY_REQUESTS, REPLAY_SECONDS)."""


class Budgeted:
    """The sandbox's transport with a bound on one replay's work (a Transport)."""

    def __init__(self, inner: InProcess, requests: int, seconds: float):
        self.inner, self.requests, self.seconds = inner, requests, seconds
        self.used = 0
        self.deadline = time.monotonic() + seconds

    def restart(self) -> None:
        """A new replay: a full budget again."""
        self.used = 0
        self.deadline = time.monotonic() + self.seconds

    def post(self, url: str, form: dict[str, str]) -> Reply:
        self.used += 1
        if self.used > self.requests or time.monotonic() > self.deadline:
            raise ReplayTooLong(
                f"replaying this call took more than {self.requests} webhook requests or "
                f"{self.seconds:g} seconds (is the flow looping?): start a new call"
            )
        return self.inner.post(url, form)


def write_definitions(files: Mapping[str, str], folder: Path) -> tuple[Path, Path]:
    """Write a version's files (`flows/<flow>.yaml`, `prompts/<language>.yaml`) into
    `folder`; return its flows and prompts folders."""
    flows, prompts = folder / "flows", folder / "prompts"
    for where in (flows, prompts):
        where.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        kind, _, name = path.partition("/")
        if kind in ("flows", "prompts") and name == Path(name).name and name.endswith(".yaml"):
            (folder / kind / name).write_text(text, encoding="utf-8")
    return flows, prompts


def sandbox_environ(settings: Settings, folder: Path, boot: Draft) -> dict[str, str]:
    """The sandbox's environment: development, its own storage and flow files (those of
    `boot`), the service's call rules."""
    flows_dir, prompts_dir = write_definitions(boot.files, folder / "definitions")
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
        "IVR_FLOW": boot.loaded.flow.name,
        "IVR_FLOWS_DIR": str(flows_dir),
        "IVR_PROMPTS_DIR": str(prompts_dir),
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
    """A private app for simulated calls; `replay` plays one script in it. It boots from
    the files of `boot` (any version that loads: each replay serves its own)."""

    def __init__(self, settings: Settings, factory: AppFactory, boot: Draft):
        self.folder = Path(tempfile.mkdtemp(prefix="ivr-sandbox-"))
        try:
            environ = sandbox_environ(settings, self.folder, boot)
            self.app: Flask = factory(environ)  # an app like the service's, own stores
            with self.app.app_context():
                Base.metadata.create_all(db.engine())
        except BaseException:
            shutil.rmtree(self.folder, ignore_errors=True)  # a failed build leaves nothing
            raise
        atexit.register(shutil.rmtree, self.folder, True)
        self.settings: Settings = self.app.config["IVR_SETTINGS"]
        self.auth_token = environ["TWILIO_AUTH_TOKEN"]
        self.lock = threading.Lock()
        self.transport = Budgeted(
            InProcess(self.app, self.auth_token), MAX_REPLAY_REQUESTS, REPLAY_SECONDS
        )

    def close(self) -> None:
        """Stop the sandbox's job runner and close its connections (a test's own sandbox)."""
        runner = self.app.extensions.get("ivr.jobs.runner")
        if runner is not None:
            runner.stop()
        with self.app.app_context():
            db.engine().dispose()
        jobs = self.app.extensions.get(jobs_queue.EXTENSION_KEY)
        for client in (self.app.extensions.get("ivr.redis"), getattr(jobs, "connection", None)):
            if client is not None:
                client.close()

    def replay(self, loaded: LoadedFlow, script: Script) -> Replay:
        """Play `script` on `loaded` from the first ring, on emptied storage, until the
        call needs an answer the script lacks or ends; ScriptError if it does not fit (or
        needs more than a replay's bound of work), SandboxBusy if another replay holds
        the sandbox for longer than LOCK_WAIT."""
        if not self.lock.acquire(timeout=LOCK_WAIT):
            raise SandboxBusy("The simulator is busy; try again in a moment.")
        try:
            return self._replay(loaded, script)
        finally:
            self.lock.release()

    def _replay(self, loaded: LoadedFlow, script: Script) -> Replay:
        with self._fresh(loaded):
            self.transport.restart()
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
            self._read_outbox(result)
            self._read_aloud(result, player, caller_number(script.caller))
            result.sent.sort(key=partial(_order, simulator.codes))
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

    def _read_outbox(self, result: Replay) -> None:
        """Codes written (texts, emails) to this call's legs, and the calls placed."""
        for message in outbox.read(self.settings.outbox_path):
            if message.channel == "call":
                result.placed.append(mask(message.to))
                continue
            code = written_code(message.body)
            if code:
                to = mask(message.to) if message.channel == "sms" else _mask_email(message.to)
                result.sent.append(Sent(message.channel, to, code))

    def _read_aloud(self, result: Replay, player: Player, caller: str) -> None:
        """Codes read out in a <Say>, each listed with the phone whose leg heard it: the
        caller's own, or the number the service called (that call's `To`)."""
        written = {sent.code for sent in result.sent}
        listed: set[tuple[str, str]] = set()
        for index, event in enumerate(result.events):
            if event.kind != "say":
                continue
            for code in spoken_codes(event.text):
                if code in written:
                    continue
                to = _phone_of(event.who, index, player.legs, caller)
                if (to, code) not in listed:  # a code read out twice is one code
                    listed.add((to, code))
                    result.sent.append(Sent("voice", to, code))

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


def _phone_of(who: str, index: int, legs: list[tuple[int, str]], caller: str) -> str:
    """Who heard the say at `index` of the events: the caller's phone (masked), the number
    of the call-back whose leg it is (the last one rung before it), or the agent."""
    if who == "caller":
        return mask(caller) if caller.startswith("+") else "the caller (number withheld)"
    if who == "callee":
        rung = [number for start, number in legs if start <= index]
        return rung[-1] if rung else "the phone called back"
    return "the agent"


def _order(codes: list[str], sent: Sent) -> int:
    """Where a code came in the call (codes are delivered oldest first)."""
    return codes.index(sent.code) if sent.code in codes else len(codes)


def _mask_email(address: str) -> str:
    name, at, domain = address.partition("@")
    return f"{name[:2]}•••{at}{domain}" if at else "•••"


_sandboxes: dict[tuple[Any, ...], Sandbox] = {}
_building = threading.Lock()


def sandbox_for(settings: Settings, factory: AppFactory, boot: Draft) -> Sandbox:
    """This process's sandbox for the service's settings (built on first use, from the
    files of `boot`, with the app factory the service was built with: `create_app`,
    handed in so the sandbox does not import the app that imports the console that
    imports it). The service's own flow files play no part in it."""
    key = (
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
            try:
                found = Sandbox(settings, factory, boot)
            except Exception as exc:  # a page that explains, never a 500
                log.exception("simulator: the sandbox could not be built")
                raise SandboxFailed(f"The simulator's sandbox could not start: {exc}") from exc
            _sandboxes[key] = found
        return found
