"""The call tree a running app serves: the live version for new calls, and the version
each running call started on.

At boot the working files are loaded and validated (a broken flow stops the boot and
the release step) and stand in until the version store has been read: they are also
what the fallback speaks when storage is down. New calls start on the live version,
which a worker checks in Redis at most every REFRESH_SECONDS (never a database query
per webhook), so a publish or rollback reaches every worker within seconds, without
a restart. A running call keeps the version it started on, loaded from the store on
demand and kept in a small cache, on any worker and after a restart.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask, current_app
from sqlalchemy.exc import IntegrityError

from ivr.config import Settings
from ivr.errors import CallStateLost, ConfigError, InvalidDefinition, StorageUnavailable
from ivr.flow.engine import LIMIT_TRANSFER, Directory, Engine, NumberChanger, Verifier
from ivr.flow.loader import load_definitions
from ivr.flow.model import Catalog, Flow, TransferTarget, parse_target
from ivr.flow.state import CallState
from ivr.storage import db, kv
from ivr.storage.models import FlowVersion
from ivr.versions import publish, store
from ivr.versions.store import LoadedFlow

log = logging.getLogger(__name__)

REFRESH_SECONDS = 2.0  # well inside the 5 s within which a publish must reach new calls
CACHED_VERSIONS = 16  # versions kept loaded per worker: the live one and recent ones
FIRST_START = "ivr (first start)"


@dataclass
class Runtime:
    settings: Settings
    agent_target: TransferTarget
    working: LoadedFlow  # the working files, as validated at boot
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self._live = self.working
        self._checked: float | None = None
        self._versions: OrderedDict[str, LoadedFlow] = OrderedDict()
        self._lock = threading.Lock()
        self._pinned = False  # serving one given version (the simulator's sandbox)

    @property
    def flow(self) -> Flow:
        """The live flow as last seen (no storage needed: the fallback can use it)."""
        return self._live.flow

    @property
    def catalog(self) -> Catalog:
        """The prompts of the live flow as last seen (no storage needed)."""
        return self._live.catalog

    def live(self) -> LoadedFlow:
        """The version new calls start on, checked in Redis at most every few seconds."""
        if self._pinned:
            return self._live
        now = self.clock()
        if self._checked is None or now - self._checked >= REFRESH_SECONDS:
            try:
                version = store.read_pointer(kv.client(), self.settings.flow)
                if version is None:
                    version = self._live_from_database()
                if version != self._live.flow.version:
                    self._live = self.version(self.settings.flow, version)
            except StorageUnavailable as exc:
                # The caller still gets the greeting: on the version this worker last
                # knew as live (at boot: the working files it validated). Steps that need
                # storage fail closed on their own.
                log.warning(
                    "flow %s: live version unknown (%s); serving %s",
                    self.settings.flow,
                    exc,
                    self._live.flow.version,
                )
            self._checked = now
        return self._live

    def serve(self, loaded: LoadedFlow) -> None:
        """Serve `loaded` as the live version from now on, without reading storage: the
        call simulator's sandbox runs a draft or any stored version this way."""
        with self._lock:
            self._live = loaded
            self._pinned = True
            self._versions.clear()
            self._versions[f"{loaded.flow.name}@{loaded.flow.version}"] = loaded

    def for_call(self, state: CallState) -> LoadedFlow:
        """The version a running call started on."""
        loaded = self.version(state.flow, state.version, call_sid=state.call_sid)
        if state.node not in loaded.flow.nodes and state.node != LIMIT_TRANSFER:
            raise CallStateLost(f"call {state.call_sid} is at {state.node!r}, not in its flow")
        return loaded

    def version(self, flow: str, version: str, *, call_sid: str | None = None) -> LoadedFlow:
        """One version of a flow: from the cache, else loaded from the store."""
        key = f"{flow}@{version}"
        with self._lock:
            if key in self._versions:
                self._versions.move_to_end(key)
                return self._versions[key]
        if flow == self.working.flow.name and version == self.working.flow.version:
            loaded = self.working
        else:
            loaded = self._load(flow, version, call_sid)
        with self._lock:
            self._versions[key] = loaded
            while len(self._versions) > CACHED_VERSIONS:
                self._versions.popitem(last=False)
        return loaded

    def _load(self, flow: str, version: str, call_sid: str | None) -> LoadedFlow:
        session = db.session()
        with db.unavailable_as_storage_error():
            row = store.find_version(session, flow, version)
        if row is None or row.version != version:
            raise CallStateLost(f"call {call_sid}: version {version} of {flow!r} is not stored")
        try:
            return store.load_version(row, self.settings.default_region)
        except InvalidDefinition as exc:
            raise CallStateLost(f"call {call_sid}: version {version} no longer loads") from exc

    def _live_from_database(self) -> str:
        """The live version from the database (the Redis pointer lapsed or was lost),
        published from the working files on the very first start; the pointer is reset."""
        session = db.session()
        name = self.settings.flow
        with db.unavailable_as_storage_error():
            live = store.live_row(session, name)
            if live is None:
                try:
                    outcome = publish.publish(
                        session,
                        kv.client(),
                        flows_dir=self.settings.flows_dir,
                        prompts_dir=self.settings.prompts_dir,
                        flow=name,
                        region=self.settings.default_region,
                        by=FIRST_START,
                        message="the working files, published on the first start",
                        # Only while nothing is live: a publish (console, CLI, another
                        # worker) landing meanwhile wins, never overwritten by this one.
                        expected=None,
                    )
                    log.info("flow %s: first start published version %s", name, outcome.version)
                    return outcome.version
                except (IntegrityError, publish.LiveChanged):  # another publish won
                    session.rollback()
                    live = store.live_row(session, name)
            assert live is not None
            version_row: FlowVersion = live.version_row
        store.write_pointer(kv.client(), name, version_row.version)
        return version_row.version

    def engine(
        self,
        loaded: LoadedFlow,
        directory: Directory,
        verifier: Verifier | None = None,
        number_changer: NumberChanger | None = None,
    ) -> Engine:
        return Engine(
            loaded.flow,
            loaded.catalog,
            directory,
            self.agent_target,
            self.settings.default_region,
            verifier=verifier,
            number_changer=number_changer,
            cooling_off=self.settings.number_change_cooling_off,
        )


def init_app(app: Flask) -> None:
    """Load and validate the working files; refuse to boot on any problem."""
    settings: Settings = app.config["IVR_SETTINGS"]
    definitions = load_definitions(
        settings.flows_dir, settings.prompts_dir, settings.default_region
    )
    if settings.flow not in definitions.flows:
        raise ConfigError(
            f"IVR_FLOW {settings.flow!r} is not among the flows in {settings.flows_dir}: "
            + ", ".join(sorted(definitions.flows))
        )
    try:
        target = parse_target(settings.agent_target, settings.default_region)
    except ValueError as exc:
        raise ConfigError(f"IVR_AGENT_TARGET: {exc}") from exc
    working = LoadedFlow(definitions.flows[settings.flow], definitions.catalog)
    app.extensions["ivr.runtime"] = Runtime(settings, target, working)


def get() -> Runtime:
    """The current app's runtime."""
    runtime: Runtime = current_app.extensions["ivr.runtime"]
    return runtime
