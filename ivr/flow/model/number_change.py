"""Number change nodes: may the caller change it, the new number, and its code call-back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ivr.flow.model.base import NODE, PROMPT, InputNode, Node, node_ref, prompt_ref

# Changing the phone number needs a code passed on this call within the last 20
# minutes (security.md, NIST SP 800-63B rev 4 draft 6.1.2.1).
FRESH_VERIFICATION = 20 * 60

# Problems with a keyed-in new phone number (ivr.numberchange.rules), each with its own prompt.
NUMBER_PROBLEMS = frozenset({"invalid", "country", "line_type", "same_number"})


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
