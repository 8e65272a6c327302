"""The forms of the draft pages (WTForms through Flask-WTF): a node's fields, a prompt in
every language, the publish message, and the confirmations.

A node's form is built from its dataclass, as the loader parses it: node targets are
choices among the draft's node ids, bounded numbers are number inputs with their
range, choices are selects, mappings (menu options, branch cases, a menu's speech, a
schedule's hours and holidays, a split's exits and shares) are key → value rows, checked
row by row as the loader would (a day's ranges, a holiday's date, a share's number), so
the bad row is marked rather than the whole save refused.
The blueprint checks the CSRF token before any view runs, so these forms carry none of
their own (`meta={"csrf": False}`); the page's hidden `csrf_token` is the session's.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, Field, fields
from types import NoneType, UnionType
from typing import Any

from flask_wtf import FlaskForm
from wtforms import (
    Field as FormFieldBase,
)
from wtforms import (
    FieldList,
    FormField,
    HiddenField,
    IntegerField,
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms import Form as PlainForm
from wtforms.validators import (
    AnyOf,
    DataRequired,
    InputRequired,
    Length,
    NumberRange,
    Optional,
    Regexp,
    ValidationError,
)

from ivr.flow.loader.nodes import NAME
from ivr.flow.model import FACTS, LANGUAGE, NODE, PROMPT, Node, parse_target
from ivr.flow.model.base import DTMF_KEYS
from ivr.flow.model.number_change import NUMBER_PROBLEMS
from ivr.flow.model.schedule import DAYS, parse_date, parse_ranges
from ivr.versions.drafts import PROMPT_KEY

MESSAGE_LIMIT = 500
EXTRA_ROWS = 2  # blank key → value rows offered for adding
NO_CSRF = {"csrf": False}
KEY_MESSAGE = "a prompt key: lowercase letters, digits and _"


class RevisionForm(FlaskForm):
    """A form that saves a draft: the revision it was loaded at."""

    revision = IntegerField(validators=[InputRequired()])

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, meta=NO_CSRF, **kwargs)


class ReviewForm(RevisionForm):
    """Publish: why (shown in the history and the audit)."""

    message = TextAreaField(
        "Message",
        validators=[
            InputRequired("Say what changed and why: it goes into the history."),
            Length(max=MESSAGE_LIMIT, message=f"At most {MESSAGE_LIMIT} characters."),
        ],
    )

    def validate_message(self, field: FormFieldBase) -> None:
        if not str(field.data or "").strip():
            raise ValidationError("Say what changed and why: it goes into the history.")


class RollbackForm(FlaskForm):
    """Make an older version live again: the version that was live when asked."""

    live = HiddenField(validators=[InputRequired()])

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, meta=NO_CSRF, **kwargs)


class _Row(PlainForm):
    key = StringField("Key")
    value = StringField("Goes to")


def prompt_form(languages: Sequence[str], present: Mapping[str, bool], **kwargs: Any) -> Any:
    """The prompt's text in each language (`text_0`, `text_1`… in the flow's order): a
    language that has the prompt must keep a text; one that lacks it may add one."""

    class PromptForm(RevisionForm):
        pass

    for index, language in enumerate(languages):
        required = present.get(language, False)
        # DataRequired, not InputRequired: a text of blanks is no text either.
        check = DataRequired(f"The {language} text may not be empty.") if required else Optional()
        setattr(
            PromptForm,
            f"text_{index}",
            TextAreaField(language, validators=[check, Length(max=3000)]),
        )
    return PromptForm(**kwargs)


def node_form(
    node_class: type[Node],
    *,
    node_ids: Sequence[str],
    languages: Sequence[str],
    prompt_keys: Sequence[str],
    region: str,
    **kwargs: Any,
) -> Any:
    """A form with one input per field the node's kind has (see the module docstring)."""

    class NodeForm(RevisionForm):
        pass

    hints = typing.get_type_hints(node_class)
    specs = [s for s in fields(node_class) if not s.metadata.get("internal")]
    for spec in specs:
        setattr(NodeForm, spec.name, _input(spec, hints[spec.name], node_ids, region))
    form = NodeForm(**kwargs)
    form.specs = {spec.name: spec for spec in specs}
    # Mappings of whole numbers (a split's shares): their rows are posted as text.
    form.number_maps = {
        spec.name
        for spec in specs
        if is_mapping(spec) and typing.get_args(hints[spec.name])[1:] == (int,)
    }
    form.node_ids, form.languages, form.prompt_keys = list(node_ids), list(languages), prompt_keys
    form.mapping_errors = {}
    return form


def is_required(spec: Field[Any]) -> bool:
    return spec.default is MISSING and spec.default_factory is MISSING


def is_mapping(spec: Field[Any]) -> bool:
    return "keys" in spec.metadata


def _input(spec: Field[Any], hint: Any, node_ids: Sequence[str], region: str) -> Any:
    required = is_required(spec)
    optional = isinstance(hint, UnionType) and NoneType in typing.get_args(hint)
    base = next(a for a in typing.get_args(hint) if a is not NoneType) if optional else hint
    label = spec.name.replace("_", " ")
    presence: Any = InputRequired(f"{label} is required.") if required else Optional()
    metadata = spec.metadata
    if is_mapping(spec):
        return FieldList(FormField(_Row), label=label)
    if metadata.get("ref") == NODE:
        blank = SelectChoice("", "(choose a node)" if required else "(none)")
        return SelectField(
            label,
            choices=[blank, *(SelectChoice(n) for n in node_ids)],
            validate_choice=False,
            validators=[
                presence,
                AnyOf(list(node_ids), message="is not a node of this flow"),
            ],
        )
    if metadata.get("ref") == PROMPT:
        return StringField(label, validators=[presence, Regexp(PROMPT_KEY, message=KEY_MESSAGE)])
    if metadata.get("choices"):
        values = sorted(metadata["choices"])
        return SelectField(
            label,
            choices=[SelectChoice(v) for v in values],
            validate_choice=False,
            validators=[presence, AnyOf(values, message="is not one of: " + ", ".join(values))],
        )
    if base is int:
        low, high = metadata.get("min"), metadata.get("max")
        checks = [presence]
        render: dict[str, Any] = {}
        if low is not None and high is not None:
            checks.append(NumberRange(low, high, message=f"must be from {low} to {high}"))
            render = {"min": low, "max": high}
        if spec.default is not MISSING and spec.default is not None:
            render["placeholder"] = f"{spec.default} (default)"
        return IntegerField(label, validators=checks, render_kw=render)
    if spec.name == "target":
        return StringField(label, validators=[presence, _target_check(region)])
    return StringField(label, validators=[presence, Length(max=500)])


def _target_check(region: str) -> Any:
    def check(form: Any, field: FormFieldBase) -> None:
        if field.data and str(field.data).strip():
            try:
                parse_target(str(field.data), region)
            except ValueError as exc:
                raise ValidationError(str(exc)) from None

    return check


def mapping_rows(form: Any, name: str) -> dict[str, Any] | None:
    """The key → value rows of a mapping field, checked (errors put on the rows): the
    mapping, or None when a row is wrong."""
    spec = form.specs[name]
    rows = form[name]
    result: dict[str, Any] = {}
    ok = True
    keys_allowed = _mapping_keys(spec, form)
    values_allowed = _mapping_values(spec, form)
    numbers = name in getattr(form, "number_maps", ())
    for row in rows:
        key = str(row.form.key.data or "").strip()
        value = str(row.form.value.data or "").strip()
        if not key and not value:
            continue
        if not key or not value:
            (row.form.key if not key else row.form.value).errors.append(
                "give both the key and where it goes, or neither"
            )
            ok = False
            continue
        if keys_allowed is not None and key not in keys_allowed:
            row.form.key.errors.append("not one of: " + ", ".join(_in_order(keys_allowed)))
            ok = False
        elif key_problem := _key_problem(spec, key):
            row.form.key.errors.append(key_problem)
            ok = False
        elif key in result:
            row.form.key.errors.append(f"key {key} is given twice")
            ok = False
        if values_allowed is not None and value not in values_allowed:
            what = {NODE: "a node", LANGUAGE: "a language"}.get(spec.metadata.get("ref"), "allowed")
            row.form.value.errors.append(f"is not {what} of this flow")
            ok = False
        elif spec.metadata.get("ref") == PROMPT and not PROMPT_KEY.match(value):
            row.form.value.errors.append(KEY_MESSAGE)
            ok = False
        elif value_problem := _value_problem(spec, value, numbers=numbers):
            row.form.value.errors.append(value_problem)
            ok = False
        result[key] = int(value) if numbers and ok else value
    if ok and not result and is_required(spec):
        form.mapping_errors[name] = f"{spec.name.replace('_', ' ')} needs at least one row"
        ok = False
    return result if ok else None


def _key_problem(spec: Field[Any], key: str) -> str | None:
    """Why `key` is no key of this kind of mapping (keys not from a fixed set)."""
    kind = spec.metadata.get("keys")
    if kind == "date" and parse_date(key) is None:
        return "not a date; write it as YYYY-MM-DD"
    if kind == "name" and not NAME.fullmatch(key):
        return "a name: letters, digits, _ or - (no dots or spaces)"
    return None


def _value_problem(spec: Field[Any], value: str, *, numbers: bool) -> str | None:
    """Why `value` does not fit this mapping's values (a day's ranges, a share)."""
    if numbers:
        low, high = spec.metadata.get("min"), spec.metadata.get("max")
        if not value.isdigit():
            return "must be a whole number"
        if low is not None and high is not None and not low <= int(value) <= high:
            return f"must be from {low} to {high}"
    elif spec.metadata.get("keys") == "weekday":
        try:
            parse_ranges(value)
        except ValueError as exc:
            return str(exc)
    return None


def _in_order(keys: set[str]) -> list[str]:
    """Allowed keys as people expect them: the week's days in order, others sorted."""
    return [day for day in DAYS if day in keys] if keys <= set(DAYS) else sorted(keys)


def _mapping_keys(spec: Field[Any], form: Any) -> set[str] | None:
    kind = spec.metadata.get("keys")
    if kind == "weekday":
        return set(DAYS)
    if kind == "dtmf":
        return set(DTMF_KEYS)
    if kind == "number_problem":
        return set(NUMBER_PROBLEMS)
    if kind == "fact":
        on = str(form.on.data or "") if hasattr(form, "on") else ""
        if on == "language":
            return set(form.languages)
        return set(FACTS.get(on, ())) or None
    return None


def _mapping_values(spec: Field[Any], form: Any) -> set[str] | None:
    ref = spec.metadata.get("ref")
    if ref == NODE:
        return set(form.node_ids)
    if ref == LANGUAGE:
        return set(form.languages)
    return None
