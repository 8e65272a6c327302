"""The version store: published versions in the database, the live one per flow, and
the live pointer in Redis that every worker reads instead of the database.

A version keeps its files byte for byte (`flows/<flow>.yaml` and the prompt file of
each of its languages), so it loads and exports exactly as published.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import redis
from sqlalchemy import select, update
from sqlalchemy.orm import Session, selectinload

from ivr.errors import DefinitionProblem, InvalidDefinition
from ivr.flow.loader import Definitions, Source, check_sources, read_source
from ivr.flow.model import Catalog, Flow
from ivr.storage import keys
from ivr.storage.kv import unavailable_as_storage_error
from ivr.storage.models import FlowVersion, FlowVersionFile, LiveFlow

# How long the Redis pointer lives without a publish: should a publish fail to set it,
# workers read the live version from the database again within this many seconds.
POINTER_TTL = 30


@dataclass(frozen=True)
class LoadedFlow:
    """One version of a flow, ready to run: the flow and the prompts of its files."""

    flow: Flow
    catalog: Catalog


@dataclass(frozen=True)
class Draft:
    """The working files of one flow, read and checked: what a publish would store."""

    loaded: LoadedFlow
    files: Mapping[str, str]  # stored path → exact text


def flow_path(flow: str) -> str:
    return f"flows/{flow}.yaml"


def prompt_path(language: str) -> str:
    return f"prompts/{language}.yaml"


def read_draft(flows_dir: Path, prompts_dir: Path, flow: str, region: str) -> Draft:
    """The working files of `flow`, validated; InvalidDefinition lists every problem."""
    problems: list[DefinitionProblem] = []
    flow_file = flows_dir / f"{flow}.yaml"
    if not flow_file.exists():
        found = ", ".join(sorted(p.stem for p in flows_dir.glob("*.yaml"))) or "none"
        raise InvalidDefinition(
            [DefinitionProblem(str(flow_file), "", "", f"no such flow (flows here: {found})")]
        )
    flow_source = read_source(flow_file, problems)
    prompt_sources = [
        source
        for source in (read_source(p, problems) for p in sorted(prompts_dir.glob("*.yaml")))
        if source is not None
    ]
    if problems or flow_source is None:
        raise InvalidDefinition(problems)
    definitions = _checked([flow_source], prompt_sources, region)
    loaded = _loaded(definitions, flow)
    files = {flow_path(flow): flow_source.text}
    by_name = {source.stem: source for source in prompt_sources}
    for language in loaded.flow.languages:
        files[prompt_path(language)] = by_name[language].text
    return Draft(loaded, files)


def load_version(row: FlowVersion, region: str) -> LoadedFlow:
    """A stored version as it was published (InvalidDefinition if it no longer loads)."""
    return load_files({f.path: f.content for f in row.files}, row.flow, region).loaded


def version_problems(row: FlowVersion, region: str) -> list[DefinitionProblem]:
    """Why a stored version no longer passes today's checks (empty: it could go live)."""
    files = {f.path: f.content for f in row.files}
    digest = hashlib.sha256(repr(sorted(files.items())).encode("utf-8")).hexdigest()
    key = (row.flow, region, digest)
    with _checked_lock:
        known = _checked_versions.get(key)
    if known is None:
        try:
            load_files(files, row.flow, region)
            known = ()
        except InvalidDefinition as exc:
            known = tuple(exc.problems)
        with _checked_lock:
            _checked_versions[key] = known
            while len(_checked_versions) > CHECKED_VERSIONS:
                _checked_versions.popitem(last=False)
    return list(known)


# A version never changes and the checks change only with the code, so the history
# page remembers each version's verdict (by content) instead of running the proofs of
# every version on every view.
CHECKED_VERSIONS = 256
_checked_versions: OrderedDict[tuple[str, str, str], tuple[DefinitionProblem, ...]] = OrderedDict()
_checked_lock = threading.Lock()


def load_files(files: Mapping[str, str], flow: str, region: str) -> Draft:
    """Files kept in the database (a version's, or the console's draft), checked as a
    publish checks them; InvalidDefinition lists every problem."""
    flows = [Source(path, text) for path, text in files.items() if path.startswith("flows/")]
    prompts = [Source(path, text) for path, text in files.items() if path.startswith("prompts/")]
    return Draft(_loaded(_checked(flows, prompts, region), flow), dict(files))


def _checked(flows: list[Source], prompts: list[Source], region: str) -> Definitions:
    definitions, problems = check_sources(flows, prompts, region)
    if problems or definitions is None:
        raise InvalidDefinition(problems)
    return definitions


def _loaded(definitions: Definitions, flow: str) -> LoadedFlow:
    return LoadedFlow(definitions.flows[flow], definitions.catalog)


def find_version(session: Session, flow: str, version: str) -> FlowVersion | None:
    """The version of `flow` whose id is `version` or starts with it (at least 4 digits)."""
    if len(version) < 4:
        return None
    rows = session.scalars(
        select(FlowVersion)
        .where(FlowVersion.flow == flow, FlowVersion.version.startswith(version, autoescape=True))
        .options(selectinload(FlowVersion.files))
    ).all()
    return rows[0] if len(rows) == 1 else None


def live_row(session: Session, flow: str) -> LiveFlow | None:
    return session.get(LiveFlow, flow)


def history(session: Session, flow: str) -> list[FlowVersion]:
    """Every version of `flow`, newest first."""
    return list(
        session.scalars(
            select(FlowVersion)
            .where(FlowVersion.flow == flow)
            .order_by(FlowVersion.published_at.desc(), FlowVersion.id.desc())
        )
    )


def add_version(
    session: Session, draft: Draft, *, by: str, message: str, now: datetime
) -> FlowVersion:
    row = FlowVersion(
        flow=draft.loaded.flow.name,
        version=draft.loaded.flow.version,
        published_at=now,
        published_by=by,
        message=message,
        files=[FlowVersionFile(path=path, content=text) for path, text in draft.files.items()],
    )
    session.add(row)
    session.flush()
    return row


def set_live(
    session: Session, row: FlowVersion, *, expected: int | None, by: str, now: datetime
) -> bool:
    """Make `row` live if the live version of its flow is still the version row
    `expected` (None: no version is live yet); False, nothing changed, if it is not.

    A compare-and-set in the database, not in this session's memory: the conditional
    UPDATE waits for a concurrent one on PostgreSQL and then finds the row moved, and
    a racing first publish fails on the primary key (IntegrityError, from the flush).
    """
    if expected is None:
        session.add(LiveFlow(flow=row.flow, version_id=row.id, since=now, by=by))
        session.flush()
        return True
    result = session.execute(
        update(LiveFlow)
        .where(LiveFlow.flow == row.flow, LiveFlow.version_id == expected)
        .values(version_id=row.id, since=now, by=by)
        .execution_options(synchronize_session="fetch")
    )
    return getattr(result, "rowcount", 0) == 1


def read_pointer(client: redis.Redis, flow: str) -> str | None:
    """The live version of `flow` as Redis knows it, or None (never set, or lapsed)."""
    with unavailable_as_storage_error():
        raw = client.get(keys.live_flow(flow))
    return raw.decode() if isinstance(raw, bytes) else raw


def write_pointer(client: redis.Redis, flow: str, version: str) -> None:
    with unavailable_as_storage_error():
        client.set(keys.live_flow(flow), version, ex=POINTER_TTL)
