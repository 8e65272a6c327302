"""Who may use the ops console: one staff sign-in with the agent page, roles deciding
what each person may do, and the sign-in sending people back where they were going."""

from __future__ import annotations

import pytest
from agent_kit import add_user, csrf_of, sign_in
from flask import Flask

from ivr.agent.web import safe_next


def test_a_visitor_is_sent_to_the_staff_sign_in_and_back(app: Flask) -> None:
    add_user(app, "olga", role="ops")
    client = app.test_client()
    first = client.get("/ops/")
    assert first.status_code == 302
    assert first.headers["Location"].startswith("/agent/login?next=/ops/")
    page = client.get(first.headers["Location"]).get_data(as_text=True)
    assert 'name="next" value="/ops/"' in page
    token = csrf_of(client)
    signed = client.post(
        "/agent/login",
        data={
            "username": "olga",
            "password": "correct horse battery",
            "csrf_token": token,
            "next": "/ops/",
        },
    )
    assert signed.status_code == 303
    assert signed.headers["Location"] == "/ops/"
    assert client.get("/ops/").status_code == 200


@pytest.mark.parametrize(("role", "status"), [("ops", 200), ("supervisor", 200), ("agent", 403)])
def test_roles_decide_who_reads_the_console(app: Flask, role: str, status: int) -> None:
    add_user(app, "sam", role=role)
    client = app.test_client()
    assert sign_in(client, "sam").status_code == 303
    answer = client.get("/ops/")
    assert answer.status_code == status
    if status == 403:
        assert "for ops staff and supervisors" in answer.get_data(as_text=True)


def test_ops_staff_land_on_the_console_and_not_on_the_agent_page(app: Flask) -> None:
    add_user(app, "olga", role="ops")
    client = app.test_client()
    signed = sign_in(client, "olga")
    assert signed.headers["Location"] == "/ops/"
    assert client.get("/agent/").headers["Location"] == "/ops/"
    assert client.get("/agent/calls.json").status_code == 403


def test_an_agent_still_lands_on_the_agent_page(app: Flask) -> None:
    add_user(app, "alice")
    client = app.test_client()
    assert sign_in(client).headers["Location"] == "/agent/"


@pytest.mark.parametrize(
    "value",
    [
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
        "ops",
        "",
        None,
        "/ops/\nSet-Cookie: x",
    ],
)
def test_only_local_pages_are_returned_to(value: str | None) -> None:
    assert safe_next(value) is None


def test_a_local_page_is_returned_to() -> None:
    assert safe_next("/ops/flows/support?node=welcome") == "/ops/flows/support?node=welcome"


def test_the_console_sends_the_staff_security_headers(app: Flask) -> None:
    add_user(app, "olga", role="ops")
    client = app.test_client()
    sign_in(client, "olga")
    answer = client.get("/ops/")
    assert "script-src 'self'" in answer.headers["Content-Security-Policy"]
    assert answer.headers["X-Frame-Options"] == "DENY"
    assert answer.headers["Cache-Control"] == "no-store"
