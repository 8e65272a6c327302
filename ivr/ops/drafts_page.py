"""Editing a flow's draft in the browser: prompts per language and node fields through
forms, validated on every save; the review (semantic diff against the live version) and
publish; the history with rollback."""

from __future__ import annotations
