"""The whisper: who the caller is, how and when they were verified, and the risk flags."""

from __future__ import annotations

from pathlib import Path

from ivr.agent.whisper import whisper_says
from ivr.flow.engine import AccountView
from ivr.flow.loader import load_definitions
from ivr.flow.state import CallState

ROOT = Path(__file__).resolve().parent.parent
CATALOG = load_definitions(ROOT / "flows", ROOT / "prompts", "US").catalog
JANE = AccountView(1, "10004321", "Jane Doe", "+14155550100")
AT = 1_000_000.0


def verified(**changes: object) -> CallState:
    state = CallState("CA" + "1" * 32, "support", "v1", "en-US", "menu", AT, account_id=1)
    state.verify("account_digits", AT)
    state.verify("code_voice", AT + 30)
    state.transfer_reason = "caller_request"
    for name, value in changes.items():
        setattr(state, name, value)
    return state


def text(key: str, **values: str) -> str:
    raw = CATALOG.text("en-US", key)
    return raw.format(**values) if values else raw


def test_the_whisper_says_how_long_ago_the_code_was_checked() -> None:
    (summary, accept) = whisper_says(verified(), JANE, CATALOG, "en-US", now=AT + 30 + 185)
    assert summary.text.endswith(
        f"{text('reason_caller_request')} {text('whisper_when', minutes='3')}"
    )
    assert text("method_code_voice") in summary.text
    assert accept.text == text("whisper_accept")


def test_a_code_checked_under_a_minute_ago_is_just_now() -> None:
    (summary, _) = whisper_says(verified(), JANE, CATALOG, "en-US", now=AT + 59)
    assert summary.text.endswith(text("whisper_when_now"))


def test_flags_follow_and_nothing_secret_is_said() -> None:
    state = verified(flags=["number_changed_recently", "code_to_new_number"])
    (summary, _) = whisper_says(state, JANE, CATALOG, "en-US", now=AT + 60)
    assert summary.text.endswith(
        " ".join(
            [
                text("whisper_flag_number_changed_recently"),
                text("whisper_flag_code_to_new_number"),
            ]
        )
    )
    assert "10004321" not in summary.text and "4155550100" not in summary.text


def test_an_unverified_caller_gets_no_name_and_no_time() -> None:
    state = verified(verification="digits", methods=[("account_digits", AT)])
    (summary, _) = whisper_says(state, JANE, CATALOG, "en-US", now=AT + 600)
    assert "Jane" not in summary.text
    assert summary.text == text("whisper_unverified", reason=text("reason_caller_request"))


def test_account_digits_locked_is_said_in_the_agents_language() -> None:
    """A call sent on because its account digits are locked: the agent hears so, and no name."""
    state = CallState("CA" + "2" * 32, "support", "v1", "es-US", "agent_unverified", AT)
    state.failure, state.flags = "digits_locked", ["digits_locked"]
    state.transfer_reason = "verification_failed"
    (summary, _) = whisper_says(state, None, CATALOG, "en-US", now=AT)
    assert "account digits locked" in summary.text.lower()
    assert summary.text == " ".join(
        f"{text('whisper_unverified', reason=text('reason_verification_failed'))} "
        f"{text('whisper_flag_digits_locked')}".split()
    )
    (spanish, _) = whisper_says(state, None, CATALOG, "es-US", now=AT)
    assert "dígitos de cuenta bloqueados" in spanish.text.lower()
