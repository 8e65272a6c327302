"""The flows page of the ops console: the list of flows with their live versions, a
version drawn as a diagram (parsed as SVG), a node's panel with its fields and its
prompts in every language, and checks' findings highlighted on the diagram."""

from __future__ import annotations

import itertools
import shutil
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from agent_kit import add_user, sign_in
from flask import Flask
from flask.testing import FlaskClient
from markupsafe import escape

from ivr.errors import DefinitionProblem, InvalidDefinition
from ivr.ops.diagram_view import Finding, findings_of, render_diagram
from ivr.storage import db, kv
from ivr.storage.models import FlowDraft
from ivr.versions import publish, store

ROOT = Path(__file__).resolve().parent.parent
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def working(tmp_path: Path) -> Path:
    """flows/ and prompts/ copied, with a second flow that was never published."""
    shutil.copytree(ROOT / "flows", tmp_path / "flows")
    shutil.copytree(ROOT / "prompts", tmp_path / "prompts")
    text = (ROOT / "flows" / "support.yaml").read_text(encoding="utf-8")
    (tmp_path / "flows" / "sales.yaml").write_text(
        text.replace("name: support", "name: sales", 1), encoding="utf-8"
    )
    return tmp_path


@pytest.fixture
def ops_app(make_app: Any, working: Path) -> Flask:
    app: Flask = make_app(
        IVR_FLOWS_DIR=str(working / "flows"), IVR_PROMPTS_DIR=str(working / "prompts")
    )
    return app


def publish_working(app: Flask, working: Path, message: str = "first cut") -> str:
    """Publish the working files of `support` as olga would from the CLI; its version id."""
    with app.app_context():
        outcome = publish.publish(
            db.session(),
            kv.client(),
            flows_dir=working / "flows",
            prompts_dir=working / "prompts",
            flow="support",
            region="US",
            by="ops:olga",
            message=message,
        )
        return outcome.version


def signed_in(app: Flask, role: str = "ops") -> FlaskClient:
    add_user(app, "sam", role=role)
    client = app.test_client()
    assert sign_in(client, "sam").status_code == 303
    return client


def svg_of(page: str) -> ET.Element:
    """The diagram's SVG element, parsed as XML (so it must be well-formed)."""
    start, end = page.index("<svg"), page.index("</svg>") + len("</svg>")
    return ET.fromstring(page[start:end])


def nodes_of(svg: ET.Element) -> dict[str, ET.Element]:
    groups = svg.findall(f".//{SVG}a[@data-node]") + svg.findall(f".//{SVG}g[@data-node]")
    return {g.attrib["data-node"]: g for g in groups}


def classes(element: ET.Element) -> set[str]:
    return set(element.attrib.get("class", "").split())


# ------------------------------------------------------------------ the list


@pytest.mark.parametrize("role", ["ops", "supervisor"])
def test_the_list_shows_each_flow_with_its_live_version(
    ops_app: Flask, working: Path, role: str
) -> None:
    version = publish_working(ops_app, working, "greeting reworded")
    client = signed_in(ops_app, role)
    answer = client.get("/ops/")
    assert answer.status_code == 200
    page = answer.get_data(as_text=True)
    support = page[page.index('data-flow="support"') : page.index('data-flow="sales"')]
    assert f'<code data-testid="live-version">{version}</code>' in support
    assert "published by ops:olga" in support and "greeting reworded" in support
    assert 'href="/ops/flows/support"' in support
    sales = page[page.index('data-flow="sales"') :]
    assert "not published" in sales and 'href="/ops/flows/sales"' in sales


def test_the_list_says_when_a_draft_exists(ops_app: Flask, working: Path) -> None:
    publish_working(ops_app, working)
    with ops_app.app_context():
        db.session().add(
            FlowDraft(
                flow="support", files={}, revision=3, created_by="ops:olga", updated_by="ops:olga"
            )
        )
        db.session().commit()
    page = signed_in(ops_app).get("/ops/").get_data(as_text=True)
    support = page[page.index('data-flow="support"') : page.index('data-flow="sales"')]
    assert "revision 3, by ops:olga" in support
    if "ops.draft" in ops_app.view_functions:
        assert 'href="/ops/flows/support/draft"' in support
    sales = page[page.index('data-flow="sales"') :]
    assert "revision" not in sales


def test_an_agent_may_not_see_the_flows(ops_app: Flask) -> None:
    client = signed_in(ops_app, "agent")
    for path in ("/ops/", "/ops/flows/support", "/ops/flows/support?node=menu"):
        answer = client.get(path)
        assert answer.status_code == 403, path
        assert "for ops staff and supervisors" in answer.get_data(as_text=True)


def test_a_visitor_is_sent_to_sign_in(ops_app: Flask) -> None:
    answer = ops_app.test_client().get("/ops/flows/support?node=menu")
    assert answer.status_code == 302
    assert answer.headers["Location"].startswith("/agent/login?next=/ops/flows/support")


# ------------------------------------------------------------------ a flow


@pytest.mark.parametrize("role", ["ops", "supervisor"])
def test_the_live_version_is_drawn(ops_app: Flask, working: Path, role: str) -> None:
    version = publish_working(ops_app, working, "first cut")
    answer = signed_in(ops_app, role).get("/ops/flows/support")
    assert answer.status_code == 200
    page = answer.get_data(as_text=True)
    assert f'<code data-testid="version">{version}</code>' in page
    assert "Published by ops:olga" in page and "first cut" in page
    svg = svg_of(page)
    assert svg.attrib["viewBox"] == f"0 0 {svg.attrib['width']} {svg.attrib['height']}"
    nodes = nodes_of(svg)
    assert len(nodes) == 48
    menu = nodes["menu"]
    assert menu.attrib["href"] == "/ops/flows/support?node=menu"
    assert menu.attrib["role"] == "link" and menu.attrib["aria-label"].startswith("menu: menu")
    ports = [t.text for t in menu.iter(f"{SVG}text") if "port" in classes(t)]
    assert ports[:2] == ["press 1 → change_number", "press 2 → agent_verified"]
    for text in svg.iter(f"{SVG}text"):
        assert {"x", "y", "font-size", "data-width"} <= set(text.attrib)
    assert "is-protected" in classes(nodes["new_number"])
    assert nodes["new_number"].find(f"{SVG}g[@class='badge badge-lock']") is not None
    assert "is-terminal" in classes(nodes["goodbye"])
    assert "is-terminal" in classes(nodes["voicemail"])  # a message ends the call
    assert "is-terminal" not in classes(nodes["agents_busy"])  # says so, then voicemail
    assert "is-start" in classes(nodes["hours"])
    assert "fam-code" in classes(nodes["enter_code"]) and "fam-identify" in classes(nodes["last4"])
    edges = svg.findall(f".//{SVG}path[@data-from]")
    assert len(edges) == sum(len(list(n.iter(f"{SVG}text"))) - 2 for n in nodes.values())
    back = [e for e in edges if "is-back" in classes(e)]
    assert any(
        e.attrib["data-from"] == "number_changed" and e.attrib["data-to"] == "menu" for e in back
    )
    assert not any("is-selected" in classes(n) for n in nodes.values())
    # The page's own script and styles only (the CSP allows no other).
    assert "/ops/static/diagram.js" in page and "/ops/static/diagram.css" in page
    assert "style=" not in page and "onclick" not in page


def test_a_flow_never_published_shows_its_working_files(ops_app: Flask) -> None:
    page = signed_in(ops_app).get("/ops/flows/sales").get_data(as_text=True)
    assert "working files, never published" in page
    assert len(nodes_of(svg_of(page))) == 48


def test_any_stored_version_by_its_first_digits(ops_app: Flask, working: Path) -> None:
    old = publish_working(ops_app, working, "first cut")
    prompts = working / "prompts" / "en-US.yaml"
    text = prompts.read_text(encoding="utf-8")
    prompts.write_text(
        text.replace("Thank you for calling Example support.", "Hello, Example support here."),
        encoding="utf-8",
    )
    new = publish_working(ops_app, working, "shorter greeting")
    assert new != old
    client = signed_in(ops_app)
    page = client.get(f"/ops/flows/support?version={old[:6]}&node=welcome").get_data(as_text=True)
    assert f'<code data-testid="version">{old}</code>' in page and "not live" in page
    assert "Thank you for calling Example support." in page
    # Links on the diagram stay on the version shown.
    welcome = nodes_of(svg_of(page))["language"]
    assert welcome.attrib["href"] == f"/ops/flows/support?version={old[:6]}&node=language"
    live = client.get("/ops/flows/support?node=welcome").get_data(as_text=True)
    assert f'<code data-testid="version">{new}</code>' in live
    assert "Hello, Example support here." in live


@pytest.mark.parametrize(
    ("version", "says"),
    [("0000000000", "has no version '0000000000'"), ("ab", "at least 4 characters")],
)
def test_an_unknown_version_is_a_404_that_says_so(
    ops_app: Flask, working: Path, version: str, says: str
) -> None:
    publish_working(ops_app, working)
    answer = signed_in(ops_app).get(f"/ops/flows/support?version={version}")
    assert answer.status_code == 404
    assert str(escape(says)) in answer.get_data(as_text=True)


def test_an_unknown_flow_is_a_404(ops_app: Flask) -> None:
    answer = signed_in(ops_app).get("/ops/flows/nonesuch")
    assert answer.status_code == 404
    assert "There is no flow named &#39;nonesuch&#39;" in answer.get_data(as_text=True)


# ------------------------------------------------------------------ a node


def catalog_texts(working: Path) -> dict[str, dict[str, str]]:
    draft = store.read_draft(working / "flows", working / "prompts", "support", "US")
    catalog = draft.loaded.catalog
    return {language: dict(catalog.languages[language].texts) for language in ("en-US", "es-US")}


def test_a_node_shows_its_fields_and_its_prompts_in_both_languages(
    ops_app: Flask, working: Path
) -> None:
    publish_working(ops_app, working)
    page = (
        signed_in(ops_app, "supervisor").get("/ops/flows/support?node=menu").get_data(as_text=True)
    )
    panel = page[page.index('<aside class="card node-panel"') : page.index("</aside>")]
    assert 'data-testid="node-type">menu<' in panel
    assert '<a href="/ops/flows/support?node=change_number" data-to="change_number">' in panel
    assert (
        '<th scope="row">press 1</th>' in panel and '<th scope="row">too_many_tries</th>' in panel
    )
    assert 'data-field="max_tries">3<' in panel and 'data-field="timeout">' in panel
    texts = catalog_texts(working)
    for language in ("en-US", "es-US"):
        for key in ("main_menu", "main_menu_retry"):
            text = str(escape(texts[language][key]))
            assert f'<q lang="{language}">{text}</q>' in panel
            assert f'data-speak="{text}" data-lang="{language}" hidden' in panel
    assert "/ops/static/speak.js" in page
    selected = nodes_of(svg_of(page))["menu"]
    assert "is-selected" in classes(selected) and selected.attrib["aria-current"] == "true"
    # Where the node is reached from.
    assert '<a href="/ops/flows/support?node=number_changed">number_changed</a>' in panel


def test_a_transfer_shows_its_target_and_a_language_choice_its_languages(
    ops_app: Flask, working: Path
) -> None:
    publish_working(ops_app, working)
    client = signed_in(ops_app)
    transfer = client.get("/ops/flows/support?node=agent_verified").get_data(as_text=True)
    assert 'data-field="target">the configured agent target<' in transfer
    assert "caller_request" in transfer
    language = client.get("/ops/flows/support?node=language").get_data(as_text=True)
    panel = language[language.index('<aside class="card node-panel"') :]
    assert '<tr><th scope="row">press 2</th><td>es-US</td></tr>' in panel


def test_an_unknown_node_is_said_in_the_panel(ops_app: Flask, working: Path) -> None:
    publish_working(ops_app, working)
    answer = signed_in(ops_app).get("/ops/flows/support?node=nowhere")
    assert answer.status_code == 200
    page = answer.get_data(as_text=True)
    assert "No node named <code>nowhere</code> in this version of support" in page
    assert len(nodes_of(svg_of(page))) == 48


# ------------------------------------------------------------------ findings


def broken_problems() -> list[DefinitionProblem]:
    """The default flow with the code-trouble menu (reached before any code passed)
    offering the number change: the proofs refuse it."""
    files = {
        "flows/support.yaml": (ROOT / "flows" / "support.yaml").read_text(encoding="utf-8"),
        "prompts/en-US.yaml": (ROOT / "prompts" / "en-US.yaml").read_text(encoding="utf-8"),
        "prompts/es-US.yaml": (ROOT / "prompts" / "es-US.yaml").read_text(encoding="utf-8"),
    }
    old = "      4: agent_unverified\n    no_input: agent_unverified\n    invalid: code_trouble"
    assert old in files["flows/support.yaml"]
    files["flows/support.yaml"] = files["flows/support.yaml"].replace(
        old, old.replace("4: agent_unverified", "4: new_number")
    )
    with pytest.raises(InvalidDefinition) as caught:
        store.load_files(files, "support", "US")
    return caught.value.problems


def test_findings_follow_the_proofs_path_to_the_unprotected_number_change(ops_app: Flask) -> None:
    problems = broken_problems()
    with ops_app.app_context():
        flow = store.read_draft(ROOT / "flows", ROOT / "prompts", "support", "US").loaded.flow
    findings = findings_of(problems, flow)
    ours = [f for f in findings if f.nodes and f.nodes[-1] == "new_number"]
    assert len(ours) == 1
    path = ours[0].nodes
    assert path[:2] == ("hours", "welcome") and "code_trouble" in path
    assert path.index("code_trouble") == len(path) - 2  # code_trouble[4] → new_number
    assert "changes the phone number" in ours[0].message
    with ops_app.test_request_context():
        markup = render_diagram(flow, link=lambda n: f"/x?node={n}", findings=ours)
    root = ET.fromstring(str(markup))  # the whole fragment is well-formed XML
    svg = root.find(f".//{SVG}svg")
    assert svg is not None
    nodes = nodes_of(svg)
    marked = {n for n, g in nodes.items() if "on-finding" in classes(g)}
    assert set(path) <= marked
    assert "has-finding" in classes(nodes["new_number"])
    assert "has-finding" not in classes(nodes["welcome"])
    edges = {
        (e.attrib["data-from"], e.attrib["data-to"])
        for e in svg.iter(f"{SVG}path")
        if "on-finding" in classes(e)
    }
    assert ("hours", "welcome") in edges and ("welcome", "language") in edges
    # The path's own steps only; code_trouble → new_number is no edge of the drawn flow.
    assert edges == {
        pair for pair in itertools.pairwise(path) if pair != ("code_trouble", "new_number")
    }
    listed = root.find(".//ol[@class='diagram-findings']")
    assert listed is not None
    links = [a.attrib["href"] for a in listed.iter("a")]
    assert "/x?node=new_number" in links


def test_a_trap_highlights_the_way_in_then_the_cycle(ops_app: Flask) -> None:
    with ops_app.app_context():
        flow = store.read_draft(ROOT / "flows", ROOT / "prompts", "support", "US").loaded.flow
    message = (
        "a trap: these nodes only lead to each other, never to a transfer or hang-up:"
        " menu[1] → change_number[allowed] → new_number[no_input] → menu; reached after full"
        " verification by hours[open] → welcome → language → identify[one_account] → last4[ok] → send_sms[sent]"
        " → enter_code[ok] → menu"
    )
    problem = DefinitionProblem("flows/support.yaml", "menu", "", message)
    (finding,) = findings_of([problem], flow)
    assert finding.nodes == (
        "hours", "welcome", "language", "identify", "last4", "send_sms", "enter_code",
        "menu", "change_number", "new_number", "menu",
    )  # fmt: skip
    assert finding.message.startswith("menu: a trap")


def test_a_problem_without_a_path_marks_its_node_or_none(ops_app: Flask) -> None:
    with ops_app.app_context():
        flow = store.read_draft(ROOT / "flows", ROOT / "prompts", "support", "US").loaded.flow
    problems = [
        DefinitionProblem("flows/support.yaml", "menu", "timeout", "must be at most 30"),
        DefinitionProblem(
            "prompts/es-US.yaml", "main_menu", "", "uses {nombre}, not a placeholder"
        ),
    ]
    assert findings_of(problems, flow) == [
        Finding("menu timeout: must be at most 30", ("menu",)),
        Finding("main_menu: uses {nombre}, not a placeholder", ()),
    ]
    with ops_app.test_request_context():
        root = ET.fromstring(str(render_diagram(flow, findings=findings_of(problems, flow))))
    items = root.findall(".//ol[@class='diagram-findings']/li")
    assert [item.find("strong") is not None for item in items] == [True, False]
    nodes = nodes_of(root)
    assert classes(nodes["menu"]) >= {"has-finding", "on-finding"}
    assert nodes["menu"].attrib["tabindex"] == "0"  # no link: still focusable


def test_selected_and_current_nodes_are_marked(ops_app: Flask) -> None:
    with ops_app.app_context():
        flow = store.read_draft(ROOT / "flows", ROOT / "prompts", "support", "US").loaded.flow
    with ops_app.test_request_context():
        root = ET.fromstring(str(render_diagram(flow, selected="menu", current="enter_code")))
    nodes = nodes_of(root)
    assert "is-selected" in classes(nodes["menu"]) and "is-current" in classes(nodes["enter_code"])
    assert "is-current" not in classes(nodes["menu"])


def test_a_changed_graph_is_drawn_anew_even_under_the_same_version(ops_app: Flask) -> None:
    with ops_app.app_context():
        flow = store.read_draft(ROOT / "flows", ROOT / "prompts", "support", "US").loaded.flow
    welcome = flow.nodes["welcome"]
    changed = replace(flow, nodes={**flow.nodes, "welcome": replace(welcome, next="identify")})
    assert changed.version == flow.version
    with ops_app.test_request_context():
        before = ET.fromstring(str(render_diagram(flow)))
        after = ET.fromstring(str(render_diagram(changed)))

    def welcome_edges(root: ET.Element) -> list[str]:
        return [
            e.attrib["data-to"]
            for e in root.iter(f"{SVG}path")
            if e.attrib.get("data-from") == "welcome"
        ]

    assert welcome_edges(before) == ["language"]
    assert welcome_edges(after) == ["identify"]


def test_a_flow_only_the_store_knows_is_listed_and_drawn(ops_app: Flask) -> None:
    text = (ROOT / "flows" / "support.yaml").read_text(encoding="utf-8")
    files = {
        "flows/billing.yaml": text.replace("name: support", "name: billing", 1),
        "prompts/en-US.yaml": (ROOT / "prompts" / "en-US.yaml").read_text(encoding="utf-8"),
        "prompts/es-US.yaml": (ROOT / "prompts" / "es-US.yaml").read_text(encoding="utf-8"),
    }
    with ops_app.app_context():
        draft = store.load_files(files, "billing", "US")
        outcome = publish.publish_draft(
            db.session(), kv.client(), draft, by="ops:olga", message="from elsewhere"
        )
    client = signed_in(ops_app, "supervisor")
    listing = client.get("/ops/").get_data(as_text=True)
    billing = listing[listing.index('data-flow="billing"') : listing.index('data-flow="sales"')]
    assert f'<code data-testid="live-version">{outcome.version}</code>' in billing
    page = client.get("/ops/flows/billing").get_data(as_text=True)
    assert f'<code data-testid="version">{outcome.version}</code>' in page
    assert '<span class="badge">live</span>' in page
    assert len(nodes_of(svg_of(page))) == 48
