"""Validates TwiML against Twilio's published schema, vendored in tests/twilio/."""

from __future__ import annotations

from functools import cache
from pathlib import Path

SCHEMA = Path(__file__).resolve().parent / "twilio" / "twiml_v20100401_twilioRealtimeCallSchema.xsd"


@cache
def _schema():  # type: ignore[no-untyped-def]
    import xmlschema

    return xmlschema.XMLSchema(str(SCHEMA))


def assert_valid_twiml(document: str) -> None:
    """Fail unless `document` is valid TwiML (the schema is part of the repository)."""
    errors = list(_schema().iter_errors(document))
    assert not errors, f"invalid TwiML: {errors[0].reason}\n{document}"
