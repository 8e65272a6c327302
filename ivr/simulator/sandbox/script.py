"""A simulated call's script: the caller, the language, a seed, the version chosen and
the version the call runs on, and every answer the tester has given so far. The page
keeps it in a hidden field and posts it back, so it is checked strictly here: unknown
fields, bad keys or a malformed seed are a ScriptError that says what is wrong, never a
crash."""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

from ivr.customers.seed import DEMO_CUSTOMERS
from ivr.errors import IvrError
from ivr.phone import mask
from ivr.simulator.recording import RECORD_ENTRY

SCRIPT_VERSION = 2
MAX_SCRIPT_CHARS = 20_000  # what the page posts back; a long call is a few kilobytes
MAX_ANSWERS = 200  # answers in one script: far more than any flow's max_inputs
MAX_KEYS = 32  # keys in one answer
KEYS = re.compile(r"[0-9*#]+")
# Words spoken at a prompt that listens for speech: `say:` and at most MAX_WORDS
# characters of letters, digits, spaces and light punctuation (the simulator's token,
# see ivr.simulator.keypads).
SAY = "say:"
MAX_WORDS = 200
WORDS = re.compile(r"[¿¡]?[^\W_]+(?:[\s'\u2019.,¿?¡!-]+[^\W_]+)*[.?!]?")
SEED = re.compile(r"[0-9a-f]{32}")
VERSION = re.compile(r"[0-9A-Za-z._-]{4,64}")  # a version id (a flow's content hash)
CHOICES = ("live", "draft")  # what a tester may choose besides a version id
FLOW_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
LANGUAGE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*")

UNKNOWN_NUMBER = "+14155550199"  # in the fictional range, and no demo customer's
WITHHELD = "anonymous"  # what Twilio sends as From when the caller ID is withheld

WHO = ("caller", "callee")  # whose turn: the caller's phone, or the phone called back
KEY_ACTIONS = ("keys", "silence", "hangup")
RING_ACTIONS = ("answer", "ignore")
ANSWER_FIELDS = {"who", "do", "keys"}
SCRIPT_FIELDS = {"v", "flow", "chosen", "version", "caller", "language", "seed", "answers"}


class ScriptError(IvrError):
    """A posted script is not one the simulator can replay; the message says why."""


# ------------------------------------------------------------------ the script


def callers() -> list[tuple[str, str, str]]:
    """Who may call: (choice, label, From), the demo customers first."""
    found = [
        (f"customer:{index}", f"{name} ({mask(phone)})", phone)
        for index, (name, phone, _, _) in enumerate(DEMO_CUSTOMERS)
    ]
    found.append(("unknown", f"An unknown number ({mask(UNKNOWN_NUMBER)})", UNKNOWN_NUMBER))
    found.append(("withheld", "A withheld number", WITHHELD))
    return found


def caller_number(choice: str) -> str:
    """The From of a caller choice; ScriptError for one that is not offered."""
    for name, _, number in callers():
        if name == choice:
            return number
    raise ScriptError(f"unknown caller {choice!r}")


@dataclass(frozen=True)
class Answer:
    """One answer the tester gave: `who` answered (caller or callee) and what they did:
    keys (with `keys`), silence, hangup; for a ringing phone, answer or ignore."""

    who: str
    do: str
    keys: str = ""  # keys pressed, or `say:` and the words spoken

    def as_dict(self) -> dict[str, str]:
        data = {"who": self.who, "do": self.do}
        if self.do == "keys":
            data["keys"] = self.keys
        return data


@dataclass(frozen=True)
class Script:
    """Everything a replay needs: the call's settings and the answers given so far.

    `chosen` is what the tester asked for (live, draft, or a version id): a new call like
    this one resolves it again. `version` is the version this call runs on, pinned when
    it started: every replay of it plays that version, whatever is live or drafted since.
    """

    flow: str
    chosen: str  # "live", "draft" or a version id
    version: str  # the id (content hash) of the version the call runs on
    caller: str  # a choice of `callers()`
    language: str  # "" leaves it to the flow's language menu
    seed: str  # 32 hex digits: the call's CallSid and codes derive from it
    answers: tuple[Answer, ...] = ()

    @classmethod
    def new(cls, flow: str, chosen: str, version: str, caller: str, language: str = "") -> Script:
        """A script for a new call on `version` (what `chosen` resolved to), with a fresh seed."""
        script = cls(flow, chosen, version, caller, language, secrets.token_hex(16))
        script.check()
        return script

    def with_answer(self, answer: Answer) -> Script:
        """This script with one more answer."""
        if len(self.answers) >= MAX_ANSWERS:
            raise ScriptError(f"a simulated call takes at most {MAX_ANSWERS} answers")
        return Script(
            self.flow,
            self.chosen,
            self.version,
            self.caller,
            self.language,
            self.seed,
            (*self.answers, _checked_answer(answer.as_dict(), len(self.answers))),
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "v": SCRIPT_VERSION,
                "flow": self.flow,
                "chosen": self.chosen,
                "version": self.version,
                "caller": self.caller,
                "language": self.language,
                "seed": self.seed,
                "answers": [answer.as_dict() for answer in self.answers],
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, raw: str) -> Script:
        """Parse and check a posted script; ScriptError says what is wrong with it."""
        if len(raw) > MAX_SCRIPT_CHARS:
            raise ScriptError(f"the call script is longer than {MAX_SCRIPT_CHARS} characters")
        try:
            data = json.loads(raw)
        except ValueError:
            raise ScriptError("the call script is not valid JSON") from None
        if not isinstance(data, dict):
            raise ScriptError("the call script must be a JSON object")
        unknown = sorted(set(data) - SCRIPT_FIELDS)
        if unknown:
            raise ScriptError(
                f"the call script has unknown fields: {', '.join(unknown)} "
                f"(allowed: {', '.join(sorted(SCRIPT_FIELDS))})"
            )
        if data.get("v") != SCRIPT_VERSION:
            raise ScriptError(
                f"the call script must have v={SCRIPT_VERSION} "
                "(a call started before the simulator was updated: start a new one)"
            )
        names = ("flow", "chosen", "version", "caller", "language")
        text = {name: data.get(name, "") for name in names}
        for name, value in [*text.items(), ("seed", data.get("seed"))]:
            if not isinstance(value, str):
                raise ScriptError(f"the call script's {name} must be a string")
        answers = data.get("answers", [])
        if not isinstance(answers, list):
            raise ScriptError("the call script's answers must be a list")
        if len(answers) > MAX_ANSWERS:
            raise ScriptError(f"a simulated call takes at most {MAX_ANSWERS} answers")
        script = cls(
            text["flow"],
            text["chosen"],
            text["version"],
            text["caller"],
            text["language"],
            data["seed"],
            tuple(_checked_answer(item, number) for number, item in enumerate(answers)),
        )
        script.check()
        return script

    def check(self) -> None:
        """ScriptError unless every setting is well formed (answers are checked as read)."""
        if not FLOW_NAME.fullmatch(self.flow):
            raise ScriptError(f"the flow name {self.flow!r} is not valid")
        if self.chosen not in CHOICES and not VERSION.fullmatch(self.chosen):
            raise ScriptError(
                f"the version chosen, {self.chosen!r}, is neither live, draft nor a version id"
            )
        if self.version in CHOICES or not VERSION.fullmatch(self.version):
            raise ScriptError(f"the call's version {self.version!r} is not a version id")
        caller_number(self.caller)
        if self.language and not LANGUAGE.fullmatch(self.language):
            raise ScriptError(f"the language {self.language!r} is not a language tag")
        if not SEED.fullmatch(self.seed):
            raise ScriptError("the call script's seed must be 32 hexadecimal digits")


def is_speech(entry: str) -> bool:
    """Whether `entry` is a well-formed spoken answer: `say:` and some words."""
    words = entry[len(SAY) :].strip() if entry.startswith(SAY) else ""
    return 0 < len(words) <= MAX_WORDS and WORDS.fullmatch(words) is not None


def _checked_answer(item: Any, number: int) -> Answer:
    where = f"answer {number + 1}"
    if not isinstance(item, dict):
        raise ScriptError(f"{where} must be a JSON object")
    unknown = sorted(set(item) - ANSWER_FIELDS)
    if unknown:
        raise ScriptError(f"{where} has unknown fields: {', '.join(unknown)}")
    who, do, keys = item.get("who"), item.get("do"), item.get("keys", "")
    if who not in WHO:
        raise ScriptError(f"{where}: who must be one of {', '.join(WHO)}")
    if do not in KEY_ACTIONS + RING_ACTIONS:
        raise ScriptError(f"{where}: do must be one of {', '.join(KEY_ACTIONS + RING_ACTIONS)}")
    if do in RING_ACTIONS and who != "callee":
        raise ScriptError(f"{where}: only the phone called back can be answered or ignored")
    if do == "keys" and isinstance(keys, str) and keys.startswith(SAY):
        if not is_speech(keys):
            raise ScriptError(
                f"{where}: {SAY} must be followed by 1 to {MAX_WORDS} characters of words "
                "(letters, digits, spaces and . , ' ? ! -)"
            )
    elif do == "keys" and isinstance(keys, str) and RECORD_ENTRY.fullmatch(keys):
        pass  # a message left at a voicemail's beep: record:N (seconds) and a finish key
    elif do == "keys":
        if not isinstance(keys, str) or not KEYS.fullmatch(keys) or len(keys) > MAX_KEYS:
            raise ScriptError(
                f"{where}: keys must be 1 to {MAX_KEYS} of 0-9, * and # (not {keys!r}),"
                " record:N at a voicemail's beep, or say: and words"
            )
    elif keys:
        raise ScriptError(f"{where}: only do=keys takes keys")
    return Answer(who, do, keys if do == "keys" else "")
