"""The ops console's audit page: publishes and rollbacks (from the CLI or the console),
draft edits and staff sign-ins, newest first, filtered by person, flow and kind, paged;
readable by supervisors, not by agents; never what happened on callers' calls."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from agent_kit import PASSWORD, add_user, sign_in
from flask import Flask
from flask.testing import FlaskClient
from kit import JANE_PHONE, add_account, new_sid

from ivr.storage import audit, db
from ivr.storage.models import FlowVersion

ROOT = Path(__file__).resolve().parent.parent
OLD_WELCOME = "Thank you for calling Example support."
NEW_WELCOME = "Welcome to Example support, audited."


@pytest.fixture
def ops_app(make_app: Any, working: Path, monkeypatch: pytest.MonkeyPatch) -> Flask:
    monkeypatch.setenv("IVR_OPERATOR", "carol")  # who the CLI says publishes
    app: Flask = make_app(
        IVR_FLOWS_DIR=str(working / "flows"), IVR_PROMPTS_DIR=str(working / "prompts")
    )
    return app


def flows(app: Flask, *args: str) -> Any:
    result = app.test_cli_runner().invoke(args=["flows", *args])
    assert result.exit_code == 0, result.output
    return result


@dataclass
class Element:
    """An element of a parsed page: enough of a DOM to read what a browser would show."""

    tag: str
    attrs: dict[str, str]
    children: list[Element | str] = field(default_factory=list)

    def text(self) -> str:
        """The element's text, its whitespace collapsed."""
        parts = [c if isinstance(c, str) else c.text() for c in self.children]
        return " ".join(" ".join(parts).split())

    def all(self, match: Callable[[Element], bool]) -> Iterator[Element]:
        """Every element under this one that `match` accepts, in document order."""
        for child in self.children:
            if isinstance(child, Element):
                if match(child):
                    yield child
                yield from child.all(match)

    def one(self, match: Callable[[Element], bool]) -> Element | None:
        """The first element under this one that `match` accepts."""
        return next(self.all(match), None)


VOID = {"input", "meta", "link", "br", "img", "hr"}


class _Tree(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.root = Element("document", {})
        self.open = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v if v is not None else "" for k, v in attrs})
        self.open[-1].children.append(element)
        if tag not in VOID:
            self.open.append(element)

    def handle_endtag(self, tag: str) -> None:
        while len(self.open) > 1 and self.open.pop().tag != tag:
            pass

    def handle_data(self, data: str) -> None:
        self.open[-1].children.append(data)


def parse(html: str) -> Element:
    tree = _Tree()
    tree.feed(html)
    return tree.root


def has_class(name: str) -> Callable[[Element], bool]:
    return lambda e: name in e.attrs.get("class", "").split()


def by_id(name: str) -> Callable[[Element], bool]:
    return lambda e: e.attrs.get("id") == name


def publish_two_and_roll_back(app: Flask, working: Path) -> tuple[str, str]:
    """Publish the working files, then a changed greeting, then roll back to the first."""
    first = json.loads(flows(app, "publish", "-m", "first words", "--json").output)["version"]
    path = working / "prompts/en-US.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace(OLD_WELCOME, NEW_WELCOME), "utf-8")
    second = json.loads(flows(app, "publish", "-m", "friendlier", "--json").output)["version"]
    flows(app, "rollback")
    return first, second


def signed_in(app: Flask, username: str, role: str) -> FlaskClient:
    add_user(app, username, role=role)
    client = app.test_client()
    assert sign_in(client, username).status_code == 303
    return client


def rows(client: FlaskClient, query: str = "") -> list[dict[str, str]]:
    """The events listed on the page (asserting a 200): action, who, flow, what."""
    response = client.get(f"/ops/audit{query}")
    assert response.status_code == 200, response.get_data(as_text=True)
    return listed(response.get_data(as_text=True))


def listed(html: str) -> list[dict[str, str]]:
    rows = parse(html).all(lambda e: e.tag == "tr" and "data-action" in e.attrs)

    def cell(row: Element, name: str) -> str:
        found = row.one(has_class(name))
        assert found is not None
        return found.text()

    return [
        {
            "action": row.attrs["data-action"],
            "who": cell(row, "person"),
            "flow": cell(row, "flow"),
            "what": cell(row, "what"),
        }
        for row in rows
    ]


def record(app: Flask, action: str, actor: str, **details: Any) -> None:
    with app.app_context():
        audit.record(db.session(), action, actor=actor, details=details)


# --- what the page lists --------------------------------------------------------------------


def test_publishes_rollbacks_and_sign_ins_newest_first(ops_app: Flask, working: Path) -> None:
    first, second = publish_two_and_roll_back(ops_app, working)
    supervisor = signed_in(ops_app, "sue", "supervisor")

    listed_rows = rows(supervisor)
    assert [row["action"] for row in listed_rows] == [
        "agent.login",
        "flow.rolled_back",
        "flow.published",
        "flow.published",
    ]
    login, rolled, published, earliest = listed_rows
    assert login["who"] == "sue" and login["flow"] == "—"
    assert "Signed in" in login["what"] and "supervisor, password only" in login["what"]
    assert rolled["who"] == "carol · command line" and rolled["flow"] == "support"
    assert rolled["what"] == (
        f"Rolled back version {second[:12]} → version {first[:12]} published as “first words”"
    )
    assert published["what"] == (
        f"Published version {first[:12]} → version {second[:12]} “friendlier”"
    )
    assert earliest["what"] == f"Published nothing live → version {first[:12]} “first words”"


def test_versions_link_to_their_flow_page(ops_app: Flask, working: Path) -> None:
    first, second = publish_two_and_roll_back(ops_app, working)
    html = signed_in(ops_app, "sue", "supervisor").get("/ops/audit").get_data(as_text=True)
    links = {
        a.attrs["href"]
        for cell in parse(html).all(has_class("what"))
        for a in cell.all(lambda e: e.tag == "a")
    }
    assert f"/ops/flows/support?version={first}" in links
    assert f"/ops/flows/support?version={second}" in links


def test_refused_sign_ins_and_sign_outs_are_listed_with_the_reason(app: Flask) -> None:
    add_user(app, "alice")
    stranger = app.test_client()
    assert sign_in(stranger, "alice", "not the password").status_code == 401
    assert sign_in(stranger, "mallory", PASSWORD).status_code == 401
    olga = signed_in(app, "olga", "ops")
    listed_rows = rows(olga, "?kind=sign_ins")
    assert [(row["action"], row["who"]) for row in listed_rows] == [
        ("agent.login", "olga"),
        ("agent.login_failed", "mallory"),
        ("agent.login_failed", "alice"),
    ]
    assert listed_rows[1]["what"] == "Sign-in refused no such user from 127.0.0.1"
    assert listed_rows[2]["what"] == "Sign-in refused wrong password from 127.0.0.1"
    assert PASSWORD not in olga.get("/ops/audit").get_data(as_text=True)
    # Alice's person filter has the refused sign-in typed as her name, and nothing else.
    assert [row["action"] for row in rows(olga, "?person=alice")] == ["agent.login_failed"]


def test_a_typed_name_cannot_pose_as_a_signed_in_person(app: Flask) -> None:
    """Anyone may type anything at the sign-in: "ops:olga" or "agent:1" must not show up
    as olga's doing, and text no username can be (often a password typed in the wrong
    field) is not kept."""
    olga = signed_in(app, "olga", "ops")
    stranger = app.test_client()
    for typed in ("ops:olga", "agent:1", "Tr0ub4dor&3 pass"):
        assert sign_in(stranger, typed, "whatever").status_code == 401
    refused = [row for row in rows(olga, "?kind=sign_ins") if row["action"] == "agent.login_failed"]
    assert [row["who"] for row in refused] == ["(not a username)"] * 3
    assert [row["action"] for row in rows(olga, "?person=olga")] == ["agent.login"]
    page = olga.get("/ops/audit").get_data(as_text=True)
    assert "Tr0ub4dor" not in page and "ops:olga" not in page


def test_draft_edits_read_as_what_changed(app: Flask) -> None:
    record(app, "ops.draft_started", "ops:olga", flow="support", based_on="ab" * 32)
    record(
        app,
        "ops.draft_edited",
        "ops:olga",
        flow="support",
        prompt="welcome",
        texts={"en-US": "Hello there.", "es-US": "Hola."},
        revision=2,
    )
    record(
        app,
        "ops.draft_edited",
        "ops:olga",
        flow="support",
        node="menu",
        fields=["options", "timeout"],
        revision=3,
    )
    record(app, "ops.draft_discarded", "ops:olga", flow="support", revision=3)
    listed_rows = rows(signed_in(app, "olga", "ops"), "?kind=drafts")
    assert [row["what"] for row in listed_rows] == [
        "Discarded the draft revision 3",
        "Edited node menu fields: options, timeout revision 3",
        "Edited prompt welcome en-US: “Hello there.” es-US: “Hola.” revision 2",
        f"Started a draft from version {'ab' * 6}",
    ]
    assert {row["who"] for row in listed_rows} == {"olga · console"}


def test_staff_accounts_changed_on_the_command_line(app: Flask, runner) -> None:  # type: ignore[no-untyped-def]
    added = runner.invoke(args=["users", "add", "bob", "--password-stdin"], input=f"{PASSWORD}\n")
    assert added.exit_code == 0, added.output
    assert runner.invoke(args=["users", "disable", "bob"]).exit_code == 0
    listed_rows = rows(signed_in(app, "olga", "ops"), "?kind=accounts")
    assert [(row["who"], row["what"]) for row in listed_rows] == [
        ("cli · command line", "Disabled bob"),
        ("cli · command line", "Added agent bob"),
    ]


def test_nothing_of_callers_calls_is_shown(app: Flask) -> None:
    jane = add_account(app, "Jane Doe", JANE_PHONE, "10004321", "jane@example.com")
    call_sid = new_sid()
    with app.app_context():
        for action in (
            "agent.screen_pop",
            "agent.code_sent",
            "call.ended",
            "verification.digits_failed",
        ):
            audit.record(
                db.session(),
                action,
                actor="agent:1" if action.startswith("agent.") else "voice",
                call_sid=call_sid,
                account_id=jane,
                details={"flow": "support", "to": "+1415•••0100"},
            )
    with app.app_context():
        db.session().add(FlowVersion(flow="support", version="cd" * 32, published_by="carol"))
        db.session().commit()
    record(app, "flow.published", "carol", flow="support", to="cd" * 32, message="ok")
    client = signed_in(app, "sue", "supervisor")
    for query in ("", "?flow=support", "?person=sue", "?kind=sign_ins"):
        html = client.get(f"/ops/audit{query}").get_data(as_text=True)
        assert call_sid not in html and "•••0100" not in html, query
        assert not {row["action"] for row in listed(html)} - {"flow.published", "agent.login"}
    assert [row["action"] for row in rows(client, "?flow=support")] == ["flow.published"]


# --- filters --------------------------------------------------------------------------------


@pytest.fixture
def mixed(app: Flask) -> FlaskClient:
    """Publishes of two flows by carol (CLI) and olga (console), a draft edit of each
    flow, and sign-ins of olga and sue; returns sue's (a supervisor's) client."""
    with app.app_context():
        for flow in ("support", "billing"):
            db.session().add(FlowVersion(flow=flow, version="0" * 64, published_by="carol"))
        db.session().commit()
    olga = signed_in(app, "olga", "ops")
    record(app, "flow.published", "carol", flow="support", to="aa" * 32, message="one")
    record(app, "flow.published", "ops:olga", flow="billing", to="bb" * 32, message="two")
    record(app, "ops.draft_edited", "ops:olga", flow="support", node="menu", fields=["x"])
    record(app, "ops.draft_edited", "ops:olga", flow="billing", node="menu", fields=["y"])
    record(app, "flow.rolled_back", "ops:olga", flow="support", to="aa" * 32)
    # The console's sign-out form carries the one session token the agent page checks.
    assert olga.post("/agent/logout", data={"csrf_token": csrf_of_console(olga)}).status_code == 303
    return signed_in(app, "sue", "supervisor")


def csrf_of_console(client: FlaskClient) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/ops/").get_data(True))
    assert found
    return found.group(1)


def actions(client: FlaskClient, query: str) -> list[tuple[str, str]]:
    return [(row["action"], row["flow"]) for row in rows(client, query)]


def test_everything_unfiltered(mixed: FlaskClient) -> None:
    assert actions(mixed, "") == [
        ("agent.login", "—"),
        ("agent.logout", "—"),
        ("flow.rolled_back", "support"),
        ("ops.draft_edited", "billing"),
        ("ops.draft_edited", "support"),
        ("flow.published", "billing"),
        ("flow.published", "support"),
        ("agent.login", "—"),
    ]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (
            "?person=olga",  # console edits, her sign-in and her sign-out: one person
            [
                ("agent.logout", "—"),
                ("flow.rolled_back", "support"),
                ("ops.draft_edited", "billing"),
                ("ops.draft_edited", "support"),
                ("flow.published", "billing"),
                ("agent.login", "—"),
            ],
        ),
        ("?person=carol", [("flow.published", "support")]),
        ("?person=sue", [("agent.login", "—")]),
        (
            "?flow=support",
            [
                ("flow.rolled_back", "support"),
                ("ops.draft_edited", "support"),
                ("flow.published", "support"),
            ],
        ),
        ("?flow=billing&kind=publishes", [("flow.published", "billing")]),
        ("?kind=drafts", [("ops.draft_edited", "billing"), ("ops.draft_edited", "support")]),
        ("?kind=sign_ins&person=olga", [("agent.logout", "—"), ("agent.login", "—")]),
        ("?person=olga&flow=support&kind=publishes", [("flow.rolled_back", "support")]),
        ("?person=carol&flow=billing", []),
        ("?person=sue&kind=drafts", []),
    ],
)
def test_filters_narrow_the_list(
    mixed: FlaskClient, query: str, expected: list[tuple[str, str]]
) -> None:
    assert actions(mixed, query) == expected


def test_an_empty_result_says_so(mixed: FlaskClient) -> None:
    html = mixed.get("/ops/audit?person=carol&flow=billing").get_data(as_text=True)
    assert "No events match these filters." in html
    assert 'href="/ops/audit">Clear filters' in html


def test_the_filters_offer_the_people_and_flows_seen(mixed: FlaskClient) -> None:
    page = parse(mixed.get("/ops/audit?flow=billing").get_data(as_text=True))

    def options(name: str) -> list[Element]:
        select = page.one(by_id(name))
        assert select is not None and select.tag == "select"
        return list(select.all(lambda e: e.tag == "option"))

    people = {o.attrs["value"]: o.text() for o in options("person")}
    assert people == {
        "": "Everyone",
        "carol": "carol (command line)",
        "olga": "olga (ops)",
        "sue": "sue (supervisor)",
    }
    assert [o.attrs["value"] for o in options("flow")] == ["", "billing", "support"]
    assert [o.attrs["value"] for o in options("flow") if "selected" in o.attrs] == ["billing"]
    form = page.one(lambda e: e.attrs.get("data-testid") == "filters")
    assert form is not None and form.attrs["method"] == "get"
    assert form.one(lambda e: e.attrs.get("name") == "csrf_token") is None


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("?person=nobody", "person", "Nobody by that name"),
        ("?flow=nowhere", "flow", "There is no flow by that name."),
        ("?kind=everything", "kind", "Choose one of: Publishes and rollbacks"),
        ("?flow=" + "x" * 300, "flow", "There is no flow by that name."),
    ],
)
def test_a_bad_filter_is_marked_and_lists_nothing(
    mixed: FlaskClient, query: str, field: str, message: str
) -> None:
    response = mixed.get(f"/ops/audit{query}")
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    page = parse(html)
    select = page.one(by_id(field))
    assert select is not None and select.tag == "select"
    assert select.attrs.get("aria-invalid") == "true"
    assert select.attrs.get("aria-describedby") == f"{field}-error"
    error = page.one(by_id(f"{field}-error"))
    assert error is not None and message in error.text()
    assert listed(html) == []  # never the unfiltered list instead


@pytest.mark.parametrize("query", ["?before=abc", "?after=-3", "?before=0"])
def test_a_broken_page_link_is_a_400_not_a_500(mixed: FlaskClient, query: str) -> None:
    response = mixed.get(f"/ops/audit{query}")
    assert response.status_code == 400
    assert 'data-testid="cursor-error"' in response.get_data(as_text=True)


# --- pages ----------------------------------------------------------------------------------


def test_pages_of_fifty_newest_first_with_the_filters_kept(app: Flask) -> None:
    with app.app_context():
        db.session().add(FlowVersion(flow="support", version="0" * 64, published_by="carol"))
        db.session().commit()
    for number in range(120):
        record(app, "ops.draft_edited", "ops:olga", flow="support", node=f"n{number}")
    record(app, "ops.draft_edited", "ops:olga", flow="other", node="elsewhere")
    client = signed_in(app, "sue", "supervisor")

    def page(url: str) -> tuple[list[str], Element]:
        response = client.get(url)
        assert response.status_code == 200
        html = response.get_data(as_text=True)
        nodes = [row["what"].split()[2] for row in listed(html)]
        return nodes, parse(html)

    def link(soup: Element, testid: str) -> str | None:
        found = soup.one(lambda e: e.tag == "a" and e.attrs.get("data-testid") == testid)
        return found.attrs["href"] if found else None

    first, soup = page("/ops/audit?flow=support&kind=drafts")
    assert first == [f"n{number}" for number in range(119, 69, -1)]
    assert link(soup, "newer") is None
    older = link(soup, "older")
    assert older is not None and "flow=support" in older and "kind=drafts" in older

    second, soup = page(older)
    assert second == [f"n{number}" for number in range(69, 19, -1)]
    third, soup = page(str(link(soup, "older")))
    assert third == [f"n{number}" for number in range(19, -1, -1)]
    assert link(soup, "older") is None  # "elsewhere" is another flow's: filtered out

    back, soup = page(str(link(soup, "newer")))
    assert back == second
    assert page(str(link(soup, "newer")))[0] == first


# --- who may read it ------------------------------------------------------------------------


@pytest.mark.parametrize(("role", "status"), [("ops", 200), ("supervisor", 200), ("agent", 403)])
def test_ops_and_supervisors_read_it_agents_do_not(app: Flask, role: str, status: int) -> None:
    record(app, "flow.published", "carol", flow="support", to="aa" * 32, message="secret plan")
    response = signed_in(app, "sam", role).get("/ops/audit")
    assert response.status_code == status
    assert ("secret plan" in response.get_data(as_text=True)) is (status == 200)


def test_a_visitor_is_sent_to_sign_in(app: Flask) -> None:
    response = app.test_client().get("/ops/audit?kind=drafts")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/agent/login?next=/ops/audit")


def test_the_menu_links_the_page_and_it_keeps_the_console_headers(app: Flask) -> None:
    client = signed_in(app, "olga", "ops")
    response = client.get("/ops/")
    assert 'href="/ops/audit"' in response.get_data(as_text=True)
    audit_page = client.get("/ops/audit")
    policy = audit_page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "style-src 'self'" in policy
    assert "style=" not in audit_page.get_data(as_text=True)
