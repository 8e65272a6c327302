"""The agent page's voicemail list (`/agent/voicemail`): who may see it, what it shows,
"mark handled" (CSRF, audited once, who and when shown), the panel for the main page,
and the audio endpoint (no audio in local development)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from agent_kit import add_user, csrf_of, sign_in
from flask import Flask, render_template
from kit import JANE_PHONE, add_account
from sqlalchemy import select

from ivr.flow.timeline import caller_key
from ivr.phone import mask
from ivr.storage import db
from ivr.storage.models import AuditEvent, Voicemail

SECRET = "test-secret-key"


def add_voicemail(
    app: Flask,
    n: int,
    *,
    account_id: int | None = None,
    age: timedelta = timedelta(minutes=5),
    status: str = "ready",
    language: str = "en-US",
) -> int:
    with app.app_context():
        row = Voicemail(
            call_sid="CA" + f"{n:032x}",
            recording_sid="RE" + f"{n:032x}",
            recording_url=f"https://api.twilio.com/2010-04-01/Accounts/AC{'0' * 32}/Recordings/RE{n:032x}",
            duration=10 + n,
            caller=mask(JANE_PHONE),
            caller_key=caller_key(JANE_PHONE, SECRET),
            account_id=account_id,
            verification="code" if account_id else "none",
            methods=["account_digits", "code_sms"] if account_id else [],
            language=language,
            flow="support",
            created_at=datetime.now(UTC) - age,
            status=status,
        )
        db.session().add(row)
        db.session().commit()
        return row.id


def rows(app: Flask) -> dict[int, Voicemail]:
    with app.app_context():
        session = db.session()
        session.expire_all()
        found = {row.id: row for row in session.scalars(select(Voicemail))}
        session.expunge_all()
        return found


def audits(app: Flask, action: str) -> list[AuditEvent]:
    with app.app_context():
        session = db.session()
        session.expire_all()
        query = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        return list(session.scalars(query))


@pytest.fixture
def agent(app: Flask) -> Any:
    add_user(app, "alice")
    client = app.test_client()
    assert sign_in(client).status_code in (302, 303)
    return client


def test_signed_out_people_are_sent_to_sign_in(app: Flask) -> None:
    add_voicemail(app, 1)
    response = app.test_client().get("/agent/voicemail/")
    assert response.status_code == 302
    assert "/agent/login" in response.headers["Location"]
    assert "next=" in response.headers["Location"]
    posted = app.test_client().post("/agent/voicemail/1/handled")
    assert posted.status_code == 400  # no session, no CSRF token: refused before anything


def test_ops_staff_go_to_their_console(app: Flask) -> None:
    add_user(app, "olga", role="ops")
    client = app.test_client()
    sign_in(client, "olga")
    response = client.get("/agent/voicemail/")
    assert response.status_code == 302 and "/ops" in response.headers["Location"]


def test_the_list_shows_newest_first_masked_with_the_verified_account(
    app: Flask, agent: Any
) -> None:
    account_id = add_account(app, "Jane Doe", JANE_PHONE, "10004321", "jane@example.com")
    old = add_voicemail(app, 1, age=timedelta(days=2), language="es-US")
    new = add_voicemail(app, 2, account_id=account_id, age=timedelta(minutes=3))
    erased = add_voicemail(app, 3, status="erased")
    response = agent.get("/agent/voicemail/")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert page.index(f'data-voicemail-id="{new}"') < page.index(f'data-voicemail-id="{old}"')
    assert f'data-voicemail-id="{erased}"' not in page
    assert mask(JANE_PHONE) in page and JANE_PHONE not in page
    assert "•••4321" in page and "10004321" not in page
    assert "account_digits, code_sms" in page  # verified, with the methods
    assert "12 s" in page and "es-US" in page and "2 d ago" in page and "3 min ago" in page
    assert f"/agent/voicemail/{new}/audio" in page
    assert "api.twilio.com" not in page  # the browser never gets Twilio's URL
    assert "media-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store"


def test_mark_handled_is_audited_once_and_shows_who_and_when(app: Flask, agent: Any) -> None:
    first = add_voicemail(app, 1)
    token = csrf_of(agent, "/agent/voicemail/")
    response = agent.post(f"/agent/voicemail/{first}/handled", data={"csrf_token": token})
    assert response.status_code == 303
    row = rows(app)[first]
    assert row.handled_by == "alice" and row.handled_at is not None
    [event] = audits(app, "voicemail.handled")
    assert event.call_sid == row.call_sid
    assert event.details == {"voicemail_id": first, "recording_sid": row.recording_sid}
    assert event.actor.startswith("agent:")
    # Again (a second tab, or another agent): nothing changes, nothing more audited.
    agent.post(f"/agent/voicemail/{first}/handled", data={"csrf_token": token})
    assert len(audits(app, "voicemail.handled")) == 1
    assert rows(app)[first].handled_at == row.handled_at
    # The unhandled list no longer has it; the full one shows who handled it.
    assert f'data-voicemail-id="{first}"' not in agent.get("/agent/voicemail/").get_data(
        as_text=True
    )
    everything = agent.get("/agent/voicemail/?all=1").get_data(as_text=True)
    assert "handled by alice" in everything


def test_mark_handled_without_the_csrf_token_is_refused(app: Flask, agent: Any) -> None:
    first = add_voicemail(app, 1)
    response = agent.post(f"/agent/voicemail/{first}/handled", data={"csrf_token": "forged"})
    assert response.status_code == 400
    assert rows(app)[first].handled_at is None
    assert audits(app, "voicemail.handled") == []


def test_an_unknown_or_erased_message_is_404(app: Flask, agent: Any) -> None:
    erased = add_voicemail(app, 1, status="erased")
    token = csrf_of(agent, "/agent/voicemail/")
    assert (
        agent.post(f"/agent/voicemail/{erased}/handled", data={"csrf_token": token}).status_code
        == 404
    )
    unknown = erased + 1000
    assert (
        agent.post(f"/agent/voicemail/{unknown}/handled", data={"csrf_token": token}).status_code
        == 404
    )
    assert agent.get(f"/agent/voicemail/{erased}/audio").status_code == 404


def test_no_audio_in_local_development(app: Flask, agent: Any) -> None:
    first = add_voicemail(app, 1)
    response = agent.get(f"/agent/voicemail/{first}/audio")
    assert response.status_code == 404
    assert "local development" in response.get_data(as_text=True)


def test_the_panel_counts_unhandled_messages(app: Flask, agent: Any) -> None:
    add_voicemail(app, 1)
    add_voicemail(app, 2)
    add_voicemail(app, 3, status="erased")
    with app.test_request_context("/agent/"):
        html = render_template("agent/_voicemail_panel.html")
    assert 'data-testid="voicemail-unhandled">2<' in html
    assert "/agent/voicemail/" in html


def test_the_main_agent_page_shows_the_panel(app: Flask, agent: Any) -> None:
    add_voicemail(app, 1)
    html = agent.get("/agent/").get_data(as_text=True)
    assert 'data-testid="voicemail-panel"' in html
    assert 'data-testid="voicemail-unhandled">1<' in html
