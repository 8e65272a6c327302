"""The console's view of call history: the calls page (filters, paging, bad values
marked on their field), a call's timeline, the traffic overlay on the flow diagram and
the dashboard; readable by supervisors and ops, not by agents."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from agent_kit import add_user, sign_in
from flask import Flask
from flask.testing import FlaskClient
from history_kit import path_steps, store_call

from ivr.flow import timeline
from ivr.storage import db
from ivr.versions import store

UNKNOWN_SID = "CA" + "0" * 32
HANG_UP_AT_LANGUAGE = [("welcome", "next"), ("language", None)]
TO_AGENT = [
    ("welcome", "next"),
    ("language", "next"),
    ("identify", "one_account"),
    ("last4", "no_input"),
    ("agent_unverified", None),
]


@pytest.fixture
def console(make_app: Any, working: Path) -> Flask:
    app: Flask = make_app(
        IVR_FLOWS_DIR=str(working / "flows"), IVR_PROMPTS_DIR=str(working / "prompts")
    )
    result = app.test_cli_runner().invoke(args=["flows", "publish", "-m", "first"])
    assert result.exit_code == 0, result.output
    return app


def live_version(app: Flask) -> str:
    with app.app_context():
        live = store.live_row(db.session(), "support")
        assert live is not None
        return live.version_row.version


def signed_in(app: Flask, role: str, username: str | None = None) -> FlaskClient:
    name = username or f"{role}-user"
    add_user(app, name, role=role)
    client = app.test_client()
    assert sign_in(client, name).status_code == 303
    return client


def add_call(app: Flask, walk: list[tuple[str, str | None]], **kwargs: Any) -> str:
    version = kwargs.pop("version", None) or live_version(app)
    extra = kwargs.pop("extra", [])
    with app.app_context():
        steps = path_steps(walk, version=version) + extra
        return store_call(db.session(), steps, version=version, **kwargs)


def to_agent_steps(reason: str = "no_input") -> list[dict[str, Any]]:
    return [
        timeline.step(
            timeline.TRANSFER, 5200, node="agent_unverified", target="number", reason=reason
        ),
        timeline.step(timeline.TRANSFER_END, 9000, node="agent_unverified", status="completed"),
    ]


def listed(page: str) -> list[str]:
    return re.findall(r'<tr data-call="(CA[0-9a-f]{32})"', page)


def field_of(page: str, name: str) -> str:
    found = re.search(rf'<(?:input|select)[^>]* id="{name}"[^>]*>', page)
    assert found, name
    return found.group(0)


# --- who may look ----------------------------------------------------------------------


def test_supervisors_and_ops_read_the_history_pages_agents_do_not(console: Flask) -> None:
    sid = add_call(console, HANG_UP_AT_LANGUAGE)
    pages = [
        "/ops/calls",
        f"/ops/calls/{sid}",
        "/ops/dashboard",
        "/ops/flows/support/traffic",
    ]
    for role, status in (("supervisor", 200), ("ops", 200), ("agent", 403)):
        client = signed_in(console, role)
        for page in pages:
            assert client.get(page).status_code == status, (role, page)
    menu = signed_in(console, "supervisor", "sue").get("/ops/calls").get_data(as_text=True)
    assert 'href="/ops/calls" aria-current="page">Calls</a>' in menu
    assert 'href="/ops/dashboard">Dashboard</a>' in menu


# --- the calls page ------------------------------------------------------------------


def add_flow(working: Path, name: str) -> None:
    """A second flow the service knows (a working file), so its calls can be filtered."""
    flows = working / "flows"
    (flows / f"{name}.yaml").write_text((flows / "support.yaml").read_text())


def test_calls_are_filtered_by_outcome_verification_period_and_flow(
    console: Flask, working: Path
) -> None:
    add_flow(working, "other")
    abandoned = add_call(console, HANG_UP_AT_LANGUAGE)
    verified = add_call(
        console, TO_AGENT, extra=to_agent_steps(), verification="digits", methods=["last4"]
    )
    old = add_call(console, HANG_UP_AT_LANGUAGE, started=time.time() - 3 * 3600)
    other = add_call(console, HANG_UP_AT_LANGUAGE, flow="other")
    client = signed_in(console, "supervisor")

    def shown(query: str) -> set[str]:
        answer = client.get(f"/ops/calls{query}")
        assert answer.status_code == 200, answer.get_data(as_text=True)
        return set(listed(answer.get_data(as_text=True)))

    assert shown("") == {abandoned, verified, old, other}  # the last 24 hours
    assert shown("?since=1h") == {abandoned, verified, other}
    assert shown("?since=90m&outcome=transferred") == {verified}
    assert shown("?outcome=abandoned") == {abandoned, old, other}
    assert shown("?verified=yes") == {verified}
    assert shown("?verified=no&flow=other") == {other}
    assert shown("?since=1h&flow=support&outcome=ended") == set()
    assert "selected>other</option>" in client.get("/ops/calls?flow=other").get_data(as_text=True)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("since=banana", "since"),
        ("since=0h", "since"),
        ("since=99999999999999d", "since"),
        ("outcome=maybe", "outcome"),
        ("verified=perhaps", "verified"),
        ("flow=nosuchflow", "flow"),
    ],
)
def test_a_bad_filter_is_marked_on_its_field(console: Flask, query: str, field: str) -> None:
    add_call(console, HANG_UP_AT_LANGUAGE)
    answer = signed_in(console, "ops").get(f"/ops/calls?{query}")
    page = answer.get_data(as_text=True)
    assert answer.status_code == 400
    assert 'aria-invalid="true"' in field_of(page, field)
    assert f'aria-describedby="{field}-error"' in field_of(page, field)
    assert f'data-testid="{field}-error"' in page
    assert listed(page) == []
    others = {"since", "outcome", "verified", "flow"} - {field}
    assert all("aria-invalid" not in field_of(page, name) for name in others)


@pytest.mark.parametrize("before", ["nonsense", UNKNOWN_SID])
def test_a_broken_page_link_is_said_not_crashed(console: Flask, before: str) -> None:
    add_call(console, HANG_UP_AT_LANGUAGE)
    answer = signed_in(console, "ops").get(f"/ops/calls?before={before}")
    assert answer.status_code == 400
    assert 'data-testid="before-error"' in answer.get_data(as_text=True)


def test_calls_are_paged_newest_first(console: Flask) -> None:
    now = time.time()
    sids = [add_call(console, HANG_UP_AT_LANGUAGE, started=now - 600 + i) for i in range(53)]
    client = signed_in(console, "supervisor")
    first = client.get("/ops/calls?outcome=abandoned").get_data(as_text=True)
    assert listed(first) == sids[::-1][:50]
    older = re.search(r'<a href="([^"]+)" rel="next"', first)
    assert older is not None
    link = older.group(1).replace("&amp;", "&")
    assert "outcome=abandoned" in link
    second = client.get(link).get_data(as_text=True)
    assert listed(second) == sids[::-1][50:]
    assert 'rel="next"' not in second


# --- one call ---------------------------------------------------------------------------


def test_a_call_shows_its_summary_and_timeline(console: Flask) -> None:
    version = live_version(console)
    sid = add_call(
        console,
        TO_AGENT,
        extra=[
            timeline.step(
                timeline.INPUT, 4100, node="last4", input="keys", keys=4, result="invalid"
            ),
            *to_agent_steps(reason="no_input"),
        ],
        transfer_reason="no_input",
    )
    page = signed_in(console, "supervisor").get(f"/ops/calls/{sid}").get_data(as_text=True)
    assert sid in page
    assert "+1415•••0100" in page and "+14155550100" not in page
    assert "keys: 4 keys, invalid" in page
    assert "exit one_account → last4" in page
    assert "transfer to number (reason: no_input)" in page
    assert re.search(r'<td class="num">4\.1 s</td>', page)
    events = re.findall(r'data-event="([a-z_]+)"', page)
    assert events[0] == timeline.START and events[-1] == timeline.END
    # Nodes link to the diagram of the version the call ran on.
    assert f'href="/ops/flows/support?version={version}&amp;node=last4"' in page


@pytest.mark.parametrize("sid", [UNKNOWN_SID, "not-a-sid", "CA123"])
def test_an_unknown_or_malformed_call_is_a_404_page(console: Flask, sid: str) -> None:
    answer = signed_in(console, "supervisor").get(f"/ops/calls/{sid}")
    assert answer.status_code == 404
    assert "<html" in answer.get_data(as_text=True)


# --- the traffic overlay ------------------------------------------------------------------


def node_counts(page: str, node: str) -> tuple[int, int]:
    found = re.search(
        rf'class="traffic traffic-node"[^>]* data-for="{node}" data-entered="(\d+)" data-dropped="(\d+)"',
        page,
    )
    assert found, node
    return int(found.group(1)), int(found.group(2))


def exit_count(page: str, node: str, exit_label: str) -> int:
    """The count drawn beside an exit of `node` in the SVG (inside the node's link)."""
    start = page.index(f'data-for="{node}"')
    end = page.index("</a>", start)
    found = re.search(rf'data-exit="{re.escape(exit_label)}" data-count="(\d+)"', page[start:end])
    assert found, (node, exit_label)
    return int(found.group(1))


def test_the_overlay_draws_the_period_s_numbers_on_the_diagram(console: Flask) -> None:
    for _ in range(3):
        add_call(console, HANG_UP_AT_LANGUAGE)
    add_call(console, TO_AGENT, extra=to_agent_steps())
    add_call(console, HANG_UP_AT_LANGUAGE, version="someotherversion")  # not this version
    add_call(console, HANG_UP_AT_LANGUAGE, started=time.time() - 2 * 86400)  # last week only
    client = signed_in(console, "supervisor")

    answer = client.get("/ops/flows/support/traffic")
    page = answer.get_data(as_text=True)
    assert answer.status_code == 200
    assert "Content-Security-Policy" in answer.headers
    assert re.search(r'data-testid="total"><strong>4</strong>', page)
    assert node_counts(page, "welcome") == (4, 0)
    assert node_counts(page, "language") == (4, 3)
    assert node_counts(page, "last4") == (1, 0)
    assert node_counts(page, "menu") == (0, 0)
    assert exit_count(page, "welcome", "next") == 4
    assert exit_count(page, "language", "next") == 1
    assert exit_count(page, "last4", "no_input") == 1
    assert exit_count(page, "last4", "ok") == 0
    assert ">4 in · 3 hung up<" in page
    # Colour-scaled: every call entered welcome (heat-5), a quarter reached last4.
    assert re.search(r'class="node [^"]*heat-5"[^>]*data-node="welcome"', page)
    assert re.search(r'class="node [^"]*heat-2"[^>]*data-node="last4"', page)
    assert re.search(r'class="node [^"]*heat-0"[^>]*data-node="menu"', page)
    assert re.search(r'class="edge heat-5" [^>]*data-from="welcome" data-exit="next"', page)

    week = client.get("/ops/flows/support/traffic?period=week").get_data(as_text=True)
    assert node_counts(week, "language") == (5, 4)
    hour = client.get("/ops/flows/support/traffic?period=hour").get_data(as_text=True)
    assert node_counts(hour, "welcome") == (4, 0)


def test_the_overlay_counts_the_chosen_version(console: Flask, working: Path) -> None:
    first = live_version(console)
    add_call(console, HANG_UP_AT_LANGUAGE)
    welcome = working / "prompts" / "en-US.yaml"
    welcome.write_text(welcome.read_text().replace("Thank you", "Thanks", 1))
    result = console.test_cli_runner().invoke(args=["flows", "publish", "-m", "second"])
    assert result.exit_code == 0, result.output
    second = live_version(console)
    assert second != first
    client = signed_in(console, "ops")

    live = client.get("/ops/flows/support/traffic").get_data(as_text=True)
    assert node_counts(live, "welcome") == (0, 0)
    chosen = client.get(f"/ops/flows/support/traffic?version={first}").get_data(as_text=True)
    assert node_counts(chosen, "welcome") == (1, 0)
    assert f'<option value="{first}" selected>' in chosen


def test_the_overlay_refuses_unknown_periods_flows_and_versions(console: Flask) -> None:
    client = signed_in(console, "supervisor")
    assert client.get("/ops/flows/support/traffic?period=year").status_code == 404
    assert client.get("/ops/flows/nosuch/traffic").status_code == 404
    assert client.get("/ops/flows/support/traffic?version=ffffffff").status_code == 404


def test_the_flow_page_links_to_its_traffic(console: Flask) -> None:
    page = signed_in(console, "supervisor").get("/ops/flows/support").get_data(as_text=True)
    assert 'href="/ops/flows/support/traffic"' in page


# --- the dashboard ---------------------------------------------------------------------------


def test_the_dashboard_shows_what_was_recorded(console: Flask) -> None:
    for _ in range(3):
        add_call(console, HANG_UP_AT_LANGUAGE, seconds=12)
    add_call(
        console,
        TO_AGENT,
        extra=[
            timeline.step(timeline.CODE_SENT, 4300, node="send_sms", channel="sms", result="sent"),
            *to_agent_steps(reason="wants_agent"),
        ],
        verification="code",
        methods=["last4", "code_sms"],
        transfer_reason="wants_agent",
    )
    add_call(console, HANG_UP_AT_LANGUAGE, started=time.time() - 3 * 86400)  # the 7 days only
    client = signed_in(console, "supervisor")

    answer = client.get("/ops/dashboard")
    page = answer.get_data(as_text=True)
    assert answer.status_code == 200
    assert re.search(r'data-testid="calls">4<', page)
    assert re.search(r'data-testid="verified">1 <span class="muted">\(25%\)', page)
    assert re.search(r'data-testid="abandoned">3 <span class="muted">\(75%\)', page)
    assert 'data-label="code" data-value="1"' in page
    assert 'data-label="none" data-value="3"' in page
    assert 'data-label="code_sms" data-value="1"' in page
    assert 'data-label="sms: sent" data-value="1"' in page
    assert 'data-label="wants_agent" data-value="1"' in page
    assert 'data-label="abandoned" data-value="3"' in page
    assert sum(int(n) for n in re.findall(r'<rect [^>]*data-count="(\d+)"', page)) == 4
    assert " style=" not in page and "<script>" not in page

    week = client.get("/ops/dashboard?period=7d").get_data(as_text=True)
    assert re.search(r'data-testid="calls">5<', week)
    assert client.get("/ops/dashboard?period=1y").status_code == 404
    support = client.get("/ops/dashboard?flow=support").get_data(as_text=True)
    assert re.search(r'data-testid="calls">4<', support)
    assert client.get("/ops/dashboard?flow=nosuch").status_code == 404


def test_the_flow_filters_offer_the_flows_the_service_knows(console: Flask, working: Path) -> None:
    """Flows come from the service (its flow, working files, stored versions), not from
    the calls stored: a known flow without calls is offered and answers with none."""
    add_flow(working, "quiet")
    add_call(console, HANG_UP_AT_LANGUAGE)
    client = signed_in(console, "supervisor")
    calls = client.get("/ops/calls?flow=quiet")
    assert calls.status_code == 200
    assert listed(calls.get_data(as_text=True)) == []
    assert '<option value="quiet" selected>quiet</option>' in calls.get_data(as_text=True)
    board = client.get("/ops/dashboard?flow=quiet")
    assert board.status_code == 200
    assert re.search(r'data-testid="calls">0<', board.get_data(as_text=True))
    assert '<option value="support">support</option>' in board.get_data(as_text=True)
