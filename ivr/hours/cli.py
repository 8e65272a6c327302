"""`ivr hours`: close the line in an emergency, or open it again (issue 15 groundwork)."""

from __future__ import annotations

from flask.cli import AppGroup

hours = AppGroup("hours", help="Close the line in an emergency, or open it again.")
