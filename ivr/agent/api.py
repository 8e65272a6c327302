"""The agent API: signed call context for agent desktops (`/agent/api`)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("agent_api", __name__, url_prefix="/agent/api")
