"""The browser call simulator through its views: who may use it, a known caller's call
to an agent with the texted code keyed in from the page, a number change answered on
the phone called back, the draft heard instead of the live version, bad scripts
refused plainly, and the service's own stores left exactly as they were."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import pytest
from agent_kit import add_user, csrf_of, sign_in
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from ivr.customers.seed import seed_demo
from ivr.storage import db, kv
from ivr.storage.models import Account, AuditEvent, FlowDraft
from ivr.versions import store

SCRIPT = re.compile(r'name="script" value="([^"]*)"')
WHO = re.compile(r'name="who" value="([^"]*)"')
CODE = re.compile(r'data-testid="code" data-code="(\d+)"')
TURN = re.compile(r'data-testid="turn"[^>]*>(.*?)</p>', re.S)
NODE = re.compile(r'data-testid="current-node">At node <code>([^<]*)</code>')
CURRENT = re.compile(r'class="[^"]*\bis-current\b[^"]*" data-node="([^"]+)"')
HEARD = re.compile(r'<span class="text"[^>]*>([^<]*)</span>')


class Phone:
    """Drives the simulator page as a browser without JavaScript would."""

    def __init__(self, client: FlaskClient):
        self.client = client
        self.token = csrf_of(client, "/ops/simulator")
        self.page = ""

    def start(self, status: int = 200, **choices: str) -> str:
        form = {"flow": "support", "version": "live", "caller": "customer:0", "language": "en-US"}
        form.update(choices)
        return self._post("/ops/simulator/start", form, status)

    def press(self, keys: str) -> str:
        """Key by key on the keypad buttons, then Send."""
        entry = ""
        for key in keys:
            entry = self._entry_after({"press": key, "entry": entry})
        return self.answer("send", entry=entry)

    def answer(self, action: str, entry: str = "", status: int = 200) -> str:
        return self._post(
            "/ops/simulator/answer",
            {"script": self.script, "who": self.who, "action": action, "entry": entry},
            status,
        )

    def key_in_code(self) -> str:
        """The newest code on the page, keyed in with its "Key in" button, then Send."""
        code = self.codes[-1]
        entry = self._entry_after({"fill": code, "entry": ""})
        assert entry == code
        return self.answer("send", entry=entry)

    def _entry_after(self, form: dict[str, str]) -> str:
        page = self._post("/ops/simulator/answer", {"script": self.script, **form}, 200)
        found = re.search(r'id="entry" name="entry" value="([^"]*)"', page)
        assert found, "no entry on the page"
        return html.unescape(found.group(1))

    def _post(self, path: str, form: dict[str, str], status: int) -> str:
        response = self.client.post(path, data={"csrf_token": self.token, **form})
        assert response.status_code == status, response.get_data(as_text=True)[-2000:]
        self.page = response.get_data(as_text=True)
        return self.page

    @property
    def script(self) -> str:
        found = SCRIPT.search(self.page)
        assert found, "no call on the page"
        return html.unescape(found.group(1))

    @property
    def who(self) -> str:
        found = WHO.search(self.page)
        assert found, "nothing asked on the page"
        return found.group(1)

    @property
    def codes(self) -> list[str]:
        return CODE.findall(self.page)

    @property
    def turn(self) -> str:
        found = TURN.search(self.page)
        return " ".join(re.sub(r"<[^>]+>", "", found.group(1)).split()) if found else ""

    @property
    def node(self) -> str:
        found = NODE.search(self.page)
        return found.group(1) if found else ""

    @property
    def heard(self) -> list[str]:
        return [html.unescape(text) for text in HEARD.findall(self.page)]


def signed_in(app: Flask, role: str = "ops") -> FlaskClient:
    add_user(app, "sam", role=role)
    client = app.test_client()
    assert sign_in(client, "sam").status_code == 303
    return client


@pytest.fixture
def phone(app: Flask) -> Phone:
    return Phone(signed_in(app))


@pytest.mark.parametrize(("role", "status"), [("ops", 200), ("supervisor", 200), ("agent", 403)])
def test_ops_and_supervisors_may_simulate_agents_may_not(
    app: Flask, role: str, status: int
) -> None:
    client = signed_in(app, role)
    page = client.get("/ops/simulator")
    assert page.status_code == status
    token = csrf_of(client, "/ops/simulator" if status == 200 else "/agent/")
    started = client.post(
        "/ops/simulator/start",
        data={"csrf_token": token, "flow": "support", "version": "live", "caller": "withheld"},
    )
    assert started.status_code == status
    if status == 200:
        assert "never touched" in page.get_data(as_text=True)
        assert "For English, press 1." in started.get_data(as_text=True)


def test_a_visitor_is_sent_to_sign_in(app: Flask) -> None:
    answer = app.test_client().get("/ops/simulator")
    assert answer.status_code == 302 and "/agent/login" in answer.headers["Location"]


def test_posts_need_the_csrf_token(app: Flask) -> None:
    client = signed_in(app)
    refused = client.post(
        "/ops/simulator/start", data={"flow": "support", "version": "live", "caller": "withheld"}
    )
    assert refused.status_code == 400
    assert "did not come from this page" in refused.get_data(as_text=True)
    assert client.post("/ops/simulator/answer", data={"script": "{}"}).status_code == 400


def test_a_known_caller_keys_in_the_texted_code_and_reaches_an_agent(phone: Phone) -> None:
    page = phone.start()
    assert "Thank you for calling Example support." in phone.heard
    assert phone.node == "last4 (check_account_digits)"
    assert CURRENT.findall(page) == ["last4"]  # highlighted on the diagram
    assert phone.turn.startswith("Your turn, caller")
    phone.press("4321")
    assert phone.node.startswith("enter_code")
    assert CURRENT.findall(phone.page) == ["enter_code"]
    assert len(phone.codes) == 1
    assert "+1415•••0100" in phone.page  # where the text went, masked
    phone.key_in_code()
    assert phone.heard[-1].startswith("Thank you, Jane.")
    page = phone.press("2")
    assert 'data-testid="call-ended"' in page
    assert 'data-testid="transferred"' in page
    whisper = re.search(r'data-testid="whisper">(.*?)</blockquote>', page, re.S)
    assert whisper and "Jane" in whisper.group(1)
    assert 'data-testid="new-call"' in page
    assert 'name="entry"' not in page  # nothing more to answer


def test_a_number_change_is_confirmed_on_the_phone_called_back(phone: Phone) -> None:
    phone.start()
    phone.press("4321")
    phone.key_in_code()
    phone.press("1")
    phone.press("4155550177#")
    assert "You entered 4 1 5, 5 5 5, 0 1 7 7." in phone.heard[-1]
    page = phone.press("1")
    assert "The other phone (+1415•••0177) is ringing" in phone.turn
    assert 'data-testid="answer-ring"' in page
    phone.answer("answer")
    assert phone.who == "callee"
    assert "Your turn on the other phone" in phone.turn
    page = phone.press("5")
    read_out = [code for code in phone.codes if f"Your code is {', '.join(code)}." in page]
    assert len(read_out) == 1  # the code heard on the other phone, listed to key in
    assert phone.who == "caller"
    phone.key_in_code()
    assert any("changed" in text.lower() for text in phone.heard[-3:]), phone.heard[-3:]


def test_letting_the_call_back_ring_is_heard_by_the_caller(phone: Phone) -> None:
    phone.start()
    phone.press("4321")
    phone.key_in_code()
    phone.press("1")
    phone.press("4155550177#")
    phone.press("1")
    page = phone.answer("ignore")
    assert "call-back to +1415•••0177: no answer" in page
    assert phone.who == "caller"


def test_the_draft_is_heard_when_simulating_the_draft_and_not_the_live_version(
    app: Flask, phone: Phone
) -> None:
    with app.app_context():
        settings = app.config["IVR_SETTINGS"]
        working = store.read_draft(
            settings.flows_dir, settings.prompts_dir, "support", settings.default_region
        )
        files = dict(working.files)
        prompts = files["prompts/en-US.yaml"]
        assert "Thank you for calling Example support." in prompts
        files["prompts/en-US.yaml"] = prompts.replace(
            "Thank you for calling Example support.", "Welcome to the draft line."
        )
        db.session().add(
            FlowDraft(flow="support", files=files, created_by="ops:sam", updated_by="ops:sam")
        )
        db.session().commit()
    phone.start(version="draft")
    assert phone.heard[0] == "Welcome to the draft line."
    assert "support · draft" in phone.page
    phone.press("4321")  # the replay goes on in the draft
    assert phone.heard[0] == "Welcome to the draft line."
    phone.start(version="live")
    assert phone.heard[0] == "Thank you for calling Example support."


def test_a_draft_that_does_not_load_is_refused_on_its_field(app: Flask, phone: Phone) -> None:
    with app.app_context():
        db.session().add(
            FlowDraft(
                flow="support",
                files={"flows/support.yaml": "name: support\nnodes: {}\n"},
                created_by="ops:sam",
                updated_by="ops:sam",
            )
        )
        db.session().commit()
    page = phone.start(status=400, version="draft")
    assert "problem" in page and "before it can be simulated" in page
    select = re.search(r'<select[^>]*id="version"[^>]*>', page)
    assert select and 'aria-invalid="true"' in select.group()
    assert 'id="version-error"' in page


def test_a_version_that_does_not_exist_is_refused(phone: Phone) -> None:
    page = phone.start(status=400, version="feedbeef")
    assert "has no version &#39;feedbeef&#39;" in page


def test_a_language_the_version_does_not_speak_is_refused(phone: Phone) -> None:
    page = phone.start(status=400, language="fr-FR")
    assert "not fr-FR" in page


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ("", "not valid JSON"),
        ("{oops", "not valid JSON"),
        ('{"v": 1, "flow": "support", "surprise": true}', "unknown fields: surprise"),
    ],
)
def test_a_bad_script_gets_a_clear_message_not_a_500(
    phone: Phone, script: str, message: str
) -> None:
    response = phone.client.post(
        "/ops/simulator/answer",
        data={"csrf_token": phone.token, "script": script, "action": "send", "who": "caller"},
    )
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "This simulated call cannot go on" in page and message in page


def test_keys_the_phone_does_not_have_are_refused_on_the_entry(phone: Phone) -> None:
    phone.start()
    before = phone.script
    page = phone.answer("send", entry="12ab", status=400)
    assert "0-9, * and # only" in page
    assert 'aria-invalid="true"' in page
    assert phone.script == before  # nothing was added to the call
    page = phone.answer("send", entry="", status=400)
    assert "Type some keys first" in page


def test_answers_that_do_not_fit_the_call_are_refused(phone: Phone) -> None:
    phone.start()
    page = phone.client.post(
        "/ops/simulator/answer",
        data={
            "csrf_token": phone.token,
            "script": phone.script,
            "who": "callee",
            "action": "answer",
        },
    )
    assert page.status_code == 400
    assert "does not fit the call" in page.get_data(as_text=True)


def test_silence_and_hang_up(phone: Phone) -> None:
    phone.start()
    phone.answer("silence")
    assert "enter the last four digits" in phone.heard[-1]  # asked again
    page = phone.answer("hangup")
    assert "The caller hung up." in page


def _real_state(app: Flask, outbox: Path) -> dict[str, Any]:
    with app.app_context():
        accounts = db.session().execute(select(Account.number, Account.phone_id)).all()
        return {
            "audit": db.session().scalar(select(func.count()).select_from(AuditEvent)),
            "keys": sorted(kv.client().keys("*")),
            "accounts": sorted(map(tuple, accounts)),
            "outbox": outbox.read_text() if outbox.exists() else None,
        }


def test_the_service_s_own_stores_are_untouched(
    app: Flask, phone: Phone, outbox_path: Path
) -> None:
    with app.app_context():
        seed_demo(db.session(), "US")
    before = _real_state(app, outbox_path)
    assert len(before["accounts"]) == 4
    phone.start()
    phone.press("4321")
    phone.key_in_code()
    phone.press("1")
    phone.press("4155550177#")
    phone.press("1")
    phone.answer("answer")
    phone.press("5")
    phone.key_in_code()
    assert any("has been changed" in text for text in phone.heard)  # in the sandbox
    assert len(phone.codes) >= 2  # codes were "sent"; none of them here
    assert _real_state(app, outbox_path) == before


def test_the_page_works_as_a_json_free_form(phone: Phone) -> None:
    page = phone.start()
    # the script is a hidden field holding JSON the page posts back
    data = json.loads(phone.script)
    assert data["caller"] == "customer:0" and data["answers"] == []
    assert page.count('class="key"') == 12
    assert 'src="/ops/static/phone.js"' in page and "<script>" not in page
