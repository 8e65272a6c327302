"""Reads `prompts/<language>.yaml` into the prompt catalog, checking every text.

Texts stay within Twilio's <Say> limits, use only the placeholders their kind of
prompt allows, and every language has each system prompt.
"""

from __future__ import annotations

import re
import string
from pathlib import Path
from types import MappingProxyType

from ivr.errors import DefinitionProblem
from ivr.flow import yamlread
from ivr.flow.loader.files import Source, read_source, read_yaml, unknown_keys, unsayable
from ivr.flow.model.flow import (
    MESSAGE_PLACEHOLDERS,
    MESSAGE_PREFIX,
    PLACEHOLDERS,
    READ_CODE_PLACEHOLDERS,
    READ_CODE_PREFIX,
    SYSTEM_PROMPTS,
    Catalog,
    PromptSet,
)
from ivr.flow.model.transfer import HOLD_PLACEHOLDERS

PROMPT_FILE_KEYS = ("language", "voice", "prompts")
# Twilio's schema allows these voices (see ../shared/twilio); Polly voices sound best.
VOICE_PATTERN = r"man|woman|Polly\.[A-Za-z]+"  # the whole value (fullmatch: no "man\n")
SAY_LIMIT = 4096
POLLY_SAY_LIMIT = 3000
# System prompts spoken where no call facts are at hand: while holding in a queue, the
# apologies of a failing step, and everything on a call we place (the call-back leg
# knows nothing of the caller: a placeholder there would be spoken as written, or
# break the answer).
PLAIN_PROMPTS = frozenset(
    {"queue_hold", "error_apology", "agents_unavailable"}
    | {key for key in SYSTEM_PROMPTS if key.startswith("callback_")}
)
# System prompts said while holding: only what Twilio tells the waitUrl fills them.
HOLD_SYSTEM_PROMPTS = frozenset(
    key for key in SYSTEM_PROMPTS if key.startswith(("queue_position", "queue_wait_"))
)
# System prompts of the call-back leg that read the code out: the code and nothing else.
CALLBACK_CODE_PROMPTS = frozenset(
    key for key in SYSTEM_PROMPTS if key.startswith(READ_CODE_PREFIX + "_callback")
)


def allowed_placeholders(key: str) -> frozenset[str]:
    """The placeholders the text of prompt `key` may use (none: spoken as written)."""
    if key in PLAIN_PROMPTS:
        return frozenset()
    if key in HOLD_SYSTEM_PROMPTS:
        return HOLD_PLACEHOLDERS
    if key in CALLBACK_CODE_PROMPTS:
        return READ_CODE_PLACEHOLDERS
    if key.startswith(MESSAGE_PREFIX):
        return MESSAGE_PLACEHOLDERS
    if key.startswith(READ_CODE_PREFIX):
        return PLACEHOLDERS | READ_CODE_PLACEHOLDERS
    return PLACEHOLDERS


def load_catalog(prompts_dir: Path) -> tuple[Catalog, list[DefinitionProblem]]:
    """Read every `prompts/<language>.yaml`; system prompts must exist in each."""
    problems: list[DefinitionProblem] = []
    files = sorted(prompts_dir.glob("*.yaml"))
    if not files:
        problems.append(DefinitionProblem(str(prompts_dir), "", "", "no prompt files found"))
    sources = [s for s in (read_source(path, problems) for path in files) if s is not None]
    catalog, more = catalog_from_sources(sources)
    return catalog, problems + more


def catalog_from_sources(sources: list[Source]) -> tuple[Catalog, list[DefinitionProblem]]:
    """The catalog of these prompt files (one per language, named `<language>.yaml`)."""
    problems: list[DefinitionProblem] = []
    languages: dict[str, PromptSet] = {}
    for source in sources:
        prompt_set = _load_prompt_file(source, problems)
        if prompt_set is not None:
            languages[prompt_set.language] = prompt_set
    return Catalog(MappingProxyType(languages)), problems


def _load_prompt_file(source: Source, problems: list[DefinitionProblem]) -> PromptSet | None:
    file = source.name
    data = read_yaml(source, problems)
    if data is None:
        return None
    if not isinstance(data, yamlread.LineDict):
        problems.append(DefinitionProblem(file, "", "", "must be a mapping", 1))
        return None
    unknown_keys(data, PROMPT_FILE_KEYS, file, "", problems)
    language = data.get("language")
    if language != source.stem:
        problems.append(
            DefinitionProblem(
                file,
                "",
                "language",
                f"must be {source.stem!r}, the file's name",
                data.line_of("language"),
            )
        )
        return None
    voice = data.get("voice")
    if voice is not None and (not isinstance(voice, str) or not re.fullmatch(VOICE_PATTERN, voice)):
        problems.append(
            DefinitionProblem(
                file, "", "voice", "must be man, woman or Polly.<Name>", data.line_of("voice")
            )
        )
        voice = None
    texts = data.get("prompts")
    if not isinstance(texts, yamlread.LineDict):
        problems.append(
            DefinitionProblem(file, "", "prompts", "must be a mapping of key: text", data.line)
        )
        return None
    limit = POLLY_SAY_LIMIT if isinstance(voice, str) and voice.startswith("Polly.") else SAY_LIMIT
    clean: dict[str, str] = {}
    for key, text in texts.items():
        line = texts.line_of(key)
        if not isinstance(text, str) or not text.strip():
            problems.append(DefinitionProblem(file, key, "text", "must be non-empty text", line))
            continue
        bad = unsayable(text)
        if bad is not None:
            problems.append(DefinitionProblem(file, key, "text", bad, line))
            continue
        if len(text) > limit:
            problems.append(
                DefinitionProblem(
                    file, key, "text", f"is {len(text)} characters; at most {limit}", line
                )
            )
        allowed = allowed_placeholders(key)
        for placeholder in _placeholders(text, file, key, line, problems):
            if not allowed:
                problems.append(
                    DefinitionProblem(
                        file, key, "text", "is read with no call facts: no placeholders", line
                    )
                )
                break
            if placeholder not in allowed:
                problems.append(
                    DefinitionProblem(
                        file,
                        key,
                        "text",
                        f"unknown placeholder {{{placeholder}}}; allowed: "
                        + ", ".join(sorted(allowed)),
                        line,
                    )
                )
        clean[key] = " ".join(text.split())
    for key in SYSTEM_PROMPTS:
        if key not in clean and key not in texts:
            problems.append(
                DefinitionProblem(file, key, "prompts", "system prompt missing", texts.line)
            )
    return PromptSet(language, voice, MappingProxyType(clean), file)


def _placeholders(
    text: str, file: str, key: str, line: int | None, problems: list[DefinitionProblem]
) -> list[str]:
    try:
        return [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]
    except ValueError as exc:
        problems.append(DefinitionProblem(file, key, "text", f"bad braces: {exc}", line))
        return []
