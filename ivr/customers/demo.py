"""`ivr demo`: seed the demo customers and say whom to call as."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext

from ivr.customers.seed import DEMO_CUSTOMERS, seed_demo
from ivr.storage import db


@click.command("demo")
@with_appcontext
def demo() -> None:
    """Add the demo customers (idempotent) and print how to call as each."""
    settings = current_app.config["IVR_SETTINGS"]
    seed_demo(db.session(), settings.default_region)
    click.echo("Demo customers (call as any of them; press 1 for English at the first prompt):")
    for name, phone, account_number, email in DEMO_CUSTOMERS:
        click.echo(
            f"  {name:<11} phone {phone}  account {account_number}"
            f"{'  email ' + email if email else ''}"
        )
        click.echo(f"      ivr call --from {phone} --digits 1,{account_number[-4:]},@code,2")
    click.echo(
        "  Unknown or withheld caller: ivr call --from anonymous --digits 1,10004321#,@code,2"
    )
    click.echo("  (@code keys in the code just sent to the local outbox: ivr outbox list)")
