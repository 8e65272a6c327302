"""`ivr customers …` commands."""

from __future__ import annotations

import click


@click.group("customers")
def customers() -> None:
    """Import and inspect customers and their accounts."""
