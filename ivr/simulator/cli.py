"""Stub."""
import click


@click.command("call")
def call() -> None:
    """Stub."""
