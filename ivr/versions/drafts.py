"""The ops console's draft of a flow: files kept in the database, edited as YAML text.

A draft is one row of `flow_drafts` per flow, started from the live version's files
(or, before the first publish, the working files). This module is the store (start,
read, discard, save at a revision) and the edit operations, which decide what may be
edited (reading a draft for the pages is `ivr.versions.draft_reading`); the text
itself is changed by `ivr.versions.yamledit`, which keeps comments, key order and
layout (a file nobody edited stays byte for byte what the live version has) and
writes new values so the strict reader (`ivr.flow.yamlread`) reads back
exactly what was meant. Every save names the revision it edited (a stale one is
refused, nothing written), bumps it, and runs the full validation a publish runs: the
problems come back and the draft is saved anyway (it is a draft); YAML that does not
read back is never saved. Publishing is `ivr.versions.publish.publish_draft`, the same
operation as the CLI's. No Flask here.
"""

from __future__ import annotations

import functools
import re
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from types import NoneType, UnionType
from typing import Any

import yaml
from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ivr.errors import DefinitionProblem, InvalidDefinition, IvrError
from ivr.flow import yamlread
from ivr.flow.model import NODE_TYPES, Node
from ivr.storage.models import AuditEvent, FlowDraft
from ivr.versions import draft_reading as reading
from ivr.versions import store, yamledit

STALE = "someone else saved this draft meanwhile: reload"
PROMPT_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


@dataclass(frozen=True)
class Note:
    """The audit record of a draft change (`details` without the revision, which the save
    adds): written in the change's own transaction, so a change is never left
    unrecorded."""

    action: str
    details: dict[str, Any]


def _record(session: Session, note: Note | None, by: str, revision: int | None) -> None:
    if note is not None:
        details = {**note.details, **({"revision": revision} if revision is not None else {})}
        session.add(AuditEvent(action=note.action, actor=by, details=details))


class DraftError(IvrError):
    """An edit that cannot be made (unknown node or field, no draft, text that would not
    read back); nothing was saved."""


class StaleDraft(DraftError):
    """The draft was saved by someone else since the form was loaded."""

    def __init__(self) -> None:
        super().__init__(STALE)


@dataclass(frozen=True)
class Saved:
    """What a save did: the new revision, whether any file changed, and every problem
    the full validation found in the draft as saved (a publish needs none)."""

    revision: int
    changed: bool
    problems: list[DefinitionProblem]


# ---------------------------------------------------------------- the store


def start(
    session: Session,
    flow: str,
    by: str,
    *,
    flows_dir: Path,
    prompts_dir: Path,
    region: str,
    note: Note | None = None,
) -> FlowDraft:
    """A new draft of `flow`: the live version's files, or the working files before the
    first publish. DraftError when a draft exists; InvalidDefinition when there is no
    live version and the working files do not load."""
    if get(session, flow) is not None:
        raise DraftError(f"flow {flow!r} has a draft already: edit or discard it")
    live = store.live_row(session, flow)
    if live is not None:
        files = {f.path: f.content for f in live.version_row.files}
        based_on: str | None = live.version_row.version
    else:
        files = dict(store.read_draft(flows_dir, prompts_dir, flow, region).files)
        based_on = None
    now = datetime.now(UTC)
    row = FlowDraft(
        flow=flow,
        based_on=based_on,
        files=files,
        revision=1,
        created_at=now,
        created_by=by,
        updated_at=now,
        updated_by=by,
    )
    session.add(row)
    if note is not None:
        _record(session, Note(note.action, {**note.details, "based_on": based_on}), by, None)
    try:
        session.commit()
    except IntegrityError:  # someone else's start won the race
        session.rollback()
        raise DraftError(f"flow {flow!r} has a draft already: edit or discard it") from None
    return row


def get(session: Session, flow: str) -> FlowDraft | None:
    """The draft of `flow` as the database has it now, or None."""
    return session.get(FlowDraft, flow, populate_existing=True)


def discard(
    session: Session, flow: str, *, revision: int, by: str = "", note: Note | None = None
) -> None:
    """Delete the draft of `flow` as it was at `revision` (StaleDraft if saved since)."""
    take(session, flow, revision=revision)
    _record(session, note, by, revision)
    session.commit()


def take(session: Session, flow: str, *, revision: int) -> None:
    """Delete the draft at `revision` without committing, so a publish commits the new
    version and the draft's removal together (StaleDraft, rolled back, if saved since)."""
    _current(session, flow, revision)
    result = session.execute(
        delete(FlowDraft)
        .where(FlowDraft.flow == flow, FlowDraft.revision == revision)
        .execution_options(synchronize_session="fetch")
    )
    if getattr(result, "rowcount", 0) != 1:
        session.rollback()
        raise StaleDraft()


def problems_of(draft: FlowDraft, region: str) -> list[DefinitionProblem]:
    """Every problem a publish of the draft would be refused for (none: publishable)."""
    checked = _check(draft.flow, region, _files_key(draft.files))
    return list(checked) if isinstance(checked, tuple) else []


def loaded(draft: FlowDraft, region: str) -> store.Draft:
    """The draft, checked as a publish checks it (InvalidDefinition lists every problem)."""
    checked = _check(draft.flow, region, _files_key(draft.files))
    if isinstance(checked, tuple):
        raise InvalidDefinition(list(checked))
    return checked


# A page shows a draft's problems several times per request and every page of an editing
# session checks the same files: the check (seconds of proofs on a large flow) is
# remembered by content. Keyed by the files' text itself, so a save is never missed.
@functools.lru_cache(maxsize=16)
def _check(
    flow: str, region: str, files: tuple[tuple[str, str], ...]
) -> store.Draft | tuple[DefinitionProblem, ...]:
    try:
        return store.load_files(dict(files), flow, region)
    except InvalidDefinition as exc:
        return tuple(exc.problems)


def _files_key(files: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(files.items()))


# ---------------------------------------------------------------- reading the draft


def node_type(draft: FlowDraft, node_id: str) -> type[Node]:
    """The dataclass of a node of the draft (DraftError when there is no such node)."""
    raw = reading.raw_nodes(draft).get(node_id)
    kind = raw.get("type") if isinstance(raw, dict) else None
    node_class = NODE_TYPES.get(kind) if isinstance(kind, str) else None
    if node_class is None:
        raise DraftError(f"the draft of {draft.flow!r} has no node {node_id!r} of a known type")
    return node_class


def _readable(draft: FlowDraft, path: str) -> None:
    """DraftError when a file of the draft does not read (it must be mended as a whole)."""
    try:
        yamlread.read(draft.files.get(path, ""))
    except yaml.YAMLError as exc:
        raise DraftError(f"{path} does not read as YAML: {exc}") from None


# ---------------------------------------------------------------- edits


def set_prompt(
    session: Session,
    draft: FlowDraft,
    language: str,
    key: str,
    text: str,
    *,
    revision: int,
    by: str,
    region: str,
    note: Note | None = None,
) -> Saved:
    """Set one prompt text in one language (see set_prompts)."""
    return set_prompts(
        session, draft, key, {language: text}, revision=revision, by=by, region=region, note=note
    )


def set_prompts(
    session: Session,
    draft: FlowDraft,
    key: str,
    texts: Mapping[str, str],
    *,
    revision: int,
    by: str,
    region: str,
    note: Note | None = None,
) -> Saved:
    """Set the text of prompt `key` in each given language, in one save. A key a
    language lacks is added when a node uses it or another language has it; a text equal
    to the one written (spacing aside) leaves its file untouched."""
    current = _current(session, draft.flow, revision)
    if not PROMPT_KEY.match(key):
        raise DraftError(f"{key!r} is not a prompt key (lowercase letters, digits and _)")
    offered = reading.languages(current)
    known = set(reading.prompt_users(current)) | {
        k for language in offered for k in reading.prompt_texts(current, language)
    }
    if key not in known:
        raise DraftError(f"no node uses a prompt {key!r} and no language has it")
    files = dict(current.files)
    for language, text in texts.items():
        if language not in offered:
            raise DraftError(f"{language!r} is not a language of {draft.flow!r}")
        if not text.strip():
            raise DraftError(f"the {language} text of {key!r} is empty")
        path = store.prompt_path(language)
        written = reading.prompt_texts(current, language).get(key)
        if written is not None and yamledit.spoken(written) == yamledit.spoken(text):
            continue
        try:
            files[path] = yamledit.edit_prompt(files[path], path, key, text)
        except yamledit.EditError as exc:
            raise DraftError(str(exc)) from None
    return _save(session, current, files, revision=revision, by=by, region=region, note=note)


def set_node_fields(
    session: Session,
    draft: FlowDraft,
    node_id: str,
    changes: Mapping[str, Any],
    *,
    revision: int,
    by: str,
    region: str,
    note: Note | None = None,
) -> Saved:
    """Change fields of one node: a value sets the field (a str, an int, or a mapping of
    str → str for options, cases...), None removes it. Only fields of the node's kind."""
    current = _current(session, draft.flow, revision)
    _readable(current, reading.flow_file(current))
    node_class = node_type(current, node_id)
    allowed = reading.editable_fields(node_class)
    hints = typing.get_type_hints(node_class)
    for name, value in changes.items():
        if name not in allowed:
            raise DraftError(
                f"a {node_class.__name__} has no field {name!r}; its fields: " + ", ".join(allowed)
            )
        _check_value(node_class, name, hints[name], value)
    path = reading.flow_file(current)
    files = dict(current.files)
    try:
        files[path] = yamledit.edit_node(files[path], path, node_id, changes)
    except yamledit.EditError as exc:
        raise DraftError(str(exc)) from None
    return _save(session, current, files, revision=revision, by=by, region=region, note=note)


def _check_value(node_class: type[Node], name: str, hint: Any, value: Any) -> None:
    spec = next(spec for spec in fields(node_class) if spec.name == name)
    optional = isinstance(hint, UnionType) and NoneType in typing.get_args(hint)
    required = spec.default is MISSING and spec.default_factory is MISSING
    if value is None:
        if required:
            raise DraftError(f"{name} is required for a {node_class.__name__}")
        return
    base = next(a for a in typing.get_args(hint) if a is not NoneType) if optional else hint
    if typing.get_origin(base) is Mapping:
        # Values of the mapping's own type: prompt keys and node ids, or a split's shares.
        value_type = typing.get_args(base)[1]
        ok = isinstance(value, Mapping) and all(
            isinstance(k, str) and isinstance(v, value_type) and not isinstance(v, bool)
            for k, v in value.items()
        )
    elif base is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, str)
    if not ok:
        raise DraftError(f"{name}: {value!r} is not a value this field takes")


def _current(session: Session, flow: str, revision: int) -> FlowDraft:
    row = get(session, flow)
    if row is None:
        raise DraftError(f"flow {flow!r} has no draft (discarded or published meanwhile)")
    if row.revision != revision:
        raise StaleDraft()
    return row


def _save(
    session: Session,
    current: FlowDraft,
    files: dict[str, str],
    *,
    revision: int,
    by: str,
    region: str,
    note: Note | None = None,
) -> Saved:
    """Write the files at `revision` + 1 in one statement guarded by the revision, so two
    saves racing cannot both land; the full validation's problems come back."""
    if files == current.files:
        return Saved(current.revision, False, problems_of(current, region))
    for path, text in files.items():
        try:
            yamlread.read(text)
        except yaml.YAMLError as exc:  # never store what the loader cannot read
            raise DraftError(f"{path} would not read back: {exc}") from None
    result = session.execute(
        update(FlowDraft)
        .where(FlowDraft.flow == current.flow, FlowDraft.revision == revision)
        .values(files=files, revision=revision + 1, updated_at=datetime.now(UTC), updated_by=by)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        session.rollback()
        raise StaleDraft()
    _record(session, note, by, revision + 1)
    session.commit()
    saved = get(session, current.flow)
    assert saved is not None
    return Saved(saved.revision, True, problems_of(saved, region))
