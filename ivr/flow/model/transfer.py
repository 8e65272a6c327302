"""Transfers: where a call can go (TransferTarget, parse_target) and the transfer node.

Targets are parsed once, when a flow (or the config) loads; no call parses one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from ivr.flow.model.base import Node, choice, node_ref, prompt_ref

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

# Twilio rings at most 10 parties of one <Dial> at once.
MAX_SIMULTANEOUS_NUMBERS = 10
# Twilio's limits: queue names and client identities, TaskRouter Workflow SIDs.
MAX_NAME_LENGTH = 64
WORKFLOW_SID = re.compile(r"WW[0-9a-fA-F]{32}")
# Kinds that put the caller on hold (an <Enqueue>) rather than ringing someone.
HOLDING_KINDS = frozenset({"queue", "workflow"})
# How long a caller may be held before leaving the queue (queue_max_wait, seconds).
MIN_QUEUE_WAIT, MAX_QUEUE_WAIT = 30, 3600
# How often a holding caller hears their position and estimated wait (announce_every, s).
MIN_ANNOUNCE_EVERY, MAX_ANNOUNCE_EVERY = 30, 600
DEFAULT_ANNOUNCE_EVERY = 60
# After how long on hold a fully verified caller is offered a call-back (offer_callback_after, s).
MIN_OFFER_CALLBACK_AFTER, MAX_OFFER_CALLBACK_AFTER = 30, 1800
# The placeholders a hold prompt may use: filled from what Twilio tells the waitUrl.
HOLD_PLACEHOLDERS = frozenset({"position", "minutes"})


@dataclass(frozen=True)
class TransferTarget:
    """Where a transfer goes, resolved once when the flow (or the config) loads.

    `kind` is number, sip, client, queue or workflow; `address` the E.164 number,
    SIP URI, client identity, queue name or TaskRouter Workflow SID. Numbers in
    `also_ring` ring at the same time as `address`. The hold settings apply to
    queue and workflow targets only (the loader refuses them on the others); a
    holding target without them holds with the defaults (the `queue_hold` prompt,
    position and wait every DEFAULT_ANNOUNCE_EVERY seconds, the IVR_HOLD_MUSIC_URL
    music between, MAX_QUEUE_WAIT at most).
    """

    kind: str
    address: str
    also_ring: tuple[str, ...] = ()
    hold_prompt: str | None = None  # said while holding (None: the `queue_hold` system prompt)
    hold_music: str | None = None  # https URL played between announcements (None: the setting's)
    max_wait: int | None = None  # seconds on hold before the caller leaves the queue
    announce_every: int | None = None  # seconds between announcements (None: the default)
    # Seconds on hold before a fully verified caller is offered a call-back (None: never).
    offer_callback_after: int | None = None
    callback_offer_prompt: str | None = None  # the offer (None: `queue_callback_offer`)

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
    def holds(self) -> bool:
        """A queue or workflow: the caller holds (our waitUrl) until someone takes the call."""
        return self.kind in HOLDING_KINDS

    @property
    def has_hold_settings(self) -> bool:
        """A queue or workflow target with its own hold prompt, music, maximum wait or cadence."""
        return self.holds and any(
            value is not None
            for value in (
                self.hold_prompt,
                self.hold_music,
                self.max_wait,
                self.announce_every,
                self.offer_callback_after,
                self.callback_offer_prompt,
            )
        )


@dataclass(frozen=True, kw_only=True)
class TransferNode(Node):
    """Hands the call to people: a Dial (numbers, SIP, client) or an Enqueue (queue, workflow).

    `target` is one target as parse_target reads it (several numbers: one string,
    comma-separated). The hold fields need the node's own queue: or workflow: target;
    without them (or with the configured target) the caller holds with the defaults.
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
    announce_every: int | None = field(
        default=None, metadata={"min": MIN_ANNOUNCE_EVERY, "max": MAX_ANNOUNCE_EVERY}
    )
    # A fully verified caller holding this long hears the call-back offer (press 1): the
    # static proofs refuse the field on a node reachable without both checks.
    offer_callback_after: int | None = field(
        default=None, metadata={"min": MIN_OFFER_CALLBACK_AFTER, "max": MAX_OFFER_CALLBACK_AFTER}
    )
    callback_offer_prompt: str | None = prompt_ref(default=None)
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
            announce_every=self.announce_every,
            offer_callback_after=self.offer_callback_after,
            callback_offer_prompt=self.callback_offer_prompt,
        )


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
