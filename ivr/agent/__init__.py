"""What agents get: the whisper on the call, the signed call context (API) and the agent
web page. Importing the package pulls in no Flask: the whisper is pure."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask


def register(app: Flask) -> None:
    """Add the agent API and the agent page (with its voicemail list) to the app."""
    from ivr.agent.api import bp as api_bp
    from ivr.agent.voicemail_page import bp as voicemail_bp
    from ivr.agent.web import bp as web_bp

    app.register_blueprint(api_bp)
    app.register_blueprint(web_bp)
    app.register_blueprint(voicemail_bp)
