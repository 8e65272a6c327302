"""The application factory: it only wires configuration, extensions, blueprints and commands."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from ivr.config import APP_FACTORY, DEVELOPMENT, Settings


def create_app(
    environ: Mapping[str, str] | None = None, *, default_env: str = DEVELOPMENT
) -> Flask:
    """Build the Flask app from the environment (or the mapping given, in tests)."""
    app = Flask("ivr", instance_relative_config=True)
    settings = Settings.from_env(
        environ, default_env=default_env, instance_path=Path(app.instance_path)
    )
    app.config.update(IVR_SETTINGS=settings, SECRET_KEY=settings.secret_key)
    # How to build another app like this one (the console's simulator sandbox builds its
    # own), without the console importing this module back.
    app.extensions[APP_FACTORY] = create_app
    if settings.proxy_hops:
        # Behind a router or load balancer the peer is the proxy: believe that many
        # X-Forwarded-For/-Proto entries, so per-client limits see the real client.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=settings.proxy_hops, x_proto=settings.proxy_hops
        )
    configure_logging(settings)
    register_metrics(app)
    register_extensions(app)
    register_blueprints(app)
    register_commands(app)
    return app


def configure_logging(settings: Settings) -> None:
    """Lines on stderr, text or JSON (IVR_LOG_FORMAT); the handler set once per process."""
    from ivr.metrics import logs

    logs.configure(settings.observe.log_format)
    # Alembic announces each of its plugins at INFO on every command; keep its migrations line.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    # twilio logs every request's URL and headers at INFO; ours say what matters.
    logging.getLogger("twilio.http_client").setLevel(logging.WARNING)


def register_metrics(app: Flask) -> None:
    """`/metrics` and the request hooks (timing, the CallSid of log lines), first of all
    hooks so they time the others."""
    from ivr import scrape
    from ivr.metrics import requests

    requests.init_app(app)
    scrape.init_app(app)


def register_extensions(app: Flask) -> None:
    from ivr.calls import runtime
    from ivr.delivery import registry
    from ivr.jobs import queue as jobs
    from ivr.jobs import runner as job_runner
    from ivr.staff import csrf
    from ivr.storage import db, deferred, kv

    db.init_app(app)
    kv.init_app(app)
    deferred.init_app(app)
    jobs.init_app(app)
    job_runner.init_app(app)
    registry.init_app(app)
    runtime.init_app(app)
    csrf.init_app(app)


def register_blueprints(app: Flask) -> None:
    from ivr.agent import register as register_agent
    from ivr.health import bp as health_bp
    from ivr.ops import register as register_ops
    from ivr.voice.agent_line import bp as agent_line_bp
    from ivr.voice.callbacks import bp as callback_bp
    from ivr.voice.hold import bp as hold_bp
    from ivr.voice.queue_callbacks import bp as queue_callback_bp
    from ivr.voice.recordings import bp as recordings_bp
    from ivr.voice.taskrouter import bp as taskrouter_bp
    from ivr.voice.views import bp as voice_bp

    app.register_blueprint(voice_bp)
    app.register_blueprint(callback_bp)
    app.register_blueprint(recordings_bp)
    app.register_blueprint(agent_line_bp)
    app.register_blueprint(hold_bp)
    app.register_blueprint(queue_callback_bp)
    app.register_blueprint(taskrouter_bp)
    register_agent(app)
    register_ops(app)
    app.register_blueprint(health_bp)


def register_commands(app: Flask) -> None:
    """The project's commands on `app.cli` (what `app.test_cli_runner()` invokes)."""
    from ivr.commands import project_commands

    for command in project_commands():
        app.cli.add_command(command)
