"""The console's emergency closure switch (issue 15 groundwork; filled in by the hours work)."""

from __future__ import annotations
