"""The audit page: publishes, rollbacks, draft edits and sign-ins, filterable by person
and flow."""

from __future__ import annotations
