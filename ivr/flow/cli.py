"""Stub."""
import click


@click.command("flows")
def flows() -> None:
    """Stub."""
