"""The `ivr` command reports a service that cannot boot in one line, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ivr.cli import main

MISSING = (
    "Error: Cannot start ivr: production needs these environment variables: "
    "TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, IVR_SECRET_KEY, IVR_PUBLIC_URL, DATABASE_URL, "
    "REDIS_URL"
)
COMMANDS = [
    ["db", "upgrade"],
    ["customers", "show", "10004321"],
    ["customers", "import", "customers.csv"],
    ["demo", "--reset"],
    ["outbox", "list"],
    ["users", "list"],
    ["call", "--from", "+14155550100"],
    ["routes"],
    ["calls", "list"],
]
# Every variable the service reads, so the developer's own environment cannot leak in.
CLEAN = {name: "" for name in os.environ if name.startswith(("IVR_", "TWILIO_"))}
CLEAN.update(DATABASE_URL="", REDIS_URL="")


def run(args: list[str], tmp_path: Path, **env: str) -> tuple[int, str]:
    csv = tmp_path / "customers.csv"
    csv.write_text("name,phone,account_number,email\n")
    args = [str(csv) if arg == "customers.csv" else arg for arg in args]
    result = CliRunner().invoke(main, args, env={**CLEAN, **env}, catch_exceptions=False)
    return result.exit_code, result.stderr


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_missing_production_settings_are_one_line_for_every_command(
    args: list[str], tmp_path: Path
) -> None:
    code, stderr = run(args, tmp_path, IVR_ENV="production")
    assert code == 1
    assert stderr.strip() == MISSING


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"IVR_ENV": "staging"}, "Error: Cannot start ivr: IVR_ENV must be 'development' or"),
        ({"IVR_CODE_TTL": "900"}, "Error: Cannot start ivr: IVR_CODE_TTL may be at most 600"),
        ({"DATABASE_URL": "mysql+nodriver://x/y"}, "Error: Cannot start ivr: DATABASE_URL is not"),
        ({"DATABASE_URL": "nonsense"}, "Error: Cannot start ivr: DATABASE_URL is not usable"),
        ({"REDIS_URL": "http://cache:6379"}, "Error: Cannot start ivr: REDIS_URL is not usable"),
        ({"IVR_AGENT_TARGET": "queue:"}, "Error: IVR_AGENT_TARGET:"),
        ({"IVR_FLOW": "nope"}, "Error: IVR_FLOW 'nope' is not among the flows"),
        ({"IVR_FLOWS_DIR": "/nonexistent"}, "Error: 1 problem(s) in flow definitions:"),
    ],
)
def test_each_kind_of_configuration_error_is_a_message(
    env: dict[str, str], message: str, tmp_path: Path
) -> None:
    code, stderr = run(["customers", "show", "10004321"], tmp_path, **env)
    assert code == 1
    assert stderr.startswith(message), stderr
    assert "Traceback" not in stderr


def test_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    # Port 9 (discard) on loopback: nothing listens, so the connection is refused at once.
    code, stderr = run(
        ["db", "upgrade"], tmp_path, DATABASE_URL="postgresql://nobody@127.0.0.1:9/ivr"
    )
    assert code == 1
    assert stderr.startswith("Error: cannot reach the database (DATABASE_URL): OperationalError:")
    assert len(stderr.strip().splitlines()) == 1


def test_the_installed_command_prints_no_traceback(tmp_path: Path) -> None:
    """Through the real entry point: Flask's own command listing included (`--help`)."""
    env = {**os.environ, **CLEAN, "IVR_ENV": "production"}
    ivr = [sys.executable, "-c", "from ivr.cli import main; main()"]
    for args in (["db", "upgrade"], ["--help"]):
        done = subprocess.run([*ivr, *args], env=env, capture_output=True, text=True, cwd=tmp_path)
        assert "Traceback" not in done.stderr, done.stderr
        assert done.stderr.strip().splitlines()[0] == MISSING
    assert done.returncode == 0  # --help still lists the commands
