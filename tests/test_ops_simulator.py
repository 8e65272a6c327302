"""The browser call simulator through its views: who may use it, a known caller's call
to an agent with the texted code keyed in from the page, a number change answered on
the phone called back, the draft heard instead of the live version, bad scripts
refused plainly, and the service's own stores left exactly as they were; a running call
keeps its version while a new call resolves the choice again, every code is listed with
the phone that heard it, broken working files stop nothing, a busy sandbox loses nothing."""

from __future__ import annotations

import html
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_kit import add_user, csrf_of, sign_in
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from ivr.customers.seed import seed_demo
from ivr.simulator.sandbox import Sandbox, service
from ivr.storage import db, keys, kv
from ivr.storage.models import (
    Account,
    AuditEvent,
    FlowDraft,
    FlowVersion,
    FlowVersionFile,
    LiveFlow,
)
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
            # This run's keys: on a Redis Cluster (database 0 only) other test workers'
            # keys come and go meanwhile under their own prefixes.
            "keys": sorted(kv.client().keys(keys.pattern())),
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


# ------------------------------------------------------------------ versions of a call

GREETING = "Thank you for calling Example support."
ROOT = Path(__file__).resolve().parent.parent


def _files(greeting: str = GREETING) -> dict[str, str]:
    """The project's files of `support`, with the greeting changed to `greeting`."""
    working = store.read_draft(ROOT / "flows", ROOT / "prompts", "support", "US")
    files = dict(working.files)
    files["prompts/en-US.yaml"] = files["prompts/en-US.yaml"].replace(GREETING, greeting)
    return files


def _publish(app: Flask, files: dict[str, str]) -> str:
    """Store `files` as a version of `support` (once) and make it live, as a publish or a
    rollback leaves the database (the simulator reads the live version from there)."""
    with app.app_context():
        session = db.session()
        version = store.load_files(files, "support", "US").loaded.flow.version
        row = store.find_version(session, "support", version)
        if row is None:
            stored = [FlowVersionFile(path=path, content=text) for path, text in files.items()]
            row = FlowVersion(flow="support", version=version, published_by="ops:sam", files=stored)
            session.add(row)
            session.flush()
        live = session.get(LiveFlow, "support")
        if live is None:
            session.add(LiveFlow(flow="support", version_id=row.id, by="ops:sam"))
        else:
            live.version_id = row.id
        session.commit()
        return version


def _draft(app: Flask, files: dict[str, str]) -> None:
    with app.app_context():
        session = db.session()
        found = session.get(FlowDraft, "support")
        if found is None:
            session.add(
                FlowDraft(flow="support", files=files, created_by="ops:sam", updated_by="ops:sam")
            )
        else:
            found.files = files
            found.revision += 1
        session.commit()


def _drop_draft(app: Flask) -> None:
    with app.app_context():
        session = db.session()
        session.delete(session.get(FlowDraft, "support"))
        session.commit()


def _new_call(phone: Phone, status: int = 200) -> str:
    """Press "New call" on the ended call: what its form posts."""
    form = re.search(r'<section class="ended".*?</section>', phone.page, re.S)
    assert form, "the call has not ended"
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form.group()))
    fields.pop("csrf_token")
    return phone._post("/ops/simulator/start", fields, status)


def _selected_version(page: str) -> str:
    select = re.search(r'<select[^>]*id="version"[^>]*>(.*?)</select>', page, re.S)
    assert select, "no version list"
    chosen = re.search(r'<option selected value="([^"]*)"', select.group(1))
    return chosen.group(1) if chosen else ""


def test_new_call_resolves_live_again_while_a_running_call_keeps_its_version(
    app: Flask, phone: Phone
) -> None:
    first = _publish(app, _files())
    phone.start(version="live")
    assert phone.heard[0] == GREETING
    second = _publish(app, _files("Welcome to version two."))
    assert second != first
    phone.press("4321")  # the running call replays on the version it started on
    assert phone.heard[0] == GREETING
    assert _selected_version(phone.page) == "live"  # the setup form keeps the choice
    phone.answer("hangup")
    _new_call(phone)
    assert phone.heard[0] == "Welcome to version two."
    assert f"support · version {second[:12]}" in phone.page
    assert f"Version <code>{second[:12]}</code>, to the end of this call." in phone.page
    _publish(app, _files())  # rolled back to the first version
    phone.answer("hangup")
    _new_call(phone)
    assert phone.heard[0] == GREETING


def test_a_call_on_the_draft_goes_on_after_the_draft_is_published(app: Flask, phone: Phone) -> None:
    files = _files("Welcome to the draft line.")
    _draft(app, files)
    phone.start(version="draft")
    assert phone.heard[0] == "Welcome to the draft line."
    _publish(app, files)
    _drop_draft(app)  # a publish from the console ends the draft
    page = phone.press("4321")
    assert phone.heard[0] == "Welcome to the draft line."
    assert phone.node.startswith("enter_code")
    assert _selected_version(page) == "live"  # the draft is gone: the live one offered
    assert "has no draft (any more" in page
    page = phone.answer("hangup")
    page = _new_call(phone, status=400)
    assert "has no draft (any more" in page
    select = re.search(r'<select[^>]*id="version"[^>]*>', page)
    assert select and 'aria-invalid="true"' in select.group()
    assert _selected_version(page) == "live"


def test_a_call_on_a_draft_edited_since_stops_with_the_reason(app: Flask, phone: Phone) -> None:
    # (greetings no other test uses: loaded versions are kept per process, by content)
    _draft(app, _files("Welcome to a draft edited later."))
    phone.start(version="draft")
    _draft(app, _files("Welcome to the second draft."))
    page = phone.answer("silence", status=400)
    assert "The draft this call was started on has changed since" in page
    page = phone.start(version="draft")  # a new call hears the draft as it is now
    assert phone.heard[0] == "Welcome to the second draft."


def test_the_languages_offered_are_the_version_chosen_s(app: Flask, phone: Phone) -> None:
    files = _files()
    flow = files["flows/support.yaml"]
    files["flows/support.yaml"] = flow.replace(
        "languages: [en-US, es-US]", "languages: [en-US, es-US, fr-FR]"
    ).replace("      2: es-US\n", "      2: es-US\n      3: fr-FR\n", 1)
    files["prompts/fr-FR.yaml"] = files["prompts/en-US.yaml"].replace(
        "language: en-US", "language: fr-FR"
    )
    _draft(app, files)
    language = re.compile(r'<select[^>]*id="language"[^>]*>(.*?)</select>', re.S)
    on_draft = phone.client.get("/ops/simulator?version=draft").get_data(as_text=True)
    found = language.search(on_draft)
    assert found and 'value="fr-FR"' in found.group(1)
    on_live = phone.client.get("/ops/simulator").get_data(as_text=True)
    found = language.search(on_live)
    assert found and 'value="es-US"' in found.group(1) and "fr-FR" not in found.group(1)
    page = phone.start(version="draft", language="fr-FR")
    assert "fr-FR chosen for this call: the caller presses 3" in page


# ------------------------------------------------------------------ the sandbox itself


@pytest.fixture
def own_sandboxes(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[Any, Sandbox]]:
    """Sandboxes built during the test only (and closed after it)."""
    built: dict[Any, Sandbox] = {}
    monkeypatch.setattr(service, "_sandboxes", built)
    yield built
    for sandbox in built.values():
        sandbox.close()


def _working_copy(tmp_path: Path) -> tuple[Path, Path]:
    shutil.copytree(ROOT / "flows", tmp_path / "flows")
    shutil.copytree(ROOT / "prompts", tmp_path / "prompts")
    return tmp_path / "flows", tmp_path / "prompts"


def test_broken_working_files_do_not_stop_simulated_calls(
    make_app: Any, tmp_path: Path, own_sandboxes: dict[Any, Sandbox]
) -> None:
    flows, prompts = _working_copy(tmp_path)
    app = make_app(IVR_FLOWS_DIR=str(flows), IVR_PROMPTS_DIR=str(prompts))
    phone = Phone(signed_in(app))
    (flows / "support.yaml").write_text("name: support\nnodes: {oops\n")  # a draft on disk
    page = phone.start(status=400)  # nothing published yet: the working files were it
    assert "Nothing of &#39;support&#39; is published yet" in page
    select = re.search(r'<select[^>]*id="version"[^>]*>', page)
    assert select and 'aria-invalid="true"' in select.group()
    _publish(app, _files())
    phone.start()
    assert phone.heard[0] == GREETING
    assert len(own_sandboxes) == 1  # built while the working files were broken
    phone.press("4321")
    assert phone.node.startswith("enter_code")


def _codes_listed(page: str) -> list[tuple[str, str, str]]:
    """(how, to, code) of each code on the codes panel."""
    found = re.findall(
        r'data-testid="code" data-code="(\d+)">\s*<span class="badge">([^<]*)</span>\s*to ([^:]*):',
        page,
    )
    return [(html.unescape(how), html.unescape(to), code) for code, how, to in found]


def test_each_code_read_out_is_listed_with_the_phone_that_heard_it(phone: Phone) -> None:
    """A stranger's phone (+1415…0199) calls about Jane's account: her code is read out
    on a call to her number on file, and the number change's code on the caller's own
    call, since the new number is the one calling."""
    phone.start(caller="unknown")
    phone.press("10004321#")
    assert phone.node.startswith("enter_code")
    phone.press("2")  # a call to the phone on file instead
    print(phone.turn, phone.heard[-3:])
    phone.answer("answer")
    phone.press("5")  # "to hear it, press any key": the code is read out on that call
    sms, voice = _codes_listed(phone.page)
    assert sms[:2] == ("sms", "+1415•••0100")
    assert voice[:2] == ("read out", "+1415•••0100")  # Jane's phone heard it
    phone.key_in_code()
    phone.press("1")  # change the number...
    phone.press("4155550199#")  # ...to the one calling
    phone.press("1")
    assert "You are calling from your new number" in " ".join(phone.heard[-3:])
    assert "The other phone (+1415•••0199) is ringing" in phone.turn  # called back after
    listed = _codes_listed(phone.page)
    assert listed[:2] == [sms, voice]  # the voice code still Jane's phone's
    assert len(listed) == 3 and listed[2][:2] == ("read out", "+1415•••0199")
    assert f"Your code is {', '.join(listed[2][2])}." in " ".join(phone.heard)
    phone.answer("answer")
    phone.key_in_code()  # the newest code: the one read out on the caller's call
    assert any("changed" in text.lower() for text in phone.heard[-3:]), phone.heard[-3:]


def _retry_fields(page: str) -> dict[str, str]:
    form = re.search(r'<form[^>]*data-testid="retry-form">(.*?)</form>', page, re.S)
    assert form, "no Try again form"
    fields = re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form.group(1))
    return {name: html.unescape(value) for name, value in fields}


def test_a_busy_sandbox_answers_503_and_nothing_is_lost(
    phone: Phone, monkeypatch: pytest.MonkeyPatch
) -> None:
    phone.start()
    script = phone.script
    monkeypatch.setattr(service, "LOCK_WAIT", 0.05)
    held = list(service._sandboxes.values())
    assert held, "no sandbox was built"
    for sandbox in held:  # another console user's replay holds it
        assert sandbox.lock.acquire(timeout=5)
    try:
        page = phone._post(
            "/ops/simulator/answer",
            {"script": script, "who": "caller", "action": "send", "entry": "4321"},
            503,
        )
        assert "The simulator is busy; try again in a moment." in page
        again = _retry_fields(page)
        assert again["script"] == script and again["entry"] == "4321"
        page = phone.start(status=503)
        assert _retry_fields(page)["caller"] == "customer:0"
    finally:
        for sandbox in held:
            sandbox.lock.release()
    again.pop("csrf_token")
    phone._post("/ops/simulator/answer", again, 200)  # Try again, once it is free
    assert phone.node.startswith("enter_code")
