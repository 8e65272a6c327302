"""Validates TwiML against Twilio's published schema in ../shared/twilio/."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest

SCHEMA = (
    Path(__file__).resolve().parent.parent.parent
    / "shared"
    / "twilio"
    / "twiml_v20100401_twilioRealtimeCallSchema.xsd"
)


@cache
def _schema():  # type: ignore[no-untyped-def]
    import xmlschema

    return xmlschema.XMLSchema(str(SCHEMA))


def assert_valid_twiml(document: str) -> None:
    """Fail unless `document` is valid TwiML; skip (with the reason) if the schema is absent."""
    if not SCHEMA.exists():
        pytest.skip(f"Twilio's TwiML schema is not at {SCHEMA}")
    errors = list(_schema().iter_errors(document))
    assert not errors, f"invalid TwiML: {errors[0].reason}\n{document}"
