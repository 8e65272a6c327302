"""What the agent page accepts from its forms: the sign-in fields (password step, code
step) and the screen pop's actions that have fields (checklist, sending a code, checking
one; escalating and signing out carry the token only), as WTForms classes the views may
trust once `validate()` passed.

CSRF is not checked here: the blueprint checks every POST before any view runs
(`ivr.staff.csrf.protect`, one token per session, the same as the ops console's), so
these forms are built with Flask-WTF's own CSRF field turned off. A form that fails
validation names the field and why; the views render that beside the field.

The checks are about shape only. Whether a password or a sign-in code is right stays
with `sessions` (throttled and audited there), so a code of the wrong shape on the
sign-in step is still checked, counted and audited as a wrong one; only input that
could never be anything (far too long, a channel the page never offers, a checklist
item it never showed) is turned back here. The screen pop's code check is stricter
(digits, the codes' length): a slip of the ear there should not cost the caller one of
the code's few attempts.
"""

from __future__ import annotations

import re
from typing import Any

from flask_wtf import FlaskForm
from wtforms import Field, HiddenField, PasswordField, SelectMultipleField, StringField
from wtforms.validators import DataRequired, Length, ValidationError

from ivr.agent.manual import CHECKLIST, CODE_CHANNELS
from ivr.agent.users import normalise_username

USERNAME_MAX = 64
PASSWORD_MAX = 1024  # hashing has a cost: nobody types more than this
CODE_MAX = 32  # a TOTP code is 6 digits and a recovery code 11 characters: room for spaces
READ_OUT = re.compile(r"[0-9 ]+")  # a code as an agent types what the caller reads out


def _stripped(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _username(value: Any) -> Any:
    return normalise_username(value) if isinstance(value, str) else value


class PageForm(FlaskForm):
    """A form of a staff page: CSRF is the blueprint's (see the module docstring)."""

    class Meta:
        csrf = False


class LoginForm(PageForm):
    """The sign-in fields: the username normalised and bounded, the password as typed
    and bounded. A blank one is the sign-in's to refuse (counted and audited), as a
    browser never sends one (both inputs are `required`)."""

    username = StringField(
        "Username",
        filters=[_username],
        validators=[
            Length(max=USERNAME_MAX, message=f"A username is at most {USERNAME_MAX} characters.")
        ],
    )
    password = PasswordField(
        "Password",
        validators=[
            Length(max=PASSWORD_MAX, message=f"A password is at most {PASSWORD_MAX} characters.")
        ],
    )
    next = HiddenField()


class CodeForm(PageForm):
    """The second sign-in step: a TOTP code, or a recovery code, each bounded in length.

    Their shape is the sign-in's to judge (see the module docstring): a blank or a
    "12345" passes here and is refused, counted and audited, as a wrong code."""

    code = StringField(
        "Code",
        validators=[Length(max=CODE_MAX, message=f"A code is at most {CODE_MAX} characters.")],
    )
    recovery_code = StringField(
        "Recovery code",
        validators=[
            Length(max=CODE_MAX, message=f"A recovery code is at most {CODE_MAX} characters.")
        ],
    )


class ChecklistForm(PageForm):
    """The checklist items the caller got right: known items only, none at all is fine."""

    # The page draws the boxes itself (from CHECKLIST), so no choices are declared here:
    # validate_matched checks the values, with a message an agent can read.
    matched = SelectMultipleField("Tick what the caller told you correctly", validate_choice=False)

    def validate_matched(self, field: Field) -> None:
        """Only the page's own items (a tampered form is refused, not half-saved)."""
        if any(value not in CHECKLIST for value in field.data or []):
            raise ValidationError(
                "The checklist had an item this page does not show. Reload it and try again."
            )


class SendCodeForm(PageForm):
    """Which way a one-time code goes: one of the channels the page offers."""

    channel = StringField("Send the code by")

    def validate_channel(self, field: Field) -> None:
        """A text message or an email, nothing else."""
        if field.data not in CODE_CHANNELS:
            raise ValidationError("Choose how to send the code: by text message or by email.")


class CheckCodeForm(PageForm):
    """The code the caller reads out: digits (spaces allowed, as read out), as many as
    the codes this page sends."""

    code = StringField(
        "Code the caller reads out",
        filters=[_stripped],
        validators=[DataRequired("Type the code the caller reads out.")],
    )

    def __init__(self, *args: Any, length: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.length = length

    def validate_code(self, field: Field) -> None:
        """Digits only, as many as the codes sent (a slip of the ear costs no attempt)."""
        typed = field.data or ""
        if len(typed) > CODE_MAX:
            raise ValidationError(f"That is too long for a code (at most {CODE_MAX} characters).")
        if not READ_OUT.fullmatch(typed):
            raise ValidationError("A code is digits only (spaces are fine).")
        digits = len(self.digits)
        if digits != self.length:
            raise ValidationError(
                f"The code has {self.length} digits; this one has {digits}. Ask the caller again."
            )

    @property
    def digits(self) -> str:
        """The code without the spaces it was read out with."""
        return (self.code.data or "").replace(" ", "")
