"""What a caller said, matched to a menu's options: pure text work, no Twilio.

A menu with `speech` lists, per option, a prompt whose text in the call's language
holds the phrases that choose it, comma-separated. Both the phrases and what Twilio
heard (its SpeechResult) are normalised the same way — lower case, accents and
punctuation dropped, spaces collapsed — and a phrase matches when all its words
appear together, as whole words, in what was said ("I want a new number" matches
"new number", "renumber" does not). A spoken digit ("two", "dos", "2") chooses that
key, as if it had been pressed.

Exactly one option must match: none, or two different ones ("no, that is right"),
is an invalid answer and the menu asks again, so a guess never moves a call. A
phrase found inside a longer phrase of another option does not count ("not right"
says no, though it holds "right"). Twilio's `Confidence` is not used: it is 0 for
several speech models, and requiring a listed phrase word for word is already
stricter than any threshold would be.

The words themselves are never stored or logged: the timeline notes only that the
caller spoke (they may say a name or a number).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping, Sequence

from ivr.flow.model import Catalog, InputNode, MenuNode
from ivr.flow.model.menus import SPEECH_KINDS

# Twilio's `hints`: at most 500 entries of at most 100 characters (error 13330).
MAX_HINTS = 100  # phrases given (a menu needs a few dozen at most)
MAX_HINT_CHARS = 100  # a longer phrase is still matched, just not hinted

# Spoken digits, by the language's first part; digits written as numerals always count.
DIGIT_WORDS: Mapping[str, Mapping[str, str]] = {
    "en": {
        "zero": "0",
        "one": "1",
        "two": "2",
        "three": "3",
        "four": "4",
        "five": "5",
        "six": "6",
        "seven": "7",
        "eight": "8",
        "nine": "9",
    },
    "es": {
        "cero": "0",
        "uno": "1",
        "dos": "2",
        "tres": "3",
        "cuatro": "4",
        "cinco": "5",
        "seis": "6",
        "siete": "7",
        "ocho": "8",
        "nueve": "9",
    },
}


def words(text: str) -> list[str]:
    """`text` as lower-case words without accents or punctuation ("¿Sí, señor?" → si senor)."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    kept = "".join(
        char if char.isalnum() else " " for char in decomposed if not unicodedata.combining(char)
    )
    return kept.split()


def phrases(text: str) -> list[str]:
    """The phrases of a speech prompt's text: comma-separated, blanks left out."""
    return [phrase.strip() for phrase in text.split(",") if phrase.strip()]


def hints(texts: Iterable[str]) -> str:
    """Twilio's `hints`: every option's phrases, once each, comma-separated."""
    seen: dict[str, None] = {}
    for text in texts:
        for phrase in phrases(text):
            hint = " ".join(phrase.split())
            if len(hint) <= MAX_HINT_CHARS:
                seen.setdefault(hint, None)
    return ", ".join(list(seen)[:MAX_HINTS])


def match(said: str, options: Mapping[str, str], keys: Sequence[str], language: str) -> str | None:
    """The one key `said` chooses, or None (nothing matched, or several keys did).

    `options` maps a key to its phrases' text (in `language`); `keys` are the keys a
    spoken digit may choose (the menu's options).
    """
    heard = words(said)
    found: list[tuple[int, int, str]] = []  # (start, end, key) of each match
    for key, text in options.items():
        for phrase in phrases(text):
            wanted = words(phrase)
            found.extend((start, start + len(wanted), key) for start in _at(heard, wanted))
    digit_words = DIGIT_WORDS.get(language.split("-")[0].lower(), {})
    for position, word in enumerate(heard):
        digit = word if len(word) == 1 and word.isdigit() else digit_words.get(word)
        if digit is not None and digit in keys:
            found.append((position, position + 1, digit))
    chosen = {
        key
        for start, end, key in found
        if not any(
            other != key and s <= start and end <= e and (e - s) > (end - start)
            for s, e, other in found
        )
    }
    return chosen.pop() if len(chosen) == 1 else None


def _at(heard: Sequence[str], wanted: Sequence[str]) -> list[int]:
    """Where the words `wanted` appear together in `heard`."""
    if not wanted:
        return []
    size = len(wanted)
    return [
        start
        for start in range(len(heard) - size + 1)
        if list(heard[start : start + size]) == list(wanted)
    ]


# ------------------------------------------------------------------ for the engine


def listens(node: InputNode) -> bool:
    """Whether `node`'s prompt listens for speech as well as keys. Only the kinds of
    SPEECH_KINDS can: digits, codes and phone numbers are keypad-only whatever a flow
    file says (the loader refuses `speech` on them, and nothing here would read it)."""
    return isinstance(node, MenuNode) and bool(node.speech)


assert (MenuNode,) == SPEECH_KINDS, "listens() and choose() read a menu's speech"


def option_texts(node: MenuNode, catalog: Catalog, language: str) -> dict[str, str]:
    """{key: its phrases' text} of a menu with speech, in `language`."""
    return {key: catalog.text(language, prompt) for key, prompt in node.speech.items()}


def choose(node: InputNode, said: str, catalog: Catalog, language: str) -> str | None:
    """The key `said` chooses at `node` (which listens), or None."""
    assert isinstance(node, MenuNode)
    return match(said, option_texts(node, catalog, language), list(node.options), language)
