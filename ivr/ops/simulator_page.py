"""The browser call simulator: a phone on the page that runs a call through the real
engine on the draft or any version, in a sandbox that never sends anything real.

The page keeps the call's script (caller, language, seed, the answers so far) in a
hidden field; every post replays it in the sandbox (`ivr.simulator.sandbox`) and shows
the transcript, what the call asks now, the codes "sent" and the node it is at. Nothing
is stored between requests, on any web node, and the service's own database, Redis and
outbox are never touched, so nothing here is audited: a simulated call changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import OrderedDict
from typing import Any

from flask import current_app, render_template, request
from markupsafe import Markup
from sqlalchemy import select
from wtforms import SelectField
from wtforms.validators import InputRequired

from ivr.agent.forms import PageForm
from ivr.calls import runtime
from ivr.config import APP_FACTORY, Settings
from ivr.errors import InvalidDefinition
from ivr.flow.model.registry import NODE_TYPES
from ivr.ops.blueprint import bp, readable
from ivr.simulator.sandbox import (
    KEYS,
    MAX_KEYS,
    Answer,
    Replay,
    Script,
    ScriptError,
    callers,
    sandbox_for,
)
from ivr.storage import db
from ivr.storage.models import FlowDraft, FlowVersion
from ivr.versions import store
from ivr.versions.store import LoadedFlow

log = logging.getLogger(__name__)

LIVE, DRAFT = "live", "draft"
KEYPAD = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "0", "#")
ACTIONS = ("send", "silence", "hangup", "answer", "ignore")
CACHED_FLOWS = 8  # loaded versions and drafts kept per process
_KINDS = {kind: name for name, kind in NODE_TYPES.items()}

_loaded: OrderedDict[tuple[str, str, str], LoadedFlow] = OrderedDict()
_loaded_lock = threading.Lock()


class Unavailable(Exception):
    """The chosen flow version cannot be simulated; the message says why."""


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


def _version_choices(flow: str) -> list[tuple[str, str]]:
    session = db.session()
    choices = [(LIVE, "Live version")]
    draft = session.get(FlowDraft, flow)
    if draft is not None:
        choices.append((DRAFT, f"Draft (revision {draft.revision}, by {draft.updated_by})"))
    for row in store.history(session, flow)[:50]:
        when = row.published_at.strftime("%Y-%m-%d %H:%M")
        choices.append((row.version, f"{row.version[:12]} · {when} · {row.published_by}"))
    return choices


def resolve(flow: str, version: str) -> tuple[LoadedFlow, str]:
    """The flow version to simulate and its id in scripts (`draft` or a stored id);
    Unavailable says why when there is none."""
    session = db.session()
    rt = runtime.get()
    if version == DRAFT:
        draft = session.get(FlowDraft, flow)
        if draft is None:
            raise Unavailable(f"Flow {flow!r} has no draft to simulate.")
        digest = hashlib.sha256(json.dumps(draft.files, sort_keys=True).encode()).hexdigest()
        key = (flow, DRAFT, digest)
        with _loaded_lock:
            if key in _loaded:
                return _loaded[key], DRAFT
        try:
            loaded = store.load_files(draft.files, flow, _settings().default_region).loaded
        except InvalidDefinition as exc:
            count = len(exc.problems)
            raise Unavailable(
                f"The draft of {flow!r} has {count} problem{'s' if count != 1 else ''} "
                "to fix before it can be simulated."
            ) from None
        except KeyError:
            raise Unavailable(f"The draft does not define flow {flow!r}.") from None
        return _remember(key, loaded), DRAFT
    if version == LIVE:
        live = store.live_row(session, flow)
        if live is not None:
            version = live.version_row.version
        elif flow == rt.working.flow.name:
            return rt.working, rt.working.flow.version  # nothing published yet
        else:
            raise Unavailable(f"Flow {flow!r} has no live version.")
    if flow == rt.working.flow.name and version == rt.working.flow.version:
        return rt.working, version
    key = (flow, version, "")
    with _loaded_lock:
        if key in _loaded:
            return _loaded[key], version
    row = store.find_version(session, flow, version)
    if row is None:
        raise Unavailable(f"Flow {flow!r} has no version {version!r}.")
    try:
        loaded = store.load_version(row, _settings().default_region)
    except InvalidDefinition:
        raise Unavailable(f"Version {row.version[:12]} of {flow!r} no longer loads.") from None
    return _remember((flow, row.version, ""), loaded), row.version


def _remember(key: tuple[str, str, str], loaded: LoadedFlow) -> LoadedFlow:
    with _loaded_lock:
        _loaded[key] = loaded
        while len(_loaded) > CACHED_FLOWS:
            _loaded.popitem(last=False)
    return loaded


# ------------------------------------------------------------------ views


def _start_form(formdata: Any, flow: str | None = None) -> StartForm:
    form = StartForm(formdata)
    flows = _flows()
    chosen = flow or form.flow.data or _settings().flow
    if chosen not in flows:
        chosen = _settings().flow
    form.flow.choices = [(name, name) for name in flows]
    form.version.choices = _version_choices(chosen)
    form.caller.choices = [(choice, label) for choice, label, _ in callers()]
    languages: list[tuple[str, str]] = [("", "Let the caller choose (the flow's language menu)")]
    try:
        live, _ = resolve(chosen, LIVE)
        languages += [(lang, lang) for lang in live.flow.languages]
    except Unavailable:
        pass
    form.language.choices = languages
    if formdata is None:
        form.flow.data = chosen
    return form


@bp.get("/simulator")
@readable
def simulator() -> Any:
    """The phone, ready for a new call (`?flow=` and `?version=` preselect)."""
    form = _start_form(None, request.args.get("flow"))
    version = request.args.get("version")
    if version:
        form.version.data = version
    return _page(form)


@bp.post("/simulator/start")
@readable
def simulator_start() -> Any:
    """Start a call: check the choices, make a script, play it up to its first question."""
    form = _start_form(request.form)
    if not form.validate():
        return _page(form), 400
    flow, language = form.flow.data or "", form.language.data or ""
    if flow not in _flows():
        form.flow.errors = [f"There is no flow {flow!r}."]
        return _page(form), 400
    try:
        loaded, version = resolve(flow, form.version.data or LIVE)
    except Unavailable as exc:
        form.version.errors = [str(exc)]
        return _page(form), 400
    if language and language not in loaded.flow.languages:
        form.language.errors = [
            f"This version speaks {', '.join(loaded.flow.languages)}, not {language}."
        ]
        return _page(form), 400
    script = Script.new(flow, version, form.caller.data or "", language)
    return _page(form, script=script, loaded=loaded, replay=_replay(loaded, script))


@bp.post("/simulator/answer")
@readable
def simulator_answer() -> Any:
    """Answer what the call asks (keys, silence, hang up; answer or let a call-back ring),
    or edit the entry without JavaScript (a key pressed, a code keyed in, cleared)."""
    try:
        script = Script.from_json(request.form.get("script", ""))
        loaded, _ = resolve(script.flow, script.version)
    except (ScriptError, Unavailable) as exc:
        form = _start_form(None)
        return _page(form, problem=f"This simulated call cannot go on: {exc}"), 400
    form = _start_form(None, script.flow)
    _fill(form, script)
    entry, answer, problems = _entry_and_answer(request.form)
    errors = {"entry": problems} if problems else {}
    problem = None
    if answer is not None:
        try:
            extended = script.with_answer(answer)
            return _page(
                form, script=extended, loaded=loaded, replay=_replay(loaded, extended), entry=""
            )
        except ScriptError as exc:  # an answer the call did not ask for: not taken
            problem = f"That answer was not taken: {exc}"
    try:
        replay = _replay(loaded, script)
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
    if not KEYS.fullmatch(entry) or len(entry) > MAX_KEYS:
        return entry, None, [f"Keys are 0-9, * and # only, at most {MAX_KEYS} of them."]
    return "", Answer(who, "keys", entry), []


def _fill(form: StartForm, script: Script) -> None:
    """Show the running call's choices in the form (for a new call like it)."""
    form.flow.data = script.flow
    form.version.data = script.version
    form.caller.data = script.caller
    form.language.data = script.language


def _replay(loaded: LoadedFlow, script: Script) -> Replay:
    return sandbox_for(_settings(), current_app.extensions[APP_FACTORY]).replay(loaded, script)


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
        keypad=KEYPAD,
    )
