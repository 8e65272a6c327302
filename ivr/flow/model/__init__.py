"""The flow model: plain frozen data read from `flows/*.yaml` and `prompts/*.yaml`.

Each node kind is a dataclass. Field metadata says what a value refers to (another
node, a prompt, a language) so the loader and the validator can check every
reference generically; the engine never looks a name up lazily during a call.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

# What a field's value refers to (field metadata "ref").
NODE = "node"
PROMPT = "prompt"
LANGUAGE = "language"

DTMF_KEYS = frozenset("0123456789")

# Facts a `branch` node may test, with the values each can take.
# (`language` takes the flow's own languages.)
FACTS: Mapping[str, frozenset[str]] = {
    "identity": frozenset({"one_account", "several_accounts", "unknown_number", "withheld"}),
    "verification": frozenset({"none", "digits", "code"}),
    "caller_id": frozenset({"present", "withheld"}),
    # Whether a code was passed on this call within FRESH_VERIFICATION seconds.
    "fresh_code": frozenset({"yes", "no"}),
}

# Changing the phone number needs a code passed on this call within the last 20
# minutes (security.md, NIST SP 800-63B rev 4 draft 6.1.2.1).
FRESH_VERIFICATION = 20 * 60

TRANSFER_REASONS = frozenset(
    {
        "caller_request",
        "verification_failed",
        "no_input",
        "menu_failed",
        "unknown_caller",
        "error",
        "recycled_number",
        "number_change_failed",
        "number_changed_recently",
    }
)

# Placeholders a prompt text may use; the engine fills the ones it knows.
PLACEHOLDERS = frozenset(
    {"first_name", "name", "account_last4", "method", "reason", "new_number", "minutes"}
)
# Message texts (keys starting "message_") are sent, never spoken, and may carry the code.
MESSAGE_PREFIX = "message_"
MESSAGE_PLACEHOLDERS = frozenset({"code", "minutes", "last4", "support_number"})
# Prompts that read a one-time code aloud (keys starting "read_code") get {code_digits},
# and only they: the code must never end up in any other text by accident.
READ_CODE_PREFIX = "read_code"
READ_CODE_PLACEHOLDERS = frozenset({"code_digits"})

CODE_CHANNELS = frozenset({"sms", "email", "voice"})

# Problems with a keyed-in new phone number (ivr.numberchange.rules), each with its own prompt.
NUMBER_PROBLEMS = frozenset({"invalid", "country", "line_type", "same_number"})

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
)


def node_ref(**kwargs: Any) -> Any:
    """A field holding the id of another node (a transition)."""
    return field(metadata={"ref": NODE}, **kwargs)


def prompt_ref(**kwargs: Any) -> Any:
    """A field holding a prompt key, which must exist in every language."""
    return field(metadata={"ref": PROMPT}, **kwargs)


def bounded(low: int, high: int, default: int) -> Any:
    """An integer field with inclusive bounds."""
    return field(default=default, metadata={"min": low, "max": high})


def choice(values: frozenset[str], **kwargs: Any) -> Any:
    """A string field limited to `values`."""
    return field(metadata={"choices": values}, **kwargs)


def keyed(key_kind: str, value_ref: str) -> Any:
    """A mapping field: keys of `key_kind` ("dtmf" or "fact"), values referring to `value_ref`."""
    return field(metadata={"keys": key_kind, "ref": value_ref})


def internal(**kwargs: Any) -> Any:
    """A field set by the loader, not written in YAML."""
    return field(metadata={"internal": True}, **kwargs)


# Twilio rings at most 10 parties of one <Dial> at once.
MAX_SIMULTANEOUS_NUMBERS = 10
# Twilio's limits: queue names and client identities, TaskRouter Workflow SIDs.
MAX_NAME_LENGTH = 64
WORKFLOW_SID = re.compile(r"WW[0-9a-fA-F]{32}")
# Kinds that put the caller on hold (an <Enqueue>) rather than ringing someone.
HOLDING_KINDS = frozenset({"queue", "workflow"})
# How long a caller may be held before leaving the queue (queue_max_wait, seconds).
MIN_QUEUE_WAIT, MAX_QUEUE_WAIT = 30, 3600


@dataclass(frozen=True)
class TransferTarget:
    """Where a transfer goes, resolved once when the flow (or the config) loads.

    `kind` is number, sip, client, queue or workflow; `address` the E.164 number,
    SIP URI, client identity, queue name or TaskRouter Workflow SID. Numbers in
    `also_ring` ring at the same time as `address`. The hold settings apply to
    queue and workflow targets only (the loader refuses them on the others).
    """

    kind: str
    address: str
    also_ring: tuple[str, ...] = ()
    hold_prompt: str | None = None  # said while holding (None: the `queue_hold` system prompt)
    hold_music: str | None = None  # https URL played after the hold prompt
    max_wait: int | None = None  # seconds on hold before the caller leaves the queue

    @property
    def rings_a_person(self) -> bool:
        """Dial targets get a whisper; a queue has no agent leg to whisper to."""
        return self.kind not in HOLDING_KINDS

    @property
    def numbers(self) -> tuple[str, ...]:
        """Every number a number target rings at once."""
        return (self.address, *self.also_ring) if self.kind == "number" else ()

    @property
    def label(self) -> str:
        """The target written the way parse_target reads it back (numbers in full: not for logs)."""
        if self.kind == "number":
            return ",".join(self.numbers)
        if self.kind == "sip":
            return self.address
        return f"{self.kind}:{self.address}"

    @property
    def has_hold_settings(self) -> bool:
        """A queue or workflow target with its own hold prompt, music or maximum wait."""
        return self.kind in HOLDING_KINDS and (
            self.hold_prompt is not None or self.hold_music is not None or self.max_wait is not None
        )


@dataclass(frozen=True, kw_only=True)
class Node:
    """Base of every node kind: its id and where it was defined."""

    id: str = internal()
    line: int | None = internal(default=None, compare=False)
    key_lines: Mapping[str, int] = internal(default_factory=dict, compare=False, repr=False)

    def line_of(self, field_name: str) -> int | None:
        """The line a field (or `field.key` of a mapping) was written on."""
        return self.key_lines.get(field_name.split(".")[0], self.line)

    def transitions(self) -> dict[str, str]:
        """Every outgoing transition as {field label: target node id}."""
        result: dict[str, str] = {}
        for spec in fields(self):
            if spec.metadata.get("ref") != NODE:
                continue
            value = getattr(self, spec.name)
            if isinstance(value, str):
                result[spec.name] = value
            elif isinstance(value, Mapping):
                for key, target in value.items():
                    result[f"{spec.name}.{key}"] = target
        return result

    def prompts(self) -> dict[str, str]:
        """Every prompt key used, as {field name: prompt key}."""
        result: dict[str, str] = {}
        for spec in fields(self):
            value = getattr(self, spec.name)
            if spec.metadata.get("ref") != PROMPT or not value:
                continue
            if isinstance(value, Mapping):
                for key, prompt in value.items():
                    result[f"{spec.name}.{key}"] = prompt
            else:
                result[spec.name] = value
        return result


@dataclass(frozen=True, kw_only=True)
class InputNode(Node):
    """A node that waits for keypad input; every one needs all three failure exits."""

    prompt: str = prompt_ref()
    retry_prompt: str | None = prompt_ref(default=None)
    max_tries: int = bounded(1, 10, 3)
    timeout: int = bounded(1, 30, 5)
    no_input: str = node_ref()
    invalid: str = node_ref()
    too_many_tries: str = node_ref()


@dataclass(frozen=True, kw_only=True)
class SayNode(Node):
    prompt: str = prompt_ref()
    next: str = node_ref()


@dataclass(frozen=True, kw_only=True)
class MenuNode(InputNode):
    options: Mapping[str, str] = keyed("dtmf", NODE)


@dataclass(frozen=True, kw_only=True)
class CollectDigitsNode(InputNode):
    save_as: str = field()
    min_length: int = bounded(1, 32, 1)
    max_length: int = bounded(1, 32, 20)
    next: str = node_ref()


@dataclass(frozen=True, kw_only=True)
class ChooseLanguageNode(InputNode):
    """Speaks its prompt once in each offered language, then sets the call's language."""

    options: Mapping[str, str] = keyed("dtmf", LANGUAGE)
    next: str = node_ref()


@dataclass(frozen=True, kw_only=True)
class CheckAccountDigitsNode(InputNode):
    """`last4`: the last 4 digits pick one of the caller ID's accounts; `full`: the
    whole account number, ended by #, for callers the number did not identify."""

    mode: str = choice(frozenset({"last4", "full"}))
    ok: str = node_ref()
    ambiguous: str | None = node_ref(default=None)


@dataclass(frozen=True, kw_only=True)
class SendCodeNode(Node):
    """Sends a one-time code to the phone or mailbox on file of the verified account.

    "voice" rings the phone on file and reads the code once someone presses a key.
    """

    channel: str = choice(CODE_CHANNELS)
    prompt: str | None = prompt_ref(default=None)  # spoken once the code is on its way
    sent: str = node_ref()
    no_channel: str = node_ref()
    rate_limited: str = node_ref()  # send limits reached, or the account is locked out
    failed: str = node_ref()
    # voice only: the caller is on the phone on file, which cannot ring (default: no_channel)
    line_in_use: str | None = node_ref(default=None)


@dataclass(frozen=True, kw_only=True)
class CheckCodeNode(InputNode):
    """Asks for the code; single keys in `options` lead elsewhere (resend, another channel)."""

    options: Mapping[str, str] = field(default_factory=dict, metadata={"keys": "dtmf", "ref": NODE})
    ok: str = node_ref()
    expired: str = node_ref()
    locked: str = node_ref()


@dataclass(frozen=True, kw_only=True)
class CheckNumberChangeNode(Node):
    """May this caller change the phone number on file now?

    `needs_code` when no code was passed on this call in the last 20 minutes;
    `cooling_off` when the number already changed recently (a high-risk repeat).
    """

    allowed: str = node_ref()
    needs_code: str = node_ref()
    cooling_off: str = node_ref()


@dataclass(frozen=True, kw_only=True)
class CollectNewNumberNode(InputNode):
    """The new phone number, keyed in national format or with the international prefix,
    ended by #. Each problem gets its own retry prompt; a number already on another
    account (probably recycled) leaves by `taken`."""

    problem_prompts: Mapping[str, str] = field(
        default_factory=dict, metadata={"keys": "number_problem", "ref": PROMPT}
    )
    ok: str = node_ref()
    taken: str = node_ref()
    needs_code: str = node_ref()


@dataclass(frozen=True, kw_only=True)
class StartCallbackNode(Node):
    """Starts the code call-back to the new number.

    The caller on another phone stays on the line (`calling`: the call-back reads a
    code they enter here). A caller on the new phone itself hears the code now
    (`read_code_prompt`, which gets {code_digits}) and the call ends (`code_read`);
    the call-back then asks for the code.
    """

    calling_prompt: str | None = prompt_ref(default=None)
    read_code_prompt: str = prompt_ref()
    calling: str = node_ref()
    code_read: str = node_ref()
    limited: str = node_ref()  # call-backs per day used up
    taken: str = node_ref()
    failed: str = node_ref()
    needs_code: str = node_ref()
    locked: str | None = node_ref(default=None)  # a code lockout (default: limited)


@dataclass(frozen=True, kw_only=True)
class CheckCallbackCodeNode(InputNode):
    """The code the call-back read out, keyed in on this call; a right one changes the
    number. While the call-back still rings, silence only asks the caller to wait."""

    waiting_prompt: str | None = prompt_ref(default=None)
    options: Mapping[str, str] = field(default_factory=dict, metadata={"keys": "dtmf", "ref": NODE})
    ok: str = node_ref()
    conflict: str = node_ref()  # the number changed meanwhile (another confirmation won)
    taken: str | None = node_ref(default=None)  # the new number went to another account
    expired: str = node_ref()
    locked: str = node_ref()
    not_answered: str = node_ref()  # no answer, or answered without pressing a key
    busy: str = node_ref()
    failed: str = node_ref()


@dataclass(frozen=True, kw_only=True)
class BranchNode(Node):
    on: str = choice(frozenset(FACTS) | {"language"})
    cases: Mapping[str, str] = keyed("fact", NODE)
    default: str = node_ref()


@dataclass(frozen=True, kw_only=True)
class IdentifyCallerNode(Node):
    one_account: str = node_ref()
    several_accounts: str = node_ref()
    unknown_number: str = node_ref()
    withheld: str = node_ref()


@dataclass(frozen=True, kw_only=True)
class TransferNode(Node):
    """Hands the call to people: a Dial (numbers, SIP, client) or an Enqueue (queue, workflow).

    `target` is one target as parse_target reads it (several numbers: one string,
    comma-separated). The hold fields need the node's own queue: or workflow: target.
    """

    prompt: str | None = prompt_ref(default=None)
    target: str | None = field(  # None: the service's configured agent target
        default=None,
        metadata={
            "text_hint": 'must be text: a number in quotes ("+14155550100"), several'
            ' numbers ringing at once in one string separated by commas ("+14155550100,'
            ' +14155550101"), or a sip:, client:, queue: or workflow: target'
        },
    )
    reason: str = choice(TRANSFER_REASONS)
    unanswered: str = node_ref()
    hold_prompt: str | None = prompt_ref(default=None)
    hold_music: str | None = None
    queue_max_wait: int | None = field(
        default=None, metadata={"min": MIN_QUEUE_WAIT, "max": MAX_QUEUE_WAIT}
    )
    # `target` parsed by the loader once per flow version (None: the configured target).
    destination: TransferTarget | None = field(
        default=None, compare=False, metadata={"internal": True}
    )

    def resolve(self, default_region: str) -> TransferTarget | None:
        """The node's own target with its hold settings (ValueError when it is bad)."""
        if self.target is None:
            return None
        return replace(
            parse_target(self.target, default_region),
            hold_prompt=self.hold_prompt,
            hold_music=self.hold_music,
            max_wait=self.queue_max_wait,
        )


@dataclass(frozen=True, kw_only=True)
class HangupNode(Node):
    prompt: str | None = prompt_ref(default=None)


# The one registry of node kinds: YAML `type` → dataclass.
NODE_TYPES: Mapping[str, type[Node]] = {
    "say": SayNode,
    "menu": MenuNode,
    "collect_digits": CollectDigitsNode,
    "choose_language": ChooseLanguageNode,
    "check_account_digits": CheckAccountDigitsNode,
    "send_code": SendCodeNode,
    "check_code": CheckCodeNode,
    "check_number_change": CheckNumberChangeNode,
    "collect_new_number": CollectNewNumberNode,
    "start_callback": StartCallbackNode,
    "check_callback_code": CheckCallbackCodeNode,
    "branch": BranchNode,
    "identify_caller": IdentifyCallerNode,
    "transfer": TransferNode,
    "hangup": HangupNode,
}

TERMINAL_TYPES = (HangupNode,)


def parse_target(text: str, default_region: str) -> TransferTarget:
    """Parse one transfer target (ValueError, saying why, when it is not one).

    `+14155550100`; several numbers ringing at once, comma-separated
    (`+14155550100, +14155550101`, at most 10); `sip:agent@pbx.example`;
    `client:alice`; `queue:support`; `workflow:WW` + 32 hex digits (TaskRouter).
    """
    from ivr.phone import to_e164

    value = text.strip()
    lowered = value.lower()
    if "," in value:
        return _parse_numbers(value, default_region)
    if lowered.startswith("sip:"):
        if "@" not in value[4:] or any(ch.isspace() or ch in '<>"' for ch in value):
            raise ValueError(f"SIP target {value!r} needs user@host, with no spaces or brackets")
        return TransferTarget("sip", value)
    if lowered.startswith("workflow:"):
        sid = value[len("workflow:") :].strip()
        if not WORKFLOW_SID.fullmatch(sid):
            raise ValueError(
                f"workflow target {sid!r} is not a TaskRouter Workflow SID (WW and 32 hex digits)"
            )
        return TransferTarget("workflow", sid)
    for kind in ("client", "queue"):
        if lowered.startswith(kind + ":"):
            name = value[len(kind) + 1 :].strip()
            if not name or len(name) > MAX_NAME_LENGTH:
                raise ValueError(f"{kind} target needs a name of 1 to {MAX_NAME_LENGTH} characters")
            return TransferTarget(kind, name)
    number = to_e164(value, default_region)
    if number is None:
        raise ValueError(
            f"transfer target {value!r} is not a phone number, several comma-separated numbers,"
            " sip:, client:, queue: or workflow: target"
        )
    return TransferTarget("number", number)


def _parse_numbers(value: str, default_region: str) -> TransferTarget:
    """Several numbers that ring at once: the first to answer takes the call."""
    from ivr.phone import to_e164

    parts = [part.strip() for part in value.split(",")]
    if any(not part for part in parts):
        raise ValueError(f"{value!r} has an empty entry between commas")
    if len(parts) > MAX_SIMULTANEOUS_NUMBERS:
        raise ValueError(
            f"{len(parts)} numbers; Twilio rings at most {MAX_SIMULTANEOUS_NUMBERS} at once"
        )
    numbers: list[str] = []
    for position, part in enumerate(parts, start=1):
        number = to_e164(part, default_region)
        if number is None:
            raise ValueError(
                f"entry {position} ({part!r}) is not a phone number; only phone numbers can be"
                " listed to ring at once"
            )
        if number in numbers:
            raise ValueError(f"entry {position} ({part!r}) repeats {number}")
        numbers.append(number)
    return TransferTarget("number", numbers[0], also_ring=tuple(numbers[1:]))


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
