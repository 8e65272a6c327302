"""The outline shows what issue 15 added to nodes: a holding transfer's announcement
interval among its hold details, and each of a split's exits with its share of calls."""

from __future__ import annotations

from pathlib import Path

from ivr.flow.loader import load_definitions
from ivr.flow.outline import outline, outline_rows

ROOT = Path(__file__).resolve().parent.parent

FLOW = """
name: trial
start: trial
languages: [en-US, es-US]
nodes:
  trial:
    type: split
    exits:
      old: agent
      new: quiet
    shares:
      old: 70
      new: 30
  agent:
    type: transfer
    reason: caller_request
    target: queue:support
    queue_max_wait: 90
    announce_every: 120
    unanswered: bye
  quiet:
    type: transfer
    reason: caller_request
    target: queue:support
    unanswered: bye
  bye:
    type: hangup
    prompt: goodbye
"""


def load(tmp_path: Path):  # type: ignore[no-untyped-def]
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "trial.yaml").write_text(FLOW, encoding="utf-8")
    definitions = load_definitions(flows, ROOT / "prompts", "US")
    return definitions.flows["trial"], definitions.catalog


def test_a_split_lists_each_exit_with_its_share(tmp_path: Path) -> None:
    flow, catalog = load(tmp_path)
    lines = outline(flow, catalog).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("trial "))
    assert lines[start + 1 : start + 3] == ["    old → agent (70%)", "    new → quiet (30%)"]
    rows = {row.node: row for row in outline_rows(flow, catalog)}
    assert rows["trial"].shares == {"old": 70, "new": 30}
    assert rows["agent"].shares == {}


def test_a_holding_transfer_says_how_often_the_position_is_announced(tmp_path: Path) -> None:
    flow, catalog = load(tmp_path)
    rows = {row.node: row for row in outline_rows(flow, catalog)}
    assert rows["agent"].transfer is not None
    assert "at most 90 s on hold, position and wait every 120 s" in rows["agent"].transfer
    # Without its own interval the default applies: nothing to say.
    assert "every" not in (rows["quiet"].transfer or "")
    assert "    target: " + rows["agent"].transfer in outline(flow, catalog).splitlines()
