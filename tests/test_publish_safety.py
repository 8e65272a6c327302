"""Making a version live is safe: a stored version that fails today's checks is never made
live again (CLI and console); a publish or rollback that another one overtook changes
nothing; a Redis that misses the live pointer after the commit is reported as what it
is (live, workers switch within the pointer's lifetime), not as a failure; and the
history offers "Make live" for versions newer than the live one."""

from __future__ import annotations

import json
import logging
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from agent_kit import add_user, csrf_of, sign_in
from flask import Flask
from flask.testing import FlaskClient
from kit import Clock, call_form, new_sid, post, says, twiml
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ivr.calls.runtime import REFRESH_SECONDS
from ivr.storage import db, keys, kv
from ivr.storage.models import AuditEvent, FlowDraft, FlowVersion, LiveFlow
from ivr.versions import drafts, store
from ivr.versions import publish as lifecycle

ROOT = Path(__file__).resolve().parent.parent
OLD_WELCOME = "Thank you for calling Example support."
NEW_WELCOME = "Welcome to Example support, now with versions."
LEAKY_WELCOME = "Hello {first_name}, thank you for calling Example support."
BROKEN = "bad0bad0bad0"  # the id given to a version stored without today's checks
DRAFT = "/ops/flows/support/draft"
WELCOME = "/ops/flows/support/draft/prompts/welcome"
REVIEW = "/ops/flows/support/review"
HISTORY = "/ops/flows/support/history"


@pytest.fixture
def ops_app(make_app: Any, working: Path) -> Flask:
    """An app on a scratch copy of the working files, with them published once."""
    app: Flask = make_app(
        IVR_FLOWS_DIR=str(working / "flows"), IVR_PROMPTS_DIR=str(working / "prompts")
    )
    result = flows(app, "publish", "-m", "first")
    assert result.exit_code == 0, result.output
    return app


@pytest.fixture
def ops(ops_app: Flask) -> FlaskClient:
    add_user(ops_app, "olga", role="ops")
    client = ops_app.test_client()
    assert sign_in(client, "olga").status_code == 303
    return client


def flows(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=["flows", *args])


def edit(working: Path, old: str, new: str, file: str = "prompts/en-US.yaml") -> None:
    path = working / file
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


def form_post(client: FlaskClient, path: str, data: dict[str, Any] | None = None) -> Any:
    return client.post(path, data={**(data or {}), "csrf_token": csrf_of(client, HISTORY)})


def live_version(app: Flask) -> str:
    with app.app_context():
        live = store.live_row(db.session(), "support")
        assert live is not None
        return live.version_row.version


def versions(app: Flask) -> list[str]:
    with app.app_context():
        return list(db.session().scalars(select(FlowVersion.version).order_by(FlowVersion.id)))


def actions(app: Flask, action: str) -> list[dict[str, Any]]:
    with app.app_context():
        rows = db.session().scalars(select(AuditEvent).where(AuditEvent.action == action))
        return [{"actor": r.actor, **r.details} for r in rows]


def store_broken_version(app: Flask, working: Path, *, published_at: datetime) -> str:
    """A version stored as an older release would have stored it: the welcome greets by
    first name, which today's proofs refuse (it reveals account data before any check)."""
    with app.app_context():
        session = db.session()
        draft = store.read_draft(working / "flows", working / "prompts", "support", "US")
        files = dict(draft.files)
        files["prompts/en-US.yaml"] = files["prompts/en-US.yaml"].replace(
            OLD_WELCOME, LEAKY_WELCOME
        )
        assert files != dict(draft.files)
        loaded = store.LoadedFlow(replace(draft.loaded.flow, version=BROKEN), draft.loaded.catalog)
        store.add_version(
            session,
            store.Draft(loaded, files),
            by="old-release",
            message="greets by name",
            now=published_at,
        )
        session.commit()
    return BROKEN


def new_call_greeting(app: Flask) -> list[str]:
    """What a new call hears first, once the runtime has looked at the live version."""
    clock = Clock()
    app.extensions["ivr.runtime"].clock = clock
    clock.ahead += REFRESH_SECONDS + 0.1
    doc: ET.Element = twiml(post(app, "/voice/incoming", call_form(new_sid(), From="anonymous")))
    return says(doc)


# ---------------------------------------------------------------- 1. today's checks


def test_the_cli_refuses_to_roll_back_to_a_version_that_fails_todays_checks(
    ops_app: Flask, working: Path
) -> None:
    live = live_version(ops_app)
    store_broken_version(ops_app, working, published_at=datetime(2020, 1, 1, tzinfo=UTC))

    for args in (("rollback",), ("rollback", "--to", BROKEN[:6]), ("rollback", "--json")):
        refused = flows(ops_app, *args)
        assert refused.exit_code == 1, refused.output
        assert f"version {BROKEN} no longer passes today's checks" in refused.stderr
        assert "nothing was rolled back" in refused.stderr
        assert "welcome" in refused.stderr and "first_name" in refused.stderr
        assert refused.stdout == ""  # --json prints nothing on a refusal

    assert live_version(ops_app) == live
    assert actions(ops_app, "flow.rolled_back") == []
    assert OLD_WELCOME in new_call_greeting(ops_app)  # new calls still work


def test_the_history_marks_a_version_that_cannot_go_live_and_offers_no_button(
    ops_app: Flask, ops: FlaskClient, working: Path
) -> None:
    store_broken_version(ops_app, working, published_at=datetime(2020, 1, 1, tzinfo=UTC))

    page = ops.get(HISTORY).get_data(as_text=True)

    row = _row(page, BROKEN)
    assert 'data-testid="cannot-go-live"' in row
    assert "no longer passes today's checks: cannot be made live" in row
    summary = re.search(r'<summary title="([^"]*)">', row)
    assert summary and "first_name" in summary.group(1)  # the reasons on hover
    assert "<li>" in row and "first_name" in row.split("</summary>")[1]  # and on expand
    assert 'data-testid="rollback"' not in row and "/rollback" not in row
    assert 'data-testid="cannot-go-live"' not in _row(page, live_version(ops_app))


def test_the_console_refuses_a_version_that_fails_todays_checks(
    ops_app: Flask, ops: FlaskClient, working: Path
) -> None:
    live = live_version(ops_app)
    store_broken_version(ops_app, working, published_at=datetime(2020, 1, 1, tzinfo=UTC))

    confirm = ops.get(f"{HISTORY}/{BROKEN}/rollback")
    assert confirm.status_code == 409
    page = confirm.get_data(as_text=True)
    assert 'data-testid="cannot-go-live"' in page and "first_name" in page
    assert "<form" not in page.split('data-testid="confirm-rollback"')[1]

    posted = form_post(ops, f"{HISTORY}/{BROKEN}/rollback", {"live": live})
    assert posted.status_code == 303 and posted.headers["Location"].endswith(HISTORY)
    shown = ops.get(HISTORY).get_data(as_text=True)
    assert f"Refused: version {BROKEN} no longer passes today&#39;s checks" in shown
    assert live_version(ops_app) == live
    assert actions(ops_app, "flow.rolled_back") == []
    assert OLD_WELCOME in new_call_greeting(ops_app)


def test_the_version_problems_are_remembered_by_content(
    ops_app: Flask, working: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_broken_version(ops_app, working, published_at=datetime(2020, 1, 1, tzinfo=UTC))
    with ops_app.app_context():
        row = store.find_version(db.session(), "support", BROKEN)
        assert row is not None
        first = store.version_problems(row, "US")
        assert first and any("first_name" in str(p) for p in first)
        live = store.live_row(db.session(), "support")
        assert live is not None
        assert store.version_problems(live.version_row, "US") == []

        def not_again(*args: Any) -> Any:
            raise AssertionError("checked again")

        monkeypatch.setattr(store, "load_files", not_again)
        assert store.version_problems(row, "US") == first
        assert store.version_problems(live.version_row, "US") == []
        with pytest.raises(AssertionError, match="checked again"):
            store.version_problems(row, "GB")  # another region is another check


# ---------------------------------------------------------------- 2. compare-and-set


def test_a_console_publish_overtaken_after_its_checks_changes_nothing(
    ops_app: Flask, ops: FlaskClient, working: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = live_version(ops_app)
    assert form_post(ops, DRAFT).status_code == 303
    revision = _revision(ops)
    saved = form_post(
        ops, WELCOME, {"revision": revision, "text_0": NEW_WELCOME, "text_1": "Bienvenido."}
    )
    assert saved.status_code == 303
    edit(working, OLD_WELCOME, "Thanks for calling Example support.")
    real_take = drafts.take

    def cli_publishes_first(session: Session, flow: str, *, revision: int) -> None:
        # Between the console's checks and its publish, someone publishes on the CLI.
        result = flows(ops_app, "publish", "-m", "from the CLI")
        assert result.exit_code == 0, result.output
        real_take(session, flow, revision=revision)

    monkeypatch.setattr(drafts, "take", cli_publishes_first)

    refused = form_post(ops, REVIEW, {"revision": revision + 1, "message": "greeting"})

    assert refused.status_code == 409
    page = refused.get_data(as_text=True)
    assert "The live version changed meanwhile" in page and 'data-testid="refused"' in page
    cli_version = live_version(ops_app)
    assert cli_version != first
    assert versions(ops_app) == [first, cli_version]  # the console's version not stored
    assert [a["to"] for a in actions(ops_app, "flow.published")] == [first, cli_version]
    with ops_app.app_context():
        assert db.session().get(FlowDraft, "support") is not None  # kept to redo


def test_a_cli_publish_overtaken_after_it_read_the_live_version_changes_nothing(
    ops_app: Flask, working: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = live_version(ops_app)
    edit(working, OLD_WELCOME, NEW_WELCOME)
    real_read = store.read_draft
    raced: list[str] = []

    def another_publish_lands(flows_dir: Path, prompts_dir: Path, flow: str, region: str) -> Any:
        draft = real_read(flows_dir, prompts_dir, flow, region)
        if not raced:  # once: the other publish's own read goes straight through
            raced.append(flow)
            edit(working, NEW_WELCOME, "Another greeting, published meanwhile.")
            other = flows(ops_app, "publish", "-m", "the other one")
            assert other.exit_code == 0, other.output
        return draft

    monkeypatch.setattr(store, "read_draft", another_publish_lands)

    refused = flows(ops_app, "publish", "-m", "mine", "--json")

    assert refused.exit_code == 1
    assert "the live version changed meanwhile: support is now at" in refused.stderr
    assert refused.stdout == ""
    other = live_version(ops_app)
    assert other != first and versions(ops_app) == [first, other]
    assert [a["message"] for a in actions(ops_app, "flow.published")] == ["first", "the other one"]


def test_a_console_rollback_overtaken_after_its_check_changes_nothing(
    ops_app: Flask, ops: FlaskClient, working: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = live_version(ops_app)
    edit(working, OLD_WELCOME, NEW_WELCOME)
    assert flows(ops_app, "publish", "-m", "second").exit_code == 0
    second = live_version(ops_app)
    real_set_live = store.set_live
    raced: list[str] = []

    def cli_publishes_first(session: Session, row: FlowVersion, **kwargs: Any) -> Any:
        if not raced:  # between the page's check of the live version and the write
            raced.append(row.version)
            edit(working, NEW_WELCOME, "A third greeting.")
            assert flows(ops_app, "publish", "-m", "third").exit_code == 0
        return real_set_live(session, row, **kwargs)

    monkeypatch.setattr(store, "set_live", cli_publishes_first)

    posted = form_post(ops, f"{HISTORY}/{first}/rollback", {"live": second})

    assert posted.status_code == 303
    assert raced == [first]
    shown = ops.get(HISTORY).get_data(as_text=True)
    assert "The live version changed meanwhile: support is now at" in shown
    third = live_version(ops_app)
    assert third not in (first, second)
    assert actions(ops_app, "flow.rolled_back") == []


def test_a_stale_expected_version_is_refused_by_publish_and_rollback(
    ops_app: Flask, working: Path
) -> None:
    first = live_version(ops_app)
    edit(working, OLD_WELCOME, NEW_WELCOME)
    with ops_app.app_context():
        session, client = db.session(), kv.client()
        draft = store.read_draft(working / "flows", working / "prompts", "support", "US")
        with pytest.raises(lifecycle.LiveChanged, match=f"now at {first}, expected 0000"):
            lifecycle.publish_draft(session, client, draft, by="t", expected="0000")
        with pytest.raises(lifecycle.LiveChanged, match=f"now at {first}, expected none"):
            lifecycle.publish_draft(session, client, draft, by="t", expected=None)
        with pytest.raises(lifecycle.LiveChanged, match="changed meanwhile"):
            lifecycle.rollback(
                session, client, flow="support", to=first, by="t", region="US", expected="0000"
            )
    assert versions(ops_app) == [first]


def test_two_concurrent_makes_live_one_wins(ops_app: Flask, working: Path) -> None:
    """The second conditional UPDATE waits on the first's lock (PostgreSQL's row lock,
    SQLite's one writer), then finds the live row moved: it changes nothing instead of
    overwriting."""
    first = live_version(ops_app)
    edit(working, OLD_WELCOME, NEW_WELCOME)
    assert flows(ops_app, "publish", "-m", "b").exit_code == 0
    edit(working, NEW_WELCOME, "A third greeting.")
    assert flows(ops_app, "publish", "-m", "c").exit_code == 0
    with ops_app.app_context():
        engine = db.engine()
        with Session(engine) as reader:
            rows = {r.message: r for r in reader.scalars(select(FlowVersion))}
        now = datetime.now(UTC)
        with Session(engine) as setup:
            live = setup.get(LiveFlow, "support")
            assert live is not None
            live.version_id = rows["first"].id
            setup.commit()
        one, two = Session(engine), Session(engine)
        try:
            assert store.set_live(one, rows["b"], expected=rows["first"].id, by="one", now=now)
            result: list[bool] = []
            racer = threading.Thread(
                target=lambda: result.append(
                    store.set_live(two, rows["c"], expected=rows["first"].id, by="two", now=now)
                )
            )
            racer.start()
            racer.join(0.3)
            assert racer.is_alive()  # waiting for the first's row lock
            one.commit()
            racer.join(5)
            assert result == [False]
            two.rollback()
        finally:
            one.close()
            two.close()
    assert live_version(ops_app) == rows["b"].version != first


# ---------------------------------------------------------------- 3. Redis misses the pointer


class PointerRefused:
    """The app's Redis, except that setting a flow's live pointer fails as in an outage."""

    def __init__(self, real: redis.Redis):
        self.real = real

    def set(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith(keys.live_flow("")):
            raise redis.ConnectionError("Connection refused (test)")
        return self.real.set(name, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


@pytest.fixture
def pointer_refused(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    real = kv.client

    def refuse() -> None:
        monkeypatch.setattr(kv, "client", lambda: PointerRefused(real()))

    return refuse


def pointer(app: Flask) -> str | None:
    with app.app_context():
        return store.read_pointer(kv.client(), "support")


def test_the_cli_reports_a_publish_whose_pointer_redis_missed_as_live(
    ops_app: Flask,
    working: Path,
    pointer_refused: Callable[[], None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = live_version(ops_app)
    edit(working, OLD_WELCOME, NEW_WELCOME)
    pointer_refused()

    with caplog.at_level(logging.WARNING, logger="ivr.versions.publish"):
        published = flows(ops_app, "publish", "-m", "second", "--json")

    assert published.exit_code == 0, published.output
    data = json.loads(published.stdout)  # the --json contract: one object, unchanged
    assert data["status"] == "published" and data["previous"] == first
    assert "workers switch within 30 s because Redis did not take the pointer" in (published.stderr)
    assert live_version(ops_app) == data["version"]
    assert pointer(ops_app) == first  # the old pointer, until it lapses
    assert any("Redis pointer was not set" in r.getMessage() for r in caplog.records)

    rolled = flows(ops_app, "rollback")
    assert rolled.exit_code == 0, rolled.output
    assert "is live again" in rolled.stdout and "workers switch within 30 s" in rolled.stderr
    assert live_version(ops_app) == first
    assert [a["to"] for a in actions(ops_app, "flow.rolled_back")] == [first]


def test_the_console_reports_a_publish_whose_pointer_redis_missed_as_live(
    ops_app: Flask, ops: FlaskClient, pointer_refused: Callable[[], None]
) -> None:
    first = live_version(ops_app)
    assert form_post(ops, DRAFT).status_code == 303
    revision = _revision(ops)
    saved = form_post(
        ops, WELCOME, {"revision": revision, "text_0": NEW_WELCOME, "text_1": "Bienvenido."}
    )
    assert saved.status_code == 303
    pointer_refused()

    published = form_post(ops, REVIEW, {"revision": revision + 1, "message": "greeting"})

    assert published.status_code == 303 and published.headers["Location"].endswith(HISTORY)
    page = ops.get(HISTORY).get_data(as_text=True)
    assert "Nothing was changed" not in page
    second = live_version(ops_app)
    assert second != first
    assert f"Version {second} is live. Note: workers switch within 30 s" in page
    assert pointer(ops_app) == first
    with ops_app.app_context():
        assert db.session().get(FlowDraft, "support") is None

    rolled = form_post(ops, f"{HISTORY}/{first}/rollback", {"live": second})
    assert rolled.status_code == 303
    page = ops.get(HISTORY).get_data(as_text=True)
    assert f"Version {first} is live again (was {second}). Note: workers switch" in page
    assert live_version(ops_app) == first


# ---------------------------------------------------------------- 4. "Make live"


def test_versions_newer_than_the_live_one_say_make_live(
    ops_app: Flask, ops: FlaskClient, working: Path
) -> None:
    first = live_version(ops_app)
    edit(working, OLD_WELCOME, NEW_WELCOME)
    assert flows(ops_app, "publish", "-m", "second").exit_code == 0
    second = live_version(ops_app)
    edit(working, NEW_WELCOME, "A third greeting.")
    assert flows(ops_app, "publish", "-m", "third").exit_code == 0
    third = live_version(ops_app)
    assert flows(ops_app, "rollback", "--to", second).exit_code == 0

    page = ops.get(HISTORY).get_data(as_text=True)

    assert ">Make live</a>" in _row(page, third)
    assert "Roll back" not in _row(page, third)
    assert ">Roll back to this version</a>" in _row(page, first)
    assert 'data-testid="rollback"' not in _row(page, second)  # the live one
    newer = ops.get(f"{HISTORY}/{third}/rollback").get_data(as_text=True)
    assert "<h2>Make live?</h2>" in newer and f"Make {third} live" in newer
    older = ops.get(f"{HISTORY}/{first}/rollback").get_data(as_text=True)
    assert "<h2>Roll back?</h2>" in older

    made = form_post(ops, f"{HISTORY}/{third}/rollback", {"live": second})
    assert made.status_code == 303 and live_version(ops_app) == third
    with ops_app.app_context():
        count = db.session().scalar(select(func.count()).select_from(FlowVersion))
    assert count == 3


# ---------------------------------------------------------------- helpers


def _row(page: str, version: str) -> str:
    found = re.search(rf'<tr data-version="{version}".*?</tr>', page, re.S)
    assert found, f"no history row for {version}"
    return found.group(0)


def _revision(client: FlaskClient) -> int:
    found = re.search(r'data-testid="revision">(\d+)<', client.get(DRAFT).get_data(as_text=True))
    assert found, "no draft revision on the draft page"
    return int(found.group(1))


def test_the_history_says_when_the_live_version_itself_fails_todays_checks(
    ops_app: Flask, ops: FlaskClient, working: Path
) -> None:
    """A rule added since a version went live can leave it unloadable: ops must see it."""
    store_broken_version(ops_app, working, published_at=datetime(2030, 1, 1, tzinfo=UTC))
    with ops_app.app_context():
        session = db.session()
        broken = session.scalars(select(FlowVersion).where(FlowVersion.version == BROKEN)).one()
        live = session.get(LiveFlow, "support")
        assert live is not None
        live.version_id = broken.id
        session.commit()
    row = _row(ops.get(HISTORY).get_data(as_text=True), BROKEN)
    assert 'data-testid="live-fails-today"' in row
    assert "new calls get the apology" in row and "first_name" in row


def test_the_first_start_never_overwrites_a_publish_that_landed_meanwhile(
    make_app: Any, working: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runtime publishes the working files only while nothing is live: a version made
    live between its look and its publish (the console, the CLI, another worker) wins."""
    app: Flask = make_app(
        IVR_FLOWS_DIR=str(working / "flows"), IVR_PROMPTS_DIR=str(working / "prompts")
    )
    edit(working, OLD_WELCOME, NEW_WELCOME)
    assert flows(app, "publish", "-m", "from the console, meanwhile").exit_code == 0
    landed = live_version(app)
    edit(working, NEW_WELCOME, OLD_WELCOME)  # the working files say something else again
    real_live_row = store.live_row
    looks: list[str] = []

    def nothing_live_at_first(session: Any, flow: str) -> Any:
        looks.append(flow)
        return None if len(looks) == 1 else real_live_row(session, flow)

    monkeypatch.setattr(store, "live_row", nothing_live_at_first)
    with app.app_context():
        assert app.extensions["ivr.runtime"]._live_from_database() == landed
    monkeypatch.undo()
    assert live_version(app) == landed
    assert [v for v in versions(app) if v != landed] == []  # the working files: not stored
