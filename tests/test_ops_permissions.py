"""Every view of the ops console, for every kind of visitor: a table that must list each
route the console has, so a view added later cannot skip the question of who may use it.

Readers (supervisors and ops) get every page; only ops change anything; agents get
nothing; a visitor who is not signed in is sent to the staff sign-in. The simulator's
posts are open to readers: a simulated call changes nothing of the service's own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from agent_kit import add_user, csrf_of, sign_in
from flask import Flask
from flask.testing import FlaskClient
from history_kit import path_steps, store_call

from ivr.storage import db

ROOT = Path(__file__).resolve().parent.parent

# endpoint → (the URL with sample values, what a change there is: "edit" for ops only,
# "read" for any reader, None when the view has no POST)
ROUTES: dict[str, tuple[str, str | None]] = {
    "ops.index": ("/ops/", None),
    "ops.audit_log": ("/ops/audit", None),
    "ops.calls": ("/ops/calls", None),
    "ops.call": ("/ops/calls/{call}", None),
    "ops.dashboard": ("/ops/dashboard", None),
    "ops.hours": ("/ops/hours", "edit"),
    "ops.traffic": ("/ops/flows/support/traffic", None),
    "ops.flow": ("/ops/flows/support", None),
    "ops.draft": ("/ops/flows/support/draft", None),
    "ops.draft_start": ("/ops/flows/support/draft", "edit"),
    "ops.draft_discard": ("/ops/flows/support/draft/discard", "edit"),
    "ops.draft_node": ("/ops/flows/support/draft/nodes/welcome", "edit"),
    "ops.draft_prompt": ("/ops/flows/support/draft/prompts/welcome", "edit"),
    "ops.history": ("/ops/flows/support/history", None),
    "ops.rollback": ("/ops/flows/support/history/{version}/rollback", "edit"),
    "ops.review": ("/ops/flows/support/review", "edit"),
    "ops.simulator": ("/ops/simulator", None),
    "ops.simulator_answer": ("/ops/simulator/answer", "read"),
    "ops.simulator_start": ("/ops/simulator/start", "read"),
}
POST_ONLY = {
    "ops.draft_start",
    "ops.draft_discard",
    "ops.simulator_answer",
    "ops.simulator_start",
}  # POST-only routes: nothing to GET


@pytest.fixture
def console(make_app: Any, working: Path) -> Flask:
    """The console with one published version and a draft open, so every page has
    something to show."""
    app: Flask = make_app(
        IVR_FLOWS_DIR=str(working / "flows"), IVR_PROMPTS_DIR=str(working / "prompts")
    )
    result = app.test_cli_runner().invoke(args=["flows", "publish", "-m", "first", "--json"])
    assert result.exit_code == 0, result.output
    app.config["TEST_VERSION"] = result.output.split('"version": "')[1][:12]
    ops = signed_in(app, "olga", "ops")
    started = ops.post("/ops/flows/support/draft", data={"csrf_token": csrf_of(ops, "/ops/")})
    assert started.status_code == 303
    with app.app_context():  # a stored call, for the call page
        app.config["TEST_CALL"] = store_call(db.session(), path_steps([("welcome", None)]))
    return app


def signed_in(app: Flask, username: str, role: str) -> FlaskClient:
    add_user(app, username, role=role)
    client = app.test_client()
    assert sign_in(client, username).status_code == 303
    return client


def url(app: Flask, endpoint: str) -> str:
    return ROUTES[endpoint][0].format(
        version=app.config["TEST_VERSION"], call=app.config["TEST_CALL"]
    )


def test_the_table_lists_every_route_of_the_console(console: Flask) -> None:
    routes = {
        rule.endpoint: sorted(rule.methods - {"HEAD", "OPTIONS"})
        for rule in console.url_map.iter_rules()
        if rule.endpoint.startswith("ops.") and rule.endpoint != "ops.static"
    }
    assert set(routes) == set(ROUTES)
    for endpoint, methods in routes.items():
        assert ("POST" in methods) == (ROUTES[endpoint][1] is not None), endpoint
        assert ("GET" in methods) == (endpoint not in POST_ONLY), endpoint


@pytest.mark.parametrize("endpoint", [e for e in ROUTES if e not in POST_ONLY])
def test_readers_see_every_page_and_agents_none(console: Flask, endpoint: str) -> None:
    for role, status in (("supervisor", 200), ("ops", 200), ("agent", 403)):
        client = signed_in(console, f"{role[:3]}-{endpoint[4:].replace('_', '-')}", role)
        answer = client.get(url(console, endpoint))
        assert answer.status_code == status, (role, endpoint, answer.status_code)
    visitor = console.test_client().get(url(console, endpoint))
    assert visitor.status_code == 302
    assert visitor.headers["Location"].startswith("/agent/login?next=/ops/")


@pytest.mark.parametrize("endpoint", [e for e, (_, kind) in ROUTES.items() if kind])
def test_only_ops_change_anything(console: Flask, endpoint: str) -> None:
    kind = ROUTES[endpoint][1]
    for role in ("agent", "supervisor"):
        client = signed_in(console, f"{role[:3]}-{endpoint[4:].replace('_', '-')}", role)
        token = csrf_of(client, "/agent/" if role == "agent" else "/ops/")
        answer = client.post(url(console, endpoint), data={"csrf_token": token})
        refused = role == "agent" or kind == "edit"
        assert (answer.status_code == 403) == refused, (role, endpoint, answer.status_code)
    # Without the session's token, even ops are refused before anything is looked at.
    ops = console.test_client()
    assert sign_in(ops, "olga").status_code == 303
    assert ops.post(url(console, endpoint), data={}).status_code == 400
