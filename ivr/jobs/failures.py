"""How a job says its failure is final: shared by the tasks (which raise it) and the
runner (which stops retrying on it), so neither imports the other."""

from __future__ import annotations


class PermanentFailure(Exception):
    """A job that would fail the same way every time: no retry, failed at once."""
