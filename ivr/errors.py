"""The project's exception root, with load-time and run-time errors kept apart.

Load-time errors (a broken flow file, bad configuration) must stop a release or a
boot; run-time errors happen mid-call and must always end in a valid TwiML answer.
"""

from __future__ import annotations

from dataclasses import dataclass


class IvrError(Exception):
    """Root of every error the service raises on purpose."""


class ConfigError(IvrError):
    """The environment does not describe a runnable service (raised at boot)."""


@dataclass(frozen=True)
class DefinitionProblem:
    """One problem found in a flow or prompt file: where it is and what is wrong."""

    file: str
    where: str  # node id, prompt key or top-level key
    field: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        location = f"{self.file}:{self.line}" if self.line else self.file
        parts = [location]
        if self.where:
            parts.append(self.where)
        if self.field:
            parts.append(self.field)
        return f"{': '.join(parts)}: {self.message}"


class InvalidDefinition(IvrError):
    """A flow or prompt definition failed validation; carries every problem found."""

    def __init__(self, problems: list[DefinitionProblem]):
        self.problems = list(problems)
        summary = "\n".join(str(p) for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) in flow definitions:\n{summary}")


class CallError(IvrError):
    """Run-time error while handling a call; the caller still gets a valid answer."""


class CallStateLost(CallError):
    """A webhook arrived for a call whose state is gone (expired, flushed, unknown)."""


class StorageUnavailable(CallError):
    """Redis or the database could not be reached in time: verification fails closed."""


class RedisUnavailable(StorageUnavailable):
    """Redis (not the database) could not be reached: writes queued for the request's end
    would only be sent into the same outage."""
