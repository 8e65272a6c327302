"""The log format: text lines as ever, or one JSON object per line (IVR_LOG_FORMAT=json).

Every record carries `call_sid`: the CallSid of the request being handled when it was
logged, else None. `ivr.metrics.requests` binds the request's CallSid form field (once
it has the shape of one) with a `trusted` check, asked again for each record: until
the request has passed Twilio's signature check, its lines carry no CallSid, so an
unsigned request cannot put a CallSid of its choosing on our lines. A log record
factory puts it there, so it reaches every handler (and every logger, ours or a
library's) without a filter on each.

A JSON line holds `time` (ISO 8601, UTC), `level`, `logger`, `message` (the message with
its arguments), `call_sid` when there is one, and `exc_info` (the traceback) when one
was logged. The message is what the code logged: our lines mask numbers and never hold
codes or keypad digits (docs/security.md); this format adds nothing to them but the
CallSid.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

CALL_SID = re.compile(r"CA[0-9a-f]{32}")

Trusted = Callable[[], bool]
Bound = tuple[str | None, Trusted | None]

_call_sid: contextvars.ContextVar[Bound] = contextvars.ContextVar(
    "ivr_log_call_sid", default=(None, None)
)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
_HANDLER_MARK = "_ivr_log_handler"  # set on the handler this module installed


def bind_call_sid(value: object, trusted: Trusted | None = None) -> contextvars.Token[Bound]:
    """Tag the lines logged from now on (in this context) with `value`, if it is a
    CallSid (`CA` + 32 hex digits); anything else tags them with nothing. With
    `trusted`, only the lines logged while `trusted()` is true are tagged."""
    call_sid = value if isinstance(value, str) and CALL_SID.fullmatch(value) else None
    return _call_sid.set((call_sid, trusted))


def unbind_call_sid(token: contextvars.Token[Bound]) -> None:
    """Back to what was bound before `bind_call_sid` returned `token`."""
    _call_sid.reset(token)


def current_call_sid() -> str | None:
    """The CallSid to put on a line logged now (None when its check says not yet)."""
    call_sid, trusted = _call_sid.get()
    if call_sid is None or trusted is None:
        return call_sid
    try:
        return call_sid if trusted() else None
    except Exception:  # a log line is never lost to the check: it goes untagged
        return None


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        call_sid = getattr(record, "call_sid", None)
        if call_sid:
            line["call_sid"] = call_sid
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def _install_record_factory() -> None:
    """Wrap the log record factory once per process so every record gets `call_sid`."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "_ivr_call_sid", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.call_sid = current_call_sid()
        return record

    factory._ivr_call_sid = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def formatter(log_format: str) -> logging.Formatter:
    """The formatter of `log_format` (text | json)."""
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def configure(log_format: str) -> None:
    """Lines on stderr in `log_format`; the handler is set once per process (a later app
    changes its format, as the last app built decides). A root logger that already has
    handlers of someone else's (pytest's, an embedding program's) is left alone."""
    _install_record_factory()
    root = logging.getLogger()
    ours = [handler for handler in root.handlers if getattr(handler, _HANDLER_MARK, False)]
    if not root.handlers:
        made: logging.Handler = logging.StreamHandler(sys.stderr)
        setattr(made, _HANDLER_MARK, True)
        root.addHandler(made)
        root.setLevel(logging.INFO)
        ours = [made]
    for handler in ours:
        handler.setFormatter(formatter(log_format))
