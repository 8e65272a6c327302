"""Every project command group of the `ivr` CLI, in one list.

Both the app factory (for `app.cli`, which the test runner uses) and the `ivr`
entry point read this list; neither imports the other for it.
"""

from __future__ import annotations

import click


def project_commands() -> list[click.Command]:
    """The project's command groups: db, customers, flows, call(s), demo, outbox, users, jobs,
    hours."""
    from ivr.agent.users import users
    from ivr.customers.cli import customers
    from ivr.customers.demo import demo
    from ivr.delivery.cli import outbox
    from ivr.history.cli import calls
    from ivr.hours.cli import hours
    from ivr.jobs.cli import jobs
    from ivr.simulator.cli import call
    from ivr.storage.migrate import db_group
    from ivr.versions.cli import flows
    from ivr.voicemail.cli import voicemail

    return [db_group, customers, flows, call, calls, demo, outbox, users, jobs, hours, voicemail]
