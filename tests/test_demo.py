"""`ivr demo --reset`: the demo customers back as new, so README examples run in any order."""

from __future__ import annotations

import json

from flask import Flask
from flask.testing import FlaskCliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session

from ivr.storage import keys, kv
from ivr.storage.models import Account, PhoneNumber

JANE, JANE_ACCOUNT, NEW_PHONE = "+14155550100", "10004321", "+14155550199"
CHANGE_NUMBER = ["--digits", "1,4321,@code,1,4155550199#,1,@code,3", "--callee-digits", "1"]


def show(runner: FlaskCliRunner, account_number: str) -> dict[str, object]:
    result = runner.invoke(args=["customers", "show", account_number, "--json"])
    assert result.exit_code == 0, result.output
    shown: dict[str, object] = json.loads(result.output)
    return shown


def account_keys(app: Flask, account_number: str) -> list[bytes]:
    with app.app_context():
        from ivr.storage import db

        account_id = db.session().scalar(select(Account.id).where(Account.number == account_number))
        assert account_id is not None
        return sorted(kv.client().scan_iter(match=keys.account_pattern(account_id)))


def test_reset_undoes_a_number_change_and_redis_state(
    app: Flask, runner: FlaskCliRunner, db_session: Session
) -> None:
    assert runner.invoke(args=["demo"]).exit_code == 0
    changed = runner.invoke(args=["call", "--from", JANE, *CHANGE_NUMBER])
    assert changed.exit_code == 0, changed.output
    jane = show(runner, JANE_ACCOUNT)
    assert jane["phone"] == NEW_PHONE and jane["flags"] == ["number_changed_recently"]
    assert account_keys(app, JANE_ACCOUNT)  # send counts of the codes just used
    with app.app_context():
        john_id = db_session.scalar(select(Account.id).where(Account.number == "20005678"))
        assert john_id is not None
        kv.client().set(keys.lockout(john_id), "1")

    reset = runner.invoke(args=["demo", "--reset"])

    assert reset.exit_code == 0, reset.output
    assert "Demo customers reset" in reset.output
    jane = show(runner, JANE_ACCOUNT)
    assert jane["phone"] == JANE
    assert jane["phone_history"] == [] and jane["flags"] == []
    assert jane["number_changed_until"] is None and jane["pending_change"] is None
    assert account_keys(app, JANE_ACCOUNT) == []
    assert account_keys(app, "20005678") == []
    db_session.expire_all()
    assert db_session.scalar(select(PhoneNumber).where(PhoneNumber.e164 == NEW_PHONE)) is None
    # The README's number change works again, as on a fresh install.
    again = runner.invoke(args=["call", "--from", JANE, *CHANGE_NUMBER])
    assert again.exit_code == 0, again.output
    assert show(runner, JANE_ACCOUNT)["phone"] == NEW_PHONE


def test_reset_leaves_other_customers_alone(
    app: Flask, runner: FlaskCliRunner, db_session: Session
) -> None:
    from factories import make_account

    other = make_account(db_session, "Pat Poe", "+14155550142", "55551234")
    with app.app_context():
        kv.client().set(keys.lockout(other.id), "1")

    assert runner.invoke(args=["demo", "--reset"]).exit_code == 0

    assert show(runner, "55551234")["phone"] == "+14155550142"
    assert account_keys(app, "55551234") == [keys.lockout(other.id).encode()]


def test_reset_on_an_empty_database_seeds_the_demo(runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["demo", "--reset"])
    assert result.exit_code == 0, result.output
    assert show(runner, JANE_ACCOUNT)["phone"] == JANE
