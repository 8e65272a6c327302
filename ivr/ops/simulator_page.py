"""The browser call simulator: a phone on the page that runs a call through the real
engine on the draft or any version, in a sandbox that never sends anything real.

The page keeps the call's script (caller, language, seed, the version chosen and the
one the call runs on, the answers so far) in a hidden field; every post replays it in
the sandbox (`ivr.simulator.sandbox`) and shows the transcript, what the call asks now,
the codes "sent" and the node it is at. Nothing is stored between requests, on any web
node, and the service's own database, Redis and outbox are never touched, so nothing
here is audited: a simulated call changes nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import current_app, render_template, request
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import Session
from wtforms import SelectField
from wtforms.validators import InputRequired

from ivr.agent.forms import PageForm
from ivr.config import APP_FACTORY, Settings
from ivr.flow.model.registry import NODE_TYPES
from ivr.ops.blueprint import bp, readable
from ivr.ops.simulator_versions import DRAFT, LIVE, NoDraft, Unavailable, pinned, resolve
from ivr.simulator.sandbox import (
    KEYS,
    MAX_KEYS,
    Answer,
    Replay,
    SandboxBusy,
    SandboxFailed,
    Script,
    ScriptError,
    callers,
    sandbox_for,
)
from ivr.simulator.sandbox.script import MAX_WORDS, SAY, is_speech
from ivr.storage import db
from ivr.storage.models import FlowDraft, FlowVersion
from ivr.versions import store
from ivr.versions.store import Draft, LoadedFlow

log = logging.getLogger(__name__)

KEYPAD = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "0", "#")
ACTIONS = ("send", "silence", "hangup", "answer", "ignore")
_KINDS = {kind: name for name, kind in NODE_TYPES.items()}


class StartForm(PageForm):
    """A new simulated call: which flow and version, who calls, in which language."""

    flow = SelectField("Flow", validators=[InputRequired()], validate_choice=False)
    version = SelectField("Version", validators=[InputRequired()], validate_choice=False)
    caller = SelectField("Caller", validators=[InputRequired()])
    language = SelectField("Language", validate_choice=False)


# ------------------------------------------------------------------ versions


def _settings() -> Settings:
    settings: Settings = current_app.config["IVR_SETTINGS"]
    return settings


def _flows() -> list[str]:
    """Flows that can be simulated: the service's, and any with a version or a draft."""
    session = db.session()
    names = {_settings().flow}
    names.update(session.scalars(select(FlowVersion.flow).distinct()))
    names.update(session.scalars(select(FlowDraft.flow)))
    return sorted(names)


def _version_choices(flow: str, chosen: str | None = None) -> list[tuple[str, str]]:
    session = db.session()
    choices = [(LIVE, "Live version")]
    draft = session.get(FlowDraft, flow)
    if draft is not None:
        choices.append((DRAFT, f"Draft (revision {draft.revision}, by {draft.updated_by})"))
    for row in [*store.history(session, flow)[:50], _older(session, flow, chosen)]:
        if row is None or any(row.version == value for value, _ in choices):
            continue
        when = row.published_at.strftime("%Y-%m-%d %H:%M")
        choices.append((row.version, f"{row.version[:12]} · {when} · {row.published_by}"))
    return choices


def _older(session: Session, flow: str, chosen: str | None) -> FlowVersion | None:
    """The version chosen by id, when it is older than the history's first 50."""
    if not chosen or chosen in (LIVE, DRAFT):
        return None
    return store.find_version(session, flow, chosen)


# ------------------------------------------------------------------ views


def _start_form(formdata: Any, flow: str | None = None, version: str | None = None) -> StartForm:
    """The setup form, its lists filled: the flow's versions, and the languages of the
    version chosen (or of the live one, when the version chosen cannot be loaded)."""
    form = StartForm(formdata)
    flows = _flows()
    chosen = flow or form.flow.data or _settings().flow
    if chosen not in flows:
        chosen = _settings().flow
    choice = version or form.version.data or LIVE
    form.flow.choices = [(name, name) for name in flows]
    form.version.choices = _version_choices(chosen, choice)
    form.caller.choices = [(name, label) for name, label, _ in callers()]
    form.language.choices = [("", "Let the caller choose (the flow's language menu)")] + [
        (language, language) for language in _languages(chosen, choice)
    ]
    if formdata is None:
        form.flow.data, form.version.data = chosen, choice
        _offer_live(form)
    return form


def _languages(flow: str, choice: str) -> tuple[str, ...]:
    for each in (choice, LIVE):
        try:
            return resolve(flow, each).loaded.flow.languages
        except Unavailable:
            continue
    return ()


def _offer_live(form: StartForm) -> None:
    """A draft chosen that is no longer there: say so on the field, the live one chosen."""
    if form.version.data == DRAFT and all(value != DRAFT for value, _ in form.version.choices):
        form.version.errors = [str(NoDraft(form.flow.data or ""))]
        form.version.data = LIVE


@bp.get("/simulator")
@readable
def simulator() -> Any:
    """The phone, ready for a new call (`?flow=` and `?version=` preselect)."""
    form = _start_form(None, request.args.get("flow"), request.args.get("version"))
    return _page(form)


@bp.post("/simulator/start")
@readable
def simulator_start() -> Any:
    """Start a call: check the choices, resolve the version chosen as it is now, pin the
    call to it, and play it up to its first question."""
    form = _start_form(request.form)
    if not form.validate():
        return _page(form), 400
    flow, language = form.flow.data or "", form.language.data or ""
    choice = form.version.data or LIVE
    if flow not in _flows():
        form.flow.errors = [f"There is no flow {flow!r}."]
        return _page(form), 400
    try:
        served = resolve(flow, choice)
    except Unavailable as exc:
        form.version.errors = [str(exc)]
        if isinstance(exc, NoDraft):
            form.version.data = LIVE
        return _page(form), 400
    loaded = served.loaded
    if language and language not in loaded.flow.languages:
        form.language.errors = [
            f"This version speaks {', '.join(loaded.flow.languages)}, not {language}."
        ]
        return _page(form), 400
    script = Script.new(flow, choice, loaded.flow.version, form.caller.data or "", language)
    try:
        replay = _replay(served, script)
    except (SandboxBusy, SandboxFailed) as exc:
        return _busy(form, str(exc))
    except ScriptError as exc:
        return _page(form, problem=f"This simulated call cannot go on: {exc}"), 400
    return _page(form, script=script, loaded=loaded, replay=replay)


@bp.post("/simulator/answer")
@readable
def simulator_answer() -> Any:
    """Answer what the call asks (keys, silence, hang up; answer or let a call-back ring),
    or edit the entry without JavaScript (a key pressed, a code keyed in, cleared). The
    call replays on the version it started on."""
    try:
        script = Script.from_json(request.form.get("script", ""))
    except ScriptError as exc:
        return _page(_start_form(None), problem=f"This simulated call cannot go on: {exc}"), 400
    form = _start_form(None, script.flow, script.chosen)
    form.caller.data, form.language.data = script.caller, script.language
    try:
        served = pinned(script)
    except Unavailable as exc:
        return _page(form, problem=f"This simulated call cannot go on: {exc}"), 400
    try:
        return _answered(form, script, served)
    except (SandboxBusy, SandboxFailed) as exc:
        return _busy(form, str(exc))


def _answered(form: StartForm, script: Script, served: Draft) -> Any:
    loaded = served.loaded
    entry, answer, problems = _entry_and_answer(request.form)
    errors = {"entry": problems} if problems else {}
    problem = None
    if answer is not None:
        try:
            extended = script.with_answer(answer)
            return _page(
                form, script=extended, loaded=loaded, replay=_replay(served, extended), entry=""
            )
        except ScriptError as exc:  # an answer the call did not ask for: not taken
            problem = f"That answer was not taken: {exc}"
    try:
        replay = _replay(served, script)
    except ScriptError as exc:
        return _page(form, problem=f"This simulated call cannot go on: {exc}"), 400
    page = _page(
        form,
        script=script,
        loaded=loaded,
        replay=replay,
        entry=entry,
        errors=errors,
        problem=problem,
    )
    return page, 400 if errors or problem else 200


def _busy(form: StartForm, message: str) -> tuple[str, int]:
    """The sandbox stayed busy (or could not start): nothing is lost, the same post can
    be sent again."""
    again = [
        (name, value) for name, value in request.form.items(multi=True) if name != "csrf_token"
    ]
    return _page(form, problem=message, retry=again), 503


def _entry_and_answer(posted: Any) -> tuple[str, Answer | None, list[str]]:
    """What a post does: the entry as it now reads, the answer given (if any), and why
    the entry was refused (if it was). A key, a code keyed in or Clear only edit the
    entry: that is the keypad without JavaScript."""
    entry = posted.get("entry", "").strip()
    if "press" in posted:
        key = posted["press"]
        if key in KEYPAD and len(entry) < MAX_KEYS:
            entry += key
        return entry, None, []
    if "fill" in posted:
        code = posted["fill"]
        return (code if KEYS.fullmatch(code) and len(code) <= MAX_KEYS else entry), None, []
    if "clear" in posted:
        return "", None, []
    action, who = posted.get("action", ""), posted.get("who", "")
    if action not in ACTIONS or who not in ("caller", "callee"):
        return entry, None, ["Choose one of the phone's buttons."]
    if action != "send":
        return "", Answer(who, action), []
    if not entry:
        return entry, None, ["Type some keys first, or choose Silence."]
    if entry.startswith(SAY):  # words, at a prompt that listens for speech
        if not is_speech(entry):
            return entry, None, [f"Words are {SAY} then up to {MAX_WORDS} characters of words."]
        return "", Answer(who, "keys", entry), []
    if not KEYS.fullmatch(entry) or len(entry) > MAX_KEYS:
        return entry, None, [f"Keys are 0-9, * and # only, at most {MAX_KEYS} of them."]
    return "", Answer(who, "keys", entry), []


def _replay(served: Draft, script: Script) -> Replay:
    """Play `script` on `served` in this process's sandbox (which boots, the first time,
    from the files of the version it is first asked to serve)."""
    factory = current_app.extensions[APP_FACTORY]
    return sandbox_for(_settings(), factory, served).replay(served.loaded, script)


def _diagram(loaded: LoadedFlow, node: str | None) -> Markup | None:
    """The flow's diagram with the call's node highlighted (nothing if it cannot draw)."""
    try:
        from ivr.ops.diagram_view import render_diagram

        return render_diagram(loaded.flow, current=node)
    except Exception:  # a drawing problem must not take the phone down with it
        log.exception("simulator: the diagram of %s could not be drawn", loaded.flow.name)
        return None


def _page(
    form: StartForm,
    *,
    script: Script | None = None,
    loaded: LoadedFlow | None = None,
    replay: Replay | None = None,
    entry: str = "",
    errors: dict[str, list[str]] | None = None,
    problem: str | None = None,
    retry: list[tuple[str, str]] | None = None,
) -> str:
    node_label = ""
    if loaded is not None and replay is not None and replay.node:
        node = loaded.flow.nodes.get(replay.node)
        kind = _KINDS.get(type(node), "") if node is not None else ""
        node_label = f"{replay.node} ({kind})" if kind else replay.node
    return render_template(
        "ops/simulator.html",
        form=form,
        form_errors={name: field.errors for name, field in form._fields.items() if field.errors},
        script=script,
        script_json=script.to_json() if script else "",
        loaded=loaded,
        replay=replay,
        diagram=_diagram(loaded, replay.node) if loaded and replay else None,
        node_label=node_label,
        entry=entry,
        errors=errors or {},
        problem=problem,
        retry=retry or [],
        keypad=KEYPAD,
    )
