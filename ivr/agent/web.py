"""The agent web page (`/agent`)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("agent_web", __name__, url_prefix="/agent")
