"""What the draft pages and the publish pages share: finding the flow and its draft
(404 when there is none), the settings, and a draft's problems with links to the node
and the prompt each concerns.

Its own module so that `drafts_page` (editing) and `publish_page` (review, publish,
history, rollback) both import it and neither imports the other.
"""

from __future__ import annotations

import re
from typing import Any

from flask import abort, current_app, url_for

from ivr.config import Settings
from ivr.errors import DefinitionProblem
from ivr.storage import db
from ivr.storage.models import FlowDraft
from ivr.versions import draft_reading, drafts, store

INVALID = 422  # a form with errors, shown again
FLOW_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def settings() -> Settings:
    """The app's settings."""
    found: Settings = current_app.config["IVR_SETTINGS"]
    return found


def region() -> str:
    """The default region the flows' phone numbers are read in."""
    return settings().default_region


def link(endpoint: str, **values: Any) -> str | None:
    """A URL to another page of the console, or None while that page is not wired in."""
    return url_for(endpoint, **values) if endpoint in current_app.view_functions else None


def draft_or_404(flow: str) -> FlowDraft:
    """The draft of `flow` (404 when there is none)."""
    row = drafts.get(db.session(), flow)
    if row is None:
        abort(404, f"Flow {flow!r} has no draft. Start one from the draft page.")
    return row


def known_flow(flow: str) -> None:
    """404 unless `flow` is published, drafted or a working file."""
    session = db.session()
    if not FLOW_NAME.match(flow) or (
        store.live_row(session, flow) is None
        and drafts.get(session, flow) is None
        and not (settings().flows_dir / f"{flow}.yaml").is_file()
    ):
        abort(404, f"There is no flow {flow!r}.")


def based(row: FlowDraft) -> str:
    """What the draft was started from, as a sentence reads it."""
    return f"version {row.based_on}" if row.based_on else "the working files"


# ---------------------------------------------------------------- problems


def problem_items(row: FlowDraft, problems: list[DefinitionProblem]) -> list[dict[str, Any]]:
    """Each problem with links to the node and the prompt it concerns."""
    nodes = draft_reading.parsed_nodes(row)
    raw_ids = set(draft_reading.raw_nodes(row))
    items = []
    for problem in problems:
        node_url = prompt_url = None
        if problem.file == draft_reading.flow_file(row) and problem.where in raw_ids:
            node_url = url_for("ops.draft_node", flow=row.flow, node_id=problem.where)
            key = prompt_of(nodes.get(problem.where), problem.field)
            if key:
                prompt_url = url_for("ops.draft_prompt", flow=row.flow, key=key)
        elif problem.file.startswith("prompts/") and drafts.PROMPT_KEY.match(problem.where):
            prompt_url = url_for("ops.draft_prompt", flow=row.flow, key=problem.where)
        items.append({"problem": problem, "node_url": node_url, "prompt_url": prompt_url})
    return items


def prompt_of(node: Any, field: str) -> str | None:
    """The prompt key a field of a node names, if any."""
    if node is None or not field:
        return None
    key: str | None = node.prompts().get(field)
    return key
