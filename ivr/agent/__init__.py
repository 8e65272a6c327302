"""What agents use: signed call context (API) and the agent web page."""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """Add the agent API and the agent page to the app."""
    from ivr.agent.api import bp as api_bp
    from ivr.agent.web import bp as web_bp

    app.register_blueprint(api_bp)
    app.register_blueprint(web_bp)
