"""From a simulated call to the agent's screen: the transfer carries the signed context.

A call placed through the simulator and transferred after (or without) verification
shows up on the agent page of the target it rang, and its screen pop gives the same
facts the whisper said — from the signed token, never from anything the carrier sent.
"""

from __future__ import annotations

from typing import Any

from agent_kit import add_user, sign_in
from caller import Phone
from flask import Flask
from flask.testing import FlaskClient
from kit import AGENT, JANE_PHONE, add_account, text

from ivr.agent import transfers
from ivr.agent.api import context_signer


def signed_in_agent(app: Flask, target: str) -> FlaskClient:
    add_user(app, target=target)
    client = app.test_client()
    assert sign_in(client).status_code == 303
    return client


def listed(app: Flask, target: str) -> list[dict[str, Any]]:
    with app.app_context():
        return transfers.recent(app.extensions["ivr.redis"], target)


def test_a_verified_transfer_pops_on_the_agents_screen(app: Flask, phone: Phone) -> None:
    account_id = add_account(app, "Jane Doe", JANE_PHONE, "10004321")
    client = signed_in_agent(app, AGENT)

    result = phone.call(JANE_PHONE, ["1", "4321", "@code", "2"])

    (entry,) = listed(app, AGENT)
    assert entry["call_sid"] == result.call_sid
    with app.app_context():
        context = context_signer().load(entry["token"])
    assert context["customer"] == "Jane Doe" and context["verification"] == "code"
    assert [m["method"] for m in context["methods"]] == ["account_digits", "code_sms"]
    assert context["transfer_reason"] == "caller_request"
    assert entry["account_id"] == account_id
    calls = client.get("/agent/calls.json").get_json()
    assert [call["call_sid"] for call in calls["calls"]] == [result.call_sid]
    pop = client.get(f"/agent/calls/{result.call_sid}").get_data(as_text=True)
    assert "Jane Doe" in pop and "•••4321" in pop
    assert text(app, "method_code_sms") in pop
    assert JANE_PHONE not in pop and "10004321" not in pop
    # The whisper said the same: verified, by the same methods.
    assert result.heard("agent")[0].startswith("Verified caller Jane Doe")


def test_an_unverified_transfer_pops_with_the_checklist(app: Flask, phone: Phone) -> None:
    add_account(app, "Jane Doe", JANE_PHONE, "10004321")
    client = signed_in_agent(app, AGENT)

    result = phone.call(JANE_PHONE, ["1", "0000", "0000", "0000"])

    (entry,) = listed(app, AGENT)
    with app.app_context():
        context = context_signer().load(entry["token"])
    assert context["customer"] is None and context["verification"] == "none"
    assert context["failure"] == "digits_failed"
    pop = client.get(f"/agent/calls/{result.call_sid}").get_data(as_text=True)
    assert 'data-testid="manual"' in pop and "Jane Doe" not in pop
