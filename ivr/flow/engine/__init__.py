"""The flow engine: (flow, call state, event) → (new state, instructions).

A package so the turn loop, the node handlers and the protocols it needs can
live apart; this module keeps `ivr.flow.engine` the one import path for what
the rest of the service uses of them.
"""

from ivr.flow.engine.context import Turn
from ivr.flow.engine.core import LIMIT_TRANSFER, DialResult, Engine, Input, Recorded
from ivr.flow.engine.ports import (
    AccountView,
    DigitAttempt,
    DigitLimits,
    Directory,
    LineStatus,
    NumberChanger,
    Started,
    Verifier,
)

__all__ = [
    "LIMIT_TRANSFER",
    "AccountView",
    "DialResult",
    "DigitAttempt",
    "DigitLimits",
    "Directory",
    "Engine",
    "Input",
    "LineStatus",
    "NumberChanger",
    "Recorded",
    "Started",
    "Turn",
    "Verifier",
]
