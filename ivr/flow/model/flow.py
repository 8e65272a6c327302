"""A loaded flow version and the prompt catalog it speaks from, with the prompt rules.

The rules say which placeholders each kind of prompt text may use and which
prompts every language must have (the service speaks them outside any flow).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ivr.flow.model.base import Node

# Placeholders a prompt text may use; the engine fills the ones it knows.
PLACEHOLDERS = frozenset(
    {"first_name", "name", "account_last4", "method", "reason", "new_number", "minutes", "position"}
)
# Message texts (keys starting "message_") are sent, never spoken, and may carry the code.
MESSAGE_PREFIX = "message_"
MESSAGE_PLACEHOLDERS = frozenset({"code", "minutes", "last4", "support_number"})
# Prompts that read a one-time code aloud (keys starting "read_code") get {code_digits},
# and only they: the code must never end up in any other text by accident.
READ_CODE_PREFIX = "read_code"
READ_CODE_PLACEHOLDERS = frozenset({"code_digits"})

# Prompts the service itself speaks outside any flow (fallback, whisper);
# every prompt file must have them.
SYSTEM_PROMPTS = (
    "error_apology",
    "agents_unavailable",
    "whisper_verified",
    "whisper_unverified",
    "whisper_accept",
    "method_account_digits",
    "method_account_number",
    "method_code_sms",
    "method_code_email",
    "method_code_voice",
    "message_code_sms",
    "message_code_email",
    "message_code_email_subject",
    "message_number_changed_sms",
    "message_number_changed_email",
    "message_number_changed_email_subject",
    "callback_press_key",
    "callback_no_key",
    "read_code_callback",
    "read_code_callback_again",
    "callback_goodbye",
    "callback_expired",
    "callback_locked",
    "callback_trouble",
    "callback_enter_code",
    "callback_enter_code_retry",
    "callback_no_code",
    "callback_number_changed",
    "callback_not_changed",
    "callback_change_conflict",
    "whisper_when",
    "whisper_when_now",
    "whisper_flag_caller_id_mismatch",
    "whisper_flag_number_changed_recently",
    "whisper_flag_code_to_new_number",
    "whisper_flag_locked",
    "whisper_flag_digits_locked",
    "reason_caller_request",
    "reason_verification_failed",
    "reason_no_input",
    "reason_menu_failed",
    "reason_unknown_caller",
    "reason_error",
    "reason_recycled_number",
    "reason_number_change_failed",
    "reason_number_changed_recently",
    "queue_hold",
    # said while holding (ivr.voice.hold): only {position} and {minutes}
    "queue_position_next",
    "queue_position",
    "queue_wait_under_minute",
    "queue_wait_one_minute",
    "queue_wait_minutes",
    # call-back instead of holding (ivr.voice.hold, ivr.voice.queue_callbacks)
    "queue_callback_offer",
    "queue_callback_confirm",
    "queue_callback_intro",
    "queue_callback_no_key",
    "queue_callback_expired",
    "queue_callback_missed_sms",
    "whisper_flag_called_back",
)


@dataclass(frozen=True)
class Flow:
    """One validated version of a call flow."""

    name: str
    file: str
    version: str
    description: str
    start: str
    languages: tuple[str, ...]
    nodes: Mapping[str, Node]
    max_inputs: int

    @property
    def default_language(self) -> str:
        return self.languages[0]


@dataclass(frozen=True)
class PromptSet:
    """The spoken texts of one language."""

    language: str
    voice: str | None
    texts: Mapping[str, str]
    file: str


@dataclass(frozen=True)
class Catalog:
    """Every language's prompts, as loaded together."""

    languages: Mapping[str, PromptSet]

    def text(self, language: str, key: str) -> str:
        return self.languages[language].texts[key]

    def voice(self, language: str) -> str | None:
        return self.languages[language].voice
