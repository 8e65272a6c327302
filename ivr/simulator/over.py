"""How a simulated call leg ends: the exception every verb raises to end it.

Apart from the verbs so modules that play one verb (`recording`) can end a leg without
importing the leg that calls them.
"""

from __future__ import annotations


class CallOver(Exception):
    """A leg has ended; `ended_by` says how (ivr, caller-hangup, error, ...)."""

    def __init__(self, ended_by: str):
        self.ended_by = ended_by
