"""The ops console (`/ops`): flows drawn as diagrams, drafts edited in the browser, review
and publish, history and rollback, a call simulator, and the audit trail.

Server-rendered like the agent page, with the same staff accounts and sign-in:
`ops` may edit, publish and roll back, `supervisor` may read, `agent` has no access.
Importing the package pulls in no Flask."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask


def register(app: Flask) -> None:
    """Add the console's blueprint, with every page's views, to the app."""
    from ivr.ops import (  # noqa: F401
        audit_page,
        calls_page,
        dashboard_page,
        drafts_page,
        flows_page,
        hours_page,
        publish_page,
        simulator_page,
        traffic_view,
    )
    from ivr.ops.blueprint import bp

    app.register_blueprint(bp)
