"""The agent line: staff phone in (`POST /voice/agent/incoming`) to take queued callers,
hearing each caller's whisper before being connected to exactly that caller.

(Issue 15 groundwork; filled in by the agent-line work.)
"""

from __future__ import annotations

from flask import Blueprint

from ivr.voice.signature import require_twilio_signature

bp = Blueprint("agent_line", __name__, url_prefix="/voice/agent")
bp.before_request(require_twilio_signature)
