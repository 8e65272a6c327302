"""The console's call history in a real browser (Debian's chromium under Playwright, the
fixtures of tests/browser_kit.py): the calls page, a call's timeline, the traffic
overlay on the diagram and the dashboard, signed in as a supervisor, with no script
error, console error or Content-Security-Policy violation on any of them. Screenshots
go to tests/artifacts/calls/."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from agent_kit import add_user
from browser_kit import expected, failed_load, shot, sign_in
from flask import Flask
from history_kit import path_steps, store_call

from ivr.flow import timeline
from ivr.storage import db
from ivr.versions import store

ROOT = Path(__file__).resolve().parent.parent
SHOTS = "calls"


@pytest.fixture
def app(make_app: Any, tmp_path: Path) -> Flask:
    """The service with a published flow, a supervisor, and two stored calls."""
    shutil.copytree(ROOT / "flows", tmp_path / "flows")
    shutil.copytree(ROOT / "prompts", tmp_path / "prompts")
    built: Flask = make_app(
        IVR_FLOWS_DIR=str(tmp_path / "flows"), IVR_PROMPTS_DIR=str(tmp_path / "prompts")
    )
    published = built.test_cli_runner().invoke(args=["flows", "publish", "-m", "first"])
    assert published.exit_code == 0, published.output
    add_user(built, "sue", role="supervisor")
    with built.app_context():
        session = db.session()
        live = store.live_row(session, "support")
        assert live is not None
        version = live.version_row.version
        walk = [("welcome", "next"), ("language", "next"), ("identify", "one_account")]
        agent = [
            *path_steps(
                [*walk, ("last4", "no_input"), ("agent_unverified", None)], version=version
            ),
            timeline.step(timeline.TRANSFER, 6000, node="agent_unverified", target="number"),
            timeline.step(timeline.TRANSFER_END, 9000, node="agent_unverified", status="completed"),
        ]
        built.config["CALL"] = store_call(session, agent, version=version)
        dropped = path_steps([("welcome", "next"), ("language", None)], version=version)
        store_call(session, dropped, version=version)
    return built


def expect(target: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def test_history_pages_render_without_script_or_csp_problems(
    app: Flask, page: Any, problems: list[str]
) -> None:
    page.goto("/ops/calls")
    sign_in(page, "sue")
    expect(page).to_have_url(re.compile(r"/ops/calls$"))
    rows = page.get_by_test_id("calls").locator("tbody tr")
    expect(rows).to_have_count(2)
    shot(page, SHOTS, "calls")

    page.get_by_label("Outcome").select_option("transferred")
    page.get_by_role("button", name="Show").click()
    expect(page).to_have_url(re.compile(r"outcome=transferred"))
    expect(rows).to_have_count(1)
    page.get_by_label("Started in the").fill("soon")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#since")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_test_id("since-error")).to_be_visible()
    expected(problems, failed_load(400, "BAD REQUEST"))  # the bad filter's answer: 400

    page.goto("/ops/calls")
    page.locator(f'tr[data-call="{app.config["CALL"]}"] a').click()
    timeline_rows = page.get_by_test_id("timeline").locator("tbody tr")
    expect(timeline_rows.first).to_contain_text("call started")
    expect(page.get_by_test_id("timeline")).to_contain_text("transfer to number")
    shot(page, SHOTS, "call")
    page.get_by_test_id("last-node").get_by_role("link").click()
    expect(page).to_have_url(re.compile(r"node=agent_unverified"))

    page.get_by_test_id("traffic-link").click()
    expect(page).to_have_url(re.compile(r"/ops/flows/support/traffic"))
    expect(page.get_by_test_id("total")).to_contain_text("2 calls")
    expect(page.locator('text.traffic-node[data-for="welcome"]')).to_have_text("2 in")
    expect(page.locator('text.traffic-node[data-for="language"]')).to_have_text("2 in · 1 hung up")
    shot(page, SHOTS, "traffic")

    page.get_by_role("navigation", name="Console").get_by_role("link", name="Dashboard").click()
    expect(page.get_by_test_id("calls")).to_have_text("2")
    expect(page.get_by_test_id("chart-outcomes")).to_contain_text("abandoned")
    shot(page, SHOTS, "dashboard")
    assert problems == []
