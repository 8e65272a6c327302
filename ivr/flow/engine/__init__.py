"""The flow engine: (flow, call state, event) → (new state, instructions).

A package so the turn loop, the node handlers and the protocols it needs can
live apart; this module keeps `ivr.flow.engine` the one import path for them.
"""

from ivr.flow.engine.core import (
    LIMIT_TRANSFER,
    AccountView,
    DialResult,
    Directory,
    Engine,
    Input,
    NumberChanger,
    Started,
    Turn,
    Verifier,
)

__all__ = [
    "LIMIT_TRANSFER",
    "AccountView",
    "DialResult",
    "Directory",
    "Engine",
    "Input",
    "NumberChanger",
    "Started",
    "Turn",
    "Verifier",
]
