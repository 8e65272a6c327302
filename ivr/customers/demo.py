"""`ivr demo [--reset]`: seed the demo customers (or put them back as new) and say whom
to call as."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext

from ivr.customers.seed import DEMO_CUSTOMERS, reset_demo, seed_demo
from ivr.storage import db, kv


@click.command("demo")
@click.option(
    "--reset",
    is_flag=True,
    help="Put the demo customers back as new: phones, no number history or flags, and no "
    "pending change, codes, send counts or lockout in Redis.",
)
@with_appcontext
def demo(reset: bool) -> None:
    """Add the demo customers (idempotent) and print how to call as each."""
    settings = current_app.config["IVR_SETTINGS"]
    if reset:
        reset_demo(db.session(), kv.client(), settings.default_region)
        click.echo("Demo customers reset: phones, history, flags, codes and limits as new.")
        if settings.redis_url is None:
            click.echo(
                "  (a server started with `make run` keeps codes and limits in its own "
                "in-process Redis until it restarts)"
            )
    else:
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
    click.echo(
        "  (@code keys in the code sent or read out on that call: ivr outbox list shows them)"
    )
