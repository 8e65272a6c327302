"""What the agent hears before being connected: who, how verified, and why.

Pure: built from the call state, the account (if verified) and the prompts. It
never includes a code, a full account number or a full phone number. Risk flags
(caller ID not on file, a recently changed number, a code lockout, account
digits locked after too many wrong entries across calls) follow the summary.
"""

from __future__ import annotations

from collections.abc import Mapping

from ivr.flow.engine import AccountView
from ivr.flow.instructions import Say
from ivr.flow.model import Catalog
from ivr.flow.state import CallState
from ivr.phone import spoken_digits


def whisper_says(
    state: CallState | None,
    account: AccountView | None,
    catalog: Catalog,
    language: str,
    now: float | None = None,
) -> list[Say]:
    """The whisper, as Say instructions in the agents' language.

    Without a state (lost or expired) the caller is announced as unverified.
    `now` lets the whisper say how long ago the code was checked.
    """
    texts = catalog.languages[language].texts
    reason_key = f"reason_{state.transfer_reason}" if state and state.transfer_reason else ""
    reason = texts.get(reason_key, "")
    # Only full verification (digits and a code) is announced as verified: digits
    # alone prove little (caller ID is spoofable, four digits are guessable).
    if state is not None and state.verification == "code" and account is not None:
        method = " and ".join(texts.get(f"method_{name}", name) for name, _ in state.methods)
        summary = texts["whisper_verified"].format(
            name=account.name,
            first_name=account.first_name,
            account_last4=spoken_digits(account.number[-4:]),
            method=method,
            reason=reason,
        )
        summary = " ".join([summary, _when(state, texts, now)])
    else:
        summary = texts["whisper_unverified"].format(
            name="", first_name="", account_last4="", method="", reason=reason
        )
    flags = list(state.flags) if state is not None else []
    if state is not None and state.failure == "locked":
        flags.append("locked")
    # Risk flags: what the agent should weigh before trusting the verification.
    warnings = [texts[f"whisper_flag_{flag}"] for flag in flags if f"whisper_flag_{flag}" in texts]
    voice = catalog.voice(language)
    return [
        Say(" ".join(" ".join([summary, *warnings]).split()), language, voice),
        Say(texts["whisper_accept"], language, voice),
    ]


def _when(state: CallState, texts: Mapping[str, str], now: float | None) -> str:
    """How long ago the code was checked: a code from long ago proves less."""
    checked = [at for method, at in state.methods if method.startswith("code")]
    if not checked or now is None:
        return ""
    minutes = int(max(0.0, now - checked[-1]) // 60)
    if minutes < 1:
        return texts["whisper_when_now"]
    return texts["whisper_when"].format(minutes=str(minutes))
