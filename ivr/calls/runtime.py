"""The loaded call tree of a running app: validated flows, prompts, the agent target.

Definitions are parsed and validated once at boot; a broken flow stops the boot
(and the release step), so it can never reach a caller.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Flask, current_app

from ivr.config import Settings
from ivr.errors import CallStateLost, ConfigError
from ivr.flow.engine import LIMIT_TRANSFER, Directory, Engine, NumberChanger, Verifier
from ivr.flow.loader import Definitions, load_definitions
from ivr.flow.model import Flow, TransferTarget, parse_target
from ivr.flow.state import CallState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    definitions: Definitions
    agent_target: TransferTarget

    @property
    def flow(self) -> Flow:
        """The flow new calls start on."""
        return self.definitions.flows[self.settings.flow]

    def flow_for(self, state: CallState) -> Flow:
        """The flow a running call continues on."""
        flow = self.definitions.flows.get(state.flow)
        if flow is None or (state.node not in flow.nodes and state.node != LIMIT_TRANSFER):
            raise CallStateLost(f"call {state.call_sid} is on a flow version no longer loaded")
        if flow.version != state.version:
            log.warning(
                "call %s started on %s version %s; continuing on %s",
                state.call_sid,
                state.flow,
                state.version,
                flow.version,
            )
        return flow

    def engine(
        self,
        flow: Flow,
        directory: Directory,
        verifier: Verifier | None = None,
        number_changer: NumberChanger | None = None,
    ) -> Engine:
        return Engine(
            flow,
            self.definitions.catalog,
            directory,
            self.agent_target,
            self.settings.default_region,
            verifier=verifier,
            number_changer=number_changer,
            cooling_off=self.settings.number_change_cooling_off,
        )


def init_app(app: Flask) -> None:
    """Load and validate every flow and prompt; refuse to boot on any problem."""
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
    app.extensions["ivr.runtime"] = Runtime(settings, definitions, target)


def get() -> Runtime:
    """The current app's runtime."""
    runtime: Runtime = current_app.extensions["ivr.runtime"]
    return runtime
