"""Which flow version a simulated call runs on: the tester's choice (live, the draft,
or a version id) resolved as it is now for a new call, and the version a running call
is pinned to for its replays.

A call starts on what its choice resolves to and keeps that version (its content hash)
to the end, like a real call: a publish, a rollback or a draft edit meanwhile changes
only the next call. Versions are kept loaded with their files (the sandbox boots from
a version's files, never the service's working files on disk).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Mapping

from flask import current_app

from ivr.config import Settings
from ivr.errors import InvalidDefinition
from ivr.simulator.sandbox import Script
from ivr.storage import db
from ivr.storage.models import FlowDraft
from ivr.versions import store
from ivr.versions.store import Draft

LIVE, DRAFT = "live", "draft"
CACHED_FLOWS = 16  # loaded versions and drafts kept per process (some under two keys)

# Versions loaded with their files, by "flow@version" (published ones only: every web
# process finds those in the database too, so a call pinned to a draft that has changed
# since stops on every process alike), "flow#files digest" (drafts) and "flow~digest"
# (the working files, read again when they change).
_loaded: OrderedDict[str, Draft] = OrderedDict()
_loaded_lock = threading.Lock()


def _settings() -> Settings:
    settings: Settings = current_app.config["IVR_SETTINGS"]
    return settings


class Unavailable(Exception):
    """The chosen flow version cannot be simulated; the message says why."""


class NoDraft(Unavailable):
    """The draft chosen does not exist (any more): the live version is offered instead."""

    def __init__(self, flow: str):
        super().__init__(
            f"Flow {flow!r} has no draft (any more: was it published or discarded?). "
            "The live version is selected instead."
        )


def resolve(flow: str, choice: str) -> Draft:
    """What the tester's choice (live, draft or a version id) is NOW, with its files;
    Unavailable says why there is none. Its `loaded.flow.version` is the id a call on it
    is pinned to."""
    session = db.session()
    if choice == DRAFT:
        draft = session.get(FlowDraft, flow)
        if draft is None:
            raise NoDraft(flow)
        return _load_draft(flow, draft.files)
    if choice == LIVE:
        live = store.live_row(session, flow)
        if live is not None:
            return _stored(flow, live.version_row.version)
        if flow == _settings().flow:
            return _working(flow)  # nothing published yet: what the first call publishes
        raise Unavailable(f"Flow {flow!r} has no live version.")
    return _stored(flow, choice)


def pinned(script: Script) -> Draft:
    """The version a running call started on (its script's `version`), whatever is live
    or drafted now; Unavailable when it can no longer be found."""
    flow, version = script.flow, script.version
    cached = _cached(f"{flow}@{version}")
    if cached is not None:
        return cached
    session = db.session()
    if script.chosen == DRAFT:
        draft = session.get(FlowDraft, flow)
        if draft is not None:
            served = _load_draft(flow, draft.files)
            if served.loaded.flow.version == version:
                return served
    row = store.find_version(session, flow, version)
    if row is not None and row.version == version:
        return _stored(flow, version)
    if flow == _settings().flow and script.chosen == LIVE:
        try:
            served = _working(flow)
        except Unavailable:
            pass
        else:
            if served.loaded.flow.version == version:
                return served
    if script.chosen == DRAFT:
        raise Unavailable(
            "The draft this call was started on has changed since, and that version was "
            "never published: start a new call to hear the draft as it is now."
        )
    raise Unavailable(f"Flow {flow!r} has no version {version!r} any more.")


def _load_draft(flow: str, files: Mapping[str, str]) -> Draft:
    key = f"{flow}#" + hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    cached = _cached(key)
    if cached is not None:
        return cached
    try:
        served = store.load_files(files, flow, _settings().default_region)
    except InvalidDefinition as exc:
        count = len(exc.problems)
        raise Unavailable(
            f"The draft of {flow!r} has {count} problem{'s' if count != 1 else ''} "
            "to fix before it can be simulated."
        ) from None
    except KeyError:
        raise Unavailable(f"The draft does not define flow {flow!r}.") from None
    return _remember(key, served)


def _stored(flow: str, version: str) -> Draft:
    """A published version of `flow` (by id, or the start of one)."""
    row = store.find_version(db.session(), flow, version)
    if row is None:
        raise Unavailable(f"Flow {flow!r} has no version {version!r}.")
    cached = _cached(f"{flow}@{row.version}")
    if cached is not None:
        return cached
    files = {f.path: f.content for f in row.files}
    try:
        served = store.load_files(files, flow, _settings().default_region)
    except (InvalidDefinition, KeyError):
        raise Unavailable(f"Version {row.version[:12]} of {flow!r} no longer loads.") from None
    return _remember(f"{flow}@{row.version}", served)


def _working(flow: str) -> Draft:
    """The service's working files of `flow`, when nothing of it is published yet (the
    service publishes them on its first call); Unavailable if they do not load."""
    settings = _settings()
    paths = [settings.flows_dir / f"{flow}.yaml", *sorted(settings.prompts_dir.glob("*.yaml"))]
    try:
        texts = {str(path): path.read_bytes() for path in paths}
    except OSError:
        texts = {}
    digest = hashlib.sha256(repr(sorted(texts.items())).encode()).hexdigest()
    cached = _cached(f"{flow}~{digest}")
    if cached is not None:
        return cached
    try:
        served = store.read_draft(
            settings.flows_dir, settings.prompts_dir, flow, settings.default_region
        )
    except InvalidDefinition as exc:
        count = len(exc.problems)
        raise Unavailable(
            f"Nothing of {flow!r} is published yet, and its working files have {count} "
            f"problem{'s' if count != 1 else ''}: publish a version or simulate the draft."
        ) from None
    return _remember(f"{flow}~{digest}", served)


def _cached(key: str) -> Draft | None:
    with _loaded_lock:
        found = _loaded.get(key)
        if found is not None:
            _loaded.move_to_end(key)
        return found


def _remember(key: str, served: Draft) -> Draft:
    with _loaded_lock:
        _loaded[key] = served
        while len(_loaded) > CACHED_FLOWS:
            _loaded.popitem(last=False)
    return served
