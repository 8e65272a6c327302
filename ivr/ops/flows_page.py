"""The flows page: each flow with its live version (who published it, when), the flow
drawn as a diagram, and a node's fields and prompts when one is chosen."""

from __future__ import annotations

from typing import Any

from flask import render_template

from ivr.ops.blueprint import bp, readable


@bp.get("/")
@readable
def index() -> Any:
    """The console's home: the flows."""
    return render_template("ops/flows.html")
