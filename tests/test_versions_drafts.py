"""The draft store: started from the live version byte for byte, edited as YAML text that
keeps its comments and layout, saved only at the revision it was read at, validated on
every save, never saved when the text would not read back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from ivr.flow import yamlread
from ivr.storage import db, kv
from ivr.storage.models import FlowDraft
from ivr.versions import draft_reading, drafts, publish, store, yamledit

ROOT = Path(__file__).resolve().parent.parent
EN, ES, FLOW = "prompts/en-US.yaml", "prompts/es-US.yaml", "flows/support.yaml"
BY = "ops:olga"


@pytest.fixture
def session(make_app: Any, working: Path) -> Iterator[Session]:
    app: Flask = make_app(
        IVR_FLOWS_DIR=str(working / "flows"), IVR_PROMPTS_DIR=str(working / "prompts")
    )
    with app.app_context():
        yield db.session()


def begin(session: Session, working: Path) -> FlowDraft:
    return drafts.start(
        session,
        "support",
        BY,
        flows_dir=working / "flows",
        prompts_dir=working / "prompts",
        region="US",
    )


def save_node(session: Session, row: FlowDraft, node: str, **changes: Any) -> drafts.Saved:
    return drafts.set_node_fields(
        session, row, node, changes, revision=row.revision, by=BY, region="US"
    )


def test_before_any_publish_a_draft_starts_from_the_working_files(
    session: Session, working: Path
) -> None:
    row = begin(session, working)
    assert row.based_on is None and row.revision == 1
    for path in (FLOW, EN, ES):
        assert row.files[path] == (working / path).read_text(encoding="utf-8")
    with pytest.raises(drafts.DraftError, match="has a draft already"):
        begin(session, working)


def test_a_draft_starts_from_the_live_version_not_the_working_files(
    session: Session, working: Path
) -> None:
    checked = store.read_draft(working / "flows", working / "prompts", "support", "US")
    outcome = publish.publish_draft(session, kv.client(), checked, by="cli", message="first")
    en = working / EN
    en.write_text(en.read_text().replace("Thank you", "Thanks"), encoding="utf-8")

    row = begin(session, working)

    assert row.based_on == outcome.version
    assert row.files == dict(checked.files)
    assert "Thank you for calling" in row.files[EN]


def test_one_language_edited_leaves_every_other_file_byte_for_byte(
    session: Session, working: Path
) -> None:
    row = begin(session, working)
    before = dict(row.files)
    long_text = (
        "To confirm it is really you, please key in the last four digits of the account"
        " you are calling about, then wait a moment while we look it up."
    )

    saved = drafts.set_prompt(
        session, row, "en-US", "enter_last4_family", long_text, revision=1, by=BY, region="US"
    )

    assert saved.changed and saved.revision == 2 and saved.problems == []
    after = drafts.get(session, "support")
    assert after is not None and after.updated_by == BY
    assert after.files[FLOW] == before[FLOW] and after.files[ES] == before[ES]
    lines = after.files[EN].splitlines()
    at = lines.index("  enter_last4_family: >")
    assert all(len(line) <= 84 for line in lines[at + 1 : at + 3])
    assert yamlread.read(after.files[EN])["prompts"]["enter_last4_family"].split() == (
        long_text.split()
    )
    old, new = before[EN].splitlines(), lines
    assert old[:at] == new[:at] and old[at + 3 :] == new[at + 3 :]  # only the text's lines


def test_the_same_text_saved_again_changes_nothing(session: Session, working: Path) -> None:
    row = begin(session, working)
    text = draft_reading.prompt_texts(row, "en-US")["enter_code"]  # folded over two lines
    saved = drafts.set_prompt(
        session, row, "en-US", "enter_code", " ".join(text.split()), revision=1, by=BY, region="US"
    )
    assert not saved.changed and saved.revision == 1


def test_a_stale_revision_is_refused_and_nothing_is_written(
    session: Session, working: Path
) -> None:
    row = begin(session, working)
    drafts.set_prompt(session, row, "en-US", "welcome", "Hello.", revision=1, by=BY, region="US")
    with pytest.raises(drafts.StaleDraft, match="someone else saved this draft meanwhile: reload"):
        drafts.set_prompt(
            session, row, "en-US", "welcome", "Hi there.", revision=1, by="ops:ana", region="US"
        )
    after = drafts.get(session, "support")
    assert after is not None and after.revision == 2 and "Hi there." not in after.files[EN]
    with pytest.raises(drafts.StaleDraft):
        drafts.discard(session, "support", revision=1)
    assert drafts.get(session, "support") is not None


def test_node_fields_keep_comments_menu_keys_and_words(session: Session, working: Path) -> None:
    row = begin(session, working)
    saved = save_node(
        session,
        row,
        "language",
        options={"1": "en-US", "2": "es-US", "9": "es-US"},
        max_tries=None,
        timeout=8,
    )
    text = saved_text(session)
    assert saved.changed and saved.problems == []
    assert "    no_input: identify               # silence keeps the default language\n" in text
    assert "      9: es-US\n" in text and "max_tries" not in section(text, "language")
    node = yamlread.read(text)["nodes"]["language"]
    assert dict(node["options"]) == {"1": "en-US", "2": "es-US", "9": "es-US"}
    assert node["timeout"] == 8
    # The blank line between nodes stays where it was.
    assert "    timeout: 8\n\n  identify:\n" in text


def test_yes_and_no_stay_words_and_odd_values_are_quoted(session: Session, working: Path) -> None:
    row = begin(session, working)
    files = dict(row.files)
    files[FLOW] = files[FLOW].replace(
        "nodes:\n",
        "nodes:\n  fresh:\n    type: branch\n    on: fresh_code\n"
        "    cases:\n      yes: language\n    default: language\n\n",
        1,
    )
    row.files = files
    session.commit()

    save_node(session, row, "fresh", cases={"yes": "identify", "no": "language"})
    text = saved_text(session)
    assert "    cases:\n      yes: identify\n      no: language\n" in text
    assert dict(yamlread.read(text)["nodes"]["fresh"]["cases"]) == {
        "yes": "identify",
        "no": "language",
    }
    row = drafts.get(session, "support")
    assert row is not None
    save_node(session, row, "agent_verified", target="1:30")  # YAML 1.1 reads 1:30 as 90
    assert yamlread.read(saved_text(session))["nodes"]["agent_verified"]["target"] == "1:30"


def test_problems_come_back_and_the_draft_is_saved_anyway(session: Session, working: Path) -> None:
    row = begin(session, working)
    saved = drafts.set_prompts(
        session,
        row,
        "welcome",
        {"en-US": "Hello {first_name}.", "es-US": "Hola {first_name}."},
        revision=1,
        by=BY,
        region="US",
    )
    assert saved.changed and saved.revision == 2
    assert [p.where for p in saved.problems] == ["welcome"]
    assert "{first_name} (en-US, es-US)" in saved.problems[0].message
    stored = drafts.get(session, "support")
    assert stored is not None and "Hello {first_name}." in stored.files[EN]
    sketch = draft_reading.sketch(stored)
    assert sketch is not None and sketch.start == "hours" and len(sketch.nodes) == 48


@pytest.mark.parametrize(
    ("node", "changes", "message"),
    [
        ("language", {"mode": "full"}, "has no field 'mode'"),
        ("language", {"type": "menu"}, "has no field 'type'"),
        ("language", {"next": None}, "next is required"),
        ("language", {"max_tries": "3"}, "is not a value this field takes"),
        ("nowhere", {"next": "identify"}, "no node 'nowhere'"),
    ],
)
def test_edits_a_node_kind_does_not_allow_are_refused(
    session: Session, working: Path, node: str, changes: dict[str, Any], message: str
) -> None:
    row = begin(session, working)
    with pytest.raises(drafts.DraftError, match=message):
        drafts.set_node_fields(session, row, node, changes, revision=1, by=BY, region="US")
    after = drafts.get(session, "support")
    assert after is not None and after.revision == 1


def test_a_prompt_may_be_added_only_for_a_key_in_use(session: Session, working: Path) -> None:
    row = begin(session, working)
    save_node(session, row, "welcome", prompt="welcome_holiday")
    row = drafts.get(session, "support")
    assert row is not None
    assert any("welcome_holiday" in p.message for p in drafts.problems_of(row, "US"))
    saved = drafts.set_prompts(
        session,
        row,
        "welcome_holiday",
        {"en-US": "Happy holidays.", "es-US": "Felices fiestas."},
        revision=row.revision,
        by=BY,
        region="US",
    )
    assert saved.problems == []
    with pytest.raises(drafts.DraftError, match="no node uses a prompt 'made_up'"):
        drafts.set_prompt(
            session, row, "en-US", "made_up", "x", revision=saved.revision, by=BY, region="US"
        )


def test_a_file_that_does_not_read_is_never_saved_over(session: Session, working: Path) -> None:
    row = begin(session, working)
    files = dict(row.files)
    files[FLOW] = files[FLOW] + "  broken: [unclosed\n"
    row.files = files
    session.commit()
    with pytest.raises(drafts.DraftError, match="does not read as YAML"):
        save_node(session, row, "welcome", next="identify")
    after = drafts.get(session, "support")
    assert after is not None and after.revision == 1 and after.files[FLOW] == files[FLOW]


def saved_text(session: Session) -> str:
    row = drafts.get(session, "support")
    assert row is not None
    return row.files[FLOW]


def section(text: str, node: str) -> str:
    start = text.index(f"\n  {node}:\n")
    end = text.index("\n\n", start + 1)
    return text[start:end]


@pytest.mark.parametrize(
    "path",
    sorted([*(ROOT / "flows").glob("*.yaml"), *(ROOT / "prompts").glob("*.yaml")]),
    ids=lambda path: f"{path.parent.name}/{path.name}",
)
def test_every_shipped_file_round_trips_byte_for_byte(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert yamledit.round_trip(text) == text


def test_removing_the_last_field_keeps_the_blank_line_and_other_comments(
    session: Session, working: Path
) -> None:
    row = begin(session, working)
    save_node(session, row, "last4", locked=None)
    text = saved_text(session)
    assert "too many wrong digits on these accounts" not in section(text, "last4")
    assert "    too_many_tries: agent_unverified\n\n  last4_family:\n" in text
    assert "    ambiguous: account_number         # two accounts on this phone end" in text
    assert "locked" not in yamlread.read(text)["nodes"]["last4"]


def test_each_change_and_its_audit_record_land_together(session: Session, working: Path) -> None:
    """The record is written in the change's own transaction: a refused (stale) save
    records nothing, a saved one is recorded with the revision it made."""
    from sqlalchemy import select

    from ivr.storage.models import AuditEvent

    def recorded() -> list[tuple[str, str, dict[str, Any]]]:
        rows = session.scalars(select(AuditEvent).order_by(AuditEvent.id))
        return [(row.action, row.actor, row.details) for row in rows]

    row = drafts.start(
        session,
        "support",
        BY,
        flows_dir=working / "flows",
        prompts_dir=working / "prompts",
        region="US",
        note=drafts.Note("ops.draft_started", {"flow": "support"}),
    )
    note = drafts.Note("ops.draft_edited", {"flow": "support", "prompt": "welcome"})
    drafts.set_prompt(
        session, row, "en-US", "welcome", "Hello.", revision=1, by=BY, region="US", note=note
    )
    with pytest.raises(drafts.StaleDraft):
        drafts.set_prompt(
            session, row, "en-US", "welcome", "Hi.", revision=1, by=BY, region="US", note=note
        )
    drafts.discard(
        session, "support", revision=2, by=BY, note=drafts.Note("ops.draft_discarded", {})
    )
    assert recorded() == [
        ("ops.draft_started", BY, {"flow": "support", "based_on": None}),
        ("ops.draft_edited", BY, {"flow": "support", "prompt": "welcome", "revision": 2}),
        ("ops.draft_discarded", BY, {"revision": 2}),
    ]
