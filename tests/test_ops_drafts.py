"""The console's drafts in the browser: start a draft from the live version, edit prompts
and node fields through forms (validated on every save), review the diff, publish as the
CLI does, roll back from the history; and who may do what."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from agent_kit import add_user, csrf_of, sign_in
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from ivr.storage import db
from ivr.storage.models import AuditEvent, FlowDraft

ROOT = Path(__file__).resolve().parent.parent
DRAFT = "/ops/flows/support/draft"
WELCOME = "/ops/flows/support/draft/prompts/welcome"
LANGUAGE_NODE = "/ops/flows/support/draft/nodes/language"
REVIEW = "/ops/flows/support/review"
HISTORY = "/ops/flows/support/history"
NEW_EN = "Welcome to Example support, now edited in the browser."
NEW_ES = "Bienvenido al servicio de Example, editado en el navegador."


@pytest.fixture
def console(make_app: Any, working: Path) -> Flask:
    """An app whose working files are a scratch copy, with one version published."""
    app: Flask = make_app(
        IVR_FLOWS_DIR=str(working / "flows"), IVR_PROMPTS_DIR=str(working / "prompts")
    )
    result = app.test_cli_runner().invoke(args=["flows", "publish", "-m", "first"])
    assert result.exit_code == 0, result.output
    return app


def signed_in(app: Flask, username: str, role: str) -> FlaskClient:
    add_user(app, username, role=role)
    client = app.test_client()
    assert sign_in(client, username).status_code == 303
    return client


@pytest.fixture
def ops(console: Flask) -> FlaskClient:
    return signed_in(console, "olga", "ops")


def post(client: FlaskClient, path: str, data: dict[str, Any] | None = None) -> Any:
    return client.post(path, data={**(data or {}), "csrf_token": csrf_of(client, DRAFT)})


def revision(client: FlaskClient) -> int:
    found = re.search(r'data-testid="revision">(\d+)<', client.get(DRAFT).get_data(as_text=True))
    assert found, "no draft revision on the draft page"
    return int(found.group(1))


def draft_row(app: Flask) -> FlowDraft:
    with app.app_context():
        row = db.session().get(FlowDraft, "support")
        assert row is not None
        db.session().expunge(row)
        return row


def audits(app: Flask, action: str) -> list[dict[str, Any]]:
    with app.app_context():
        rows = db.session().scalars(select(AuditEvent).where(AuditEvent.action == action))
        return [{"actor": r.actor, **r.details} for r in rows]


def history(app: Flask) -> list[dict[str, Any]]:
    result = app.test_cli_runner().invoke(args=["flows", "history", "--json"])
    assert result.exit_code == 0, result.output
    items: list[dict[str, Any]] = json.loads(result.output)
    return items


def start_draft(client: FlaskClient) -> None:
    started = post(client, DRAFT)
    assert started.status_code == 303 and started.headers["Location"].endswith(DRAFT)


def save_welcome(client: FlaskClient, en: str, es: str, rev: int | None = None) -> Any:
    rev = revision(client) if rev is None else rev
    return post(client, WELCOME, {"revision": rev, "text_0": en, "text_1": es})


def test_the_whole_round_edit_refuse_fix_review_publish_export_rollback(
    console: Flask, ops: FlaskClient, tmp_path: Path
) -> None:
    assert 'data-testid="no-draft"' in ops.get(DRAFT).get_data(as_text=True)
    start_draft(ops)
    live = history(console)[0]
    with console.app_context():
        from ivr.versions import store

        version = store.find_version(db.session(), "support", live["version"])
        assert version is not None
        live_files = {f.path: f.content for f in version.files}
    row = draft_row(console)
    assert row.files == live_files  # byte for byte
    assert row.based_on == live["version"] and row.created_by == "ops:olga"

    # A placeholder that reveals account data on the welcome (before any verification):
    # saved (it is a draft), shown beside the field with a link to the node.
    saved = save_welcome(ops, "Hello {first_name}, thanks for calling.", NEW_ES)
    assert saved.status_code == 303
    page = ops.get(WELCOME).get_data(as_text=True)
    assert 'data-testid="error-en-US"' in page and "{first_name}" in page
    assert 'aria-invalid="true"' in page
    assert 'href="/ops/flows/support/draft/nodes/welcome"' in page
    assert 'data-testid="problems"' in ops.get(DRAFT).get_data(as_text=True)

    refused = post(ops, REVIEW, {"revision": revision(ops), "message": "greeting"})
    assert refused.status_code == 409
    assert "problem(s)" in refused.get_data(as_text=True)
    assert len(history(console)) == 1

    # Fixed; the prompt files keep their comments, only the welcome lines change.
    assert save_welcome(ops, NEW_EN, NEW_ES).status_code == 303
    row = draft_row(console)
    assert row.revision == 3
    en = row.files["prompts/en-US.yaml"]
    assert en.startswith("# What callers (and, for whisper_*, agents) hear in English.")
    assert f"  welcome: {NEW_EN}\n" in en
    changed = [
        (old, new)
        for old, new in zip(
            live_files["prompts/en-US.yaml"].splitlines(), en.splitlines(), strict=True
        )
        if old != new
    ]
    assert len(changed) == 1
    assert row.files["flows/support.yaml"] == live_files["flows/support.yaml"]
    assert 'data-testid="draft-ok"' in ops.get(DRAFT).get_data(as_text=True)
    edits = audits(console, "ops.draft_edited")
    assert edits[-1]["prompt"] == "welcome" and edits[-1]["texts"]["en-US"] == NEW_EN

    review = ops.get(REVIEW).get_data(as_text=True)
    assert 'data-testid="diff"' in review and NEW_EN in review and NEW_ES in review
    assert "Thank you for calling Example support." in review

    blank = post(ops, REVIEW, {"revision": revision(ops), "message": "  "})
    assert blank.status_code == 422 and 'aria-invalid="true"' in blank.get_data(as_text=True)
    published = post(ops, REVIEW, {"revision": revision(ops), "message": "friendlier greeting"})
    assert published.status_code == 303 and published.headers["Location"].endswith(HISTORY)
    versions = history(console)
    assert versions[0]["live"] and versions[0]["message"] == "friendlier greeting"
    assert versions[0]["by"] == "ops:olga"
    assert "is live" in ops.get(HISTORY).get_data(as_text=True)
    with console.app_context():
        assert db.session().get(FlowDraft, "support") is None
    assert [a["to"] for a in audits(console, "flow.published")][-1] == versions[0]["version"]

    exported = console.test_cli_runner().invoke(
        args=["flows", "export", versions[0]["version"], str(tmp_path / "out")]
    )
    assert exported.exit_code == 0, exported.output
    for path, text in row.files.items():
        assert (tmp_path / "out" / path).read_bytes() == text.encode("utf-8")

    first = versions[1]["version"]
    confirm = ops.get(f"{HISTORY}/{first}/rollback")
    assert confirm.status_code == 200
    assert f"Make version <code>{first}</code>" in confirm.get_data(as_text=True)
    rolled = post(ops, f"{HISTORY}/{first}/rollback", {"live": versions[0]["version"]})
    assert rolled.status_code == 303
    assert [v["version"] for v in history(console) if v["live"]] == [first]
    rollbacks = audits(console, "flow.rolled_back")
    assert rollbacks[-1]["to"] == first and rollbacks[-1]["actor"] == "ops:olga"


def test_a_stale_save_is_refused_and_nothing_is_written(console: Flask, ops: FlaskClient) -> None:
    start_draft(ops)
    before = revision(ops)
    assert save_welcome(ops, NEW_EN, NEW_ES, rev=before).status_code == 303
    stale = save_welcome(ops, "Another greeting.", NEW_ES, rev=before)
    assert stale.status_code == 409
    assert "someone else saved this draft meanwhile: reload" in stale.get_data(as_text=True)
    row = draft_row(console)
    assert row.revision == before + 1 and "Another greeting." not in str(row.files)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("next", "nowhere", "is not a node of this flow"),
        ("max_tries", "11", "must be from 1 to 10"),
        ("max_tries", "0", "must be from 1 to 10"),
        ("options-0-value", "fr-FR", "is not a language of this flow"),
        ("options-1-key", "1", "is given twice"),
    ],
)
def test_bad_node_values_are_marked_and_nothing_is_saved(
    console: Flask, ops: FlaskClient, field: str, value: str, message: str
) -> None:
    start_draft(ops)
    before = draft_row(console)
    form = {
        "revision": before.revision,
        "prompt": "language_option",
        "max_tries": "2",
        "timeout": "",
        "next": "identify",
        "no_input": "identify",
        "invalid": "language",
        "too_many_tries": "identify",
        "options-0-key": "1",
        "options-0-value": "en-US",
        "options-1-key": "2",
        "options-1-value": "es-US",
        field: value,
    }
    answer = post(ops, LANGUAGE_NODE, form)
    assert answer.status_code == 422
    page = answer.get_data(as_text=True)
    assert message in page and 'aria-invalid="true"' in page
    assert draft_row(console).files == before.files
    assert draft_row(console).revision == before.revision


def test_node_fields_are_saved_in_the_yaml_keeping_its_comments(
    console: Flask, ops: FlaskClient
) -> None:
    start_draft(ops)
    form = {
        "revision": revision(ops),
        "prompt": "language_option",
        "max_tries": "4",
        "timeout": "",
        "next": "identify",
        "no_input": "identify",
        "invalid": "language",
        "too_many_tries": "identify",
        "options-0-key": "1",
        "options-0-value": "en-US",
        "options-1-key": "2",
        "options-1-value": "es-US",
        "options-2-key": "3",
        "options-2-value": "es-US",
    }
    assert post(ops, LANGUAGE_NODE, form).status_code == 303
    text = draft_row(console).files["flows/support.yaml"]
    assert "    no_input: identify               # silence keeps the default language\n" in text
    assert "      3: es-US\n    max_tries: 4\n" in text
    edited = audits(console, "ops.draft_edited")[-1]
    assert edited["fields"] == ["max_tries", "options"] and edited["actor"] == "ops:olga"
    assert edited["values"] == {
        "max_tries": 4,
        "options": {"1": "en-US", "2": "es-US", "3": "es-US"},
    }
    page = ops.get(LANGUAGE_NODE).get_data(as_text=True)
    assert 'name="max_tries"' in page and 'min="1"' in page and 'max="10"' in page


def test_a_draft_lives_in_the_database_not_on_one_instance(
    console: Flask, ops: FlaskClient, make_app: Any, working: Path
) -> None:
    start_draft(ops)
    assert save_welcome(ops, NEW_EN, NEW_ES).status_code == 303
    other = make_app(IVR_FLOWS_DIR=str(working / "flows"), IVR_PROMPTS_DIR=str(working / "prompts"))
    client = other.test_client()
    assert sign_in(client, "olga").status_code == 303
    page = client.get(WELCOME).get_data(as_text=True)
    assert NEW_EN in page and 'data-testid="revision"' in client.get(DRAFT).get_data(as_text=True)


def test_discard_asks_first_and_is_audited(console: Flask, ops: FlaskClient) -> None:
    start_draft(ops)
    page = ops.get(DRAFT + "?discard=1").get_data(as_text=True)
    assert 'data-testid="confirm-discard"' in page
    gone = post(ops, DRAFT + "/discard", {"revision": revision(ops)})
    assert gone.status_code == 303
    with console.app_context():
        assert db.session().get(FlowDraft, "support") is None
    assert audits(console, "ops.draft_discarded")[-1]["flow"] == "support"


def test_a_missing_csrf_token_is_refused(console: Flask, ops: FlaskClient) -> None:
    answer = ops.post(DRAFT)
    assert answer.status_code == 400
    with console.app_context():
        assert db.session().get(FlowDraft, "support") is None


GETS = [DRAFT, WELCOME, LANGUAGE_NODE, REVIEW, HISTORY]
POSTS = [DRAFT, DRAFT + "/discard", WELCOME, LANGUAGE_NODE, REVIEW]


def test_a_supervisor_reads_but_changes_nothing(console: Flask, ops: FlaskClient) -> None:
    start_draft(ops)
    first = history(console)[0]["version"]
    supervisor = signed_in(console, "sam", "supervisor")
    for path in [*GETS, f"{HISTORY}/{first}/rollback"]:
        assert supervisor.get(path).status_code == 200, path
    before = draft_row(console)
    for path in [*POSTS, f"{HISTORY}/{first}/rollback"]:
        answer = post(supervisor, path, {"revision": before.revision, "message": "x"})
        assert answer.status_code == 403, path
    assert draft_row(console).files == before.files


def test_an_agent_has_no_access(console: Flask, ops: FlaskClient) -> None:
    start_draft(ops)
    agent = signed_in(console, "alice", "agent")
    for path in GETS:
        assert agent.get(path).status_code == 403, path
    for path in POSTS:
        assert post(agent, path, {"revision": 1}).status_code == 403, path


def test_publish_is_refused_for_an_unchanged_or_overtaken_draft(
    console: Flask, ops: FlaskClient, working: Path
) -> None:
    start_draft(ops)
    unchanged = post(ops, REVIEW, {"revision": revision(ops), "message": "nothing"})
    assert unchanged.status_code == 409
    assert "nothing to publish" in unchanged.get_data(as_text=True)

    assert save_welcome(ops, NEW_EN, NEW_ES).status_code == 303
    en = working / "prompts" / "en-US.yaml"
    en.write_text(en.read_text().replace("Thank you for", "Thanks for"), encoding="utf-8")
    cli = console.test_cli_runner().invoke(args=["flows", "publish", "-m", "from the CLI"])
    assert cli.exit_code == 0, cli.output

    overtaken = post(ops, REVIEW, {"revision": revision(ops), "message": "greeting"})
    assert overtaken.status_code == 409
    assert "The live version changed since this draft was started" in overtaken.get_data(
        as_text=True
    )
    assert [v["message"] for v in history(console)] == ["from the CLI", "first"]
    assert draft_row(console).revision == 2  # the draft is still there to redo


class _FormValues(HTMLParser):
    """The values a browser would post from the page's first POST form."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, str] = {}
        self._select: str | None = None
        self._textarea: str | None = None
        self._forms = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and a.get("method") == "post" and "action" not in a:
            self._forms += 1
        if self._forms != 1:
            return
        if tag == "input" and "name" in a:
            self.values[a["name"]] = a.get("value", "")
        elif tag == "select":
            self._select = a["name"]
            self.values.setdefault(a["name"], "")
        elif tag == "option" and self._select and "selected" in a:
            self.values[self._select] = a.get("value", "")
        elif tag == "textarea":
            self._textarea = a["name"]
            self.values[a["name"]] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None
        elif tag == "form" and self._forms == 1:
            self._forms = 2

    def handle_data(self, data: str) -> None:
        if self._textarea and self._forms == 1:
            self.values[self._textarea] += (
                data.lstrip("\n") if not self.values[self._textarea] else data
            )


def test_every_node_and_prompt_form_saves_back_unchanged(console: Flask, ops: FlaskClient) -> None:
    start_draft(ops)
    before = draft_row(console)
    with console.app_context():
        from ivr.versions import draft_reading

        nodes = list(draft_reading.raw_nodes(before))
        keys = sorted(draft_reading.prompt_users(before))
    assert len(nodes) == 48
    paths = [f"{DRAFT}/nodes/{n}" for n in nodes] + [f"{DRAFT}/prompts/{k}" for k in keys]
    for path in paths:
        page = ops.get(path)
        assert page.status_code == 200, path
        parser = _FormValues()
        parser.feed(page.get_data(as_text=True))
        answer = ops.post(path, data=parser.values)
        assert answer.status_code == 303, (path, answer.get_data(as_text=True)[-3000:])
    after = draft_row(console)
    assert after.revision == before.revision and after.files == before.files


def test_a_prompt_of_blanks_is_refused_as_empty(console: Flask, ops: FlaskClient) -> None:
    start_draft(ops)
    answer = save_welcome(ops, "   ", "Bienvenido.")
    assert answer.status_code == 422
    assert "The en-US text may not be empty." in answer.get_data(as_text=True)
    assert draft_row(console).revision == 1  # nothing saved


def test_the_draft_pages_lead_to_the_simulator_on_the_draft(
    console: Flask, ops: FlaskClient
) -> None:
    start_draft(ops)
    for page in ("/ops/flows/support/draft", "/ops/flows/support/review"):
        html = ops.get(page).get_data(as_text=True)
        assert 'href="/ops/simulator?flow=support&amp;version=draft"' in html, page
    listed = ops.get("/ops/").get_data(as_text=True)
    assert 'href="/ops/simulator?flow=support&amp;version=draft"' in listed
