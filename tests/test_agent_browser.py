"""The agent page in a real browser: Debian's chromium driven by Playwright, against the
app served by a real HTTP server in a thread (the fixtures of tests/browser_kit.py).

Covers signing in, a screen pop arriving by the page's own polling while it is open,
and verification by hand (checklist, a code sent to the phone on file and read back
from the outbox, "pass"). Screenshots go to tests/artifacts/agent-browser/ (git-ignored),
or to $IVR_TEST_ARTIFACTS/agent-browser/ when set, and are kept after the run.

Playwright cannot download its own browser here, so the tests use /usr/bin/chromium
(`apt-get install chromium`; .ci/run does it). Without it or the playwright package
they skip, except under CI, where they fail.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import browser_kit
import pytest
from agent_kit import PASSWORD, QUEUE, VERIFIED_JANE, transfer
from browser_kit import WAIT_MS
from caller import code_of, sent
from flask import Flask
from kit import JANE_PHONE, add_account
from sqlalchemy import select

from ivr.agent.users import create_user
from ivr.storage import db
from ivr.storage.models import AuditEvent

SHOTS = "agent-browser"


def shot(page: Any, name: str) -> Path:
    """Save a full-page screenshot under the artifacts' agent-browser folder."""
    return browser_kit.shot(page, SHOTS, name)


@pytest.fixture
def signed_in(app: Flask, page: Any) -> Any:
    """Alice, an agent on queue:support, signed in through the form."""
    with app.app_context():
        create_user(db.session(), "alice", PASSWORD, role="agent", target=QUEUE, region="US")
    from playwright.sync_api import expect

    page.goto("/agent/login")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Transferred calls")).to_be_visible()
    expect(page.get_by_test_id("signed-in-as")).to_have_text("alice")
    # Wait for the first poll, so the calls recorded next are arrivals.
    expect(page.locator("#poll-status")).to_contain_text("checked at", timeout=WAIT_MS)
    return page


def test_sign_in(app: Flask, signed_in: Any) -> None:
    from playwright.sync_api import expect

    expect(signed_in.locator("#calls")).to_contain_text("No calls transferred to you")
    shot(signed_in, "01-signed-in")
    with app.app_context():
        actions = db.session().scalars(select(AuditEvent.action)).all()
    assert "agent.login" in actions


def test_sign_in_with_a_wrong_password_stays_on_the_form(
    app: Flask, page: Any, problems: list[str]
) -> None:
    from playwright.sync_api import expect

    with app.app_context():
        create_user(db.session(), "alice", PASSWORD, role="agent", target=QUEUE, region="US")
    page.goto("/agent/")  # not signed in: sent to the form
    assert page.url.endswith("/agent/login")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")
    # The refused sign-in answers 401, which the browser reports on its console.
    assert problems == [
        "console: Failed to load resource: the server responded with a status of 401 (UNAUTHORIZED)"
    ]
    problems.clear()


def test_screen_pop_arrives_for_a_transferred_call(app: Flask, signed_in: Any) -> None:
    from playwright.sync_api import expect

    page = signed_in
    call_sid = transfer(
        app,
        **VERIFIED_JANE,
    )
    pop = page.locator(f'[data-testid="screen-pop"][data-call-sid="{call_sid}"]')
    expect(pop).to_be_visible(timeout=WAIT_MS)
    expect(pop.get_by_role("heading", level=2)).to_have_text("Jane Doe")
    expect(pop.get_by_test_id("verification")).to_have_text(
        "Verified: account digits and a one-time code"
    )
    for fact in (
        "•••4321",
        "a code sent by text message",
        "at 10:02:03 UTC",
        "The phone number on file changed recently.",
        "The caller asked for an agent.",
        "support · version 7",
        call_sid,
    ):
        expect(pop).to_contain_text(fact)
    expect(page.locator("#calls li.current")).to_contain_text("Jane Doe")
    assert JANE_PHONE not in page.content()
    shot(page, "02-screen-pop-verified")


def test_manual_verification_of_an_unverified_caller(app: Flask, signed_in: Any) -> None:
    from playwright.sync_api import expect

    page = signed_in
    jane = add_account(app, "Jane Doe", JANE_PHONE, "10004321", "jane@example.com")
    call_sid = transfer(app, account_id=jane)
    pop = page.locator(f'[data-testid="screen-pop"][data-call-sid="{call_sid}"]')
    expect(pop).to_be_visible(timeout=WAIT_MS)
    expect(pop.get_by_role("heading", level=2)).to_have_text("Unverified caller")
    shot(page, "03-screen-pop-unverified")

    pop.get_by_label("Full name").check()
    pop.get_by_label("Phone number").check()
    pop.get_by_role("button", name="Save checklist").click()
    expect(page.locator(".flashes")).to_contain_text("Checklist saved: 2 of 3 matched.")
    pop = page.get_by_test_id("screen-pop")
    expect(pop.get_by_label("Full name")).to_be_checked()
    expect(pop.get_by_label("Account number or email address")).not_to_be_checked()

    pop.get_by_role("button", name=re.compile(r"Text a code to \+1415•••0100")).click()
    expect(page.locator(".flashes")).to_contain_text("Code sent to +1415•••0100.")
    code = code_of(sent(app)[-1])  # what the caller reads out from their phone
    assert code not in page.content()

    page.get_by_test_id("screen-pop").get_by_label("Code the caller reads out").fill(code)
    page.get_by_role("button", name="Check code").click()
    expect(page.get_by_test_id("code-result")).to_have_text("pass")
    expect(page.locator("#calls")).to_contain_text("code pass", timeout=WAIT_MS)
    assert code not in page.content()
    shot(page, "04-verified-by-hand")

    with app.app_context():
        rows = db.session().scalars(
            select(AuditEvent).where(AuditEvent.call_sid == call_sid).order_by(AuditEvent.id)
        )
        done = [(row.action, row.details.get("result")) for row in rows]
    assert done == [
        ("agent.screen_pop", None),
        ("agent.checklist", None),
        ("agent.code_sent", None),
        ("agent.code_check", "pass"),
    ]
