"""What the browser tests share: Debian's chromium under Playwright, the test app on a real
HTTP server in a thread, a page that fails its test on any script error, console error
or Content-Security-Policy violation, signing in through the staff form, and screenshots.

Playwright cannot download its own browser here, so the tests use /usr/bin/chromium
(`apt-get install chromium`; .ci/run does it). Without it or the playwright package they
skip, except under CI (the `CI` variable), where they fail.

tests/conftest.py loads this module as a plugin, so a test names the fixtures it needs
(`page`, `problems`, ...) and imports the helpers; a module may override `app` to serve
another app. The browser starts only for a module that asks for it, once per module.
Screenshots go to tests/artifacts/<folder>/ (git-ignored), or to
$IVR_TEST_ARTIFACTS/<folder>/ when set, and are kept after the run.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from agent_kit import PASSWORD
from flask import Flask
from werkzeug.serving import make_server

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("IVR_TEST_ARTIFACTS") or Path(__file__).parent / "artifacts")
WAIT_MS = 15_000  # what `expect` waits for by default: a slow CI machine gets room
VIEWPORT = {"width": 1280, "height": 900}

# Chromium reports a CSP violation on the console too, but only as text; this listener,
# added before any page script runs, names the directive and what was blocked.
_CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", function (event) {
  console.error("CSP violation: " + event.violatedDirective + " blocked " +
    (event.blockedURI || "inline code") + " at " + event.sourceFile + ":" + event.lineNumber);
});
"""


def unavailable(reason: str) -> NoReturn:
    """Skip for want of the browser, or fail under CI, which must run every test."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so the browser tests may not skip)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Debian chromium under Playwright, shared by the module's tests."""
    if importlib.util.find_spec("playwright") is None:
        unavailable("the playwright package is not installed: pip install -e '.[dev]'")
    if not CHROMIUM.exists():
        unavailable(f"no chromium at {CHROMIUM}: apt-get install chromium")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield launched
        launched.close()


@pytest.fixture
def server(app: Flask) -> Iterator[str]:
    """The test's app on a real HTTP server (127.0.0.1, a free port), in a thread."""
    http = make_server("127.0.0.1", 0, app, threaded=True)
    # Request threads are tracked (not daemons), so the teardown below waits for a request
    # the browser still had in flight: one finishing after the app's Redis clients were
    # closed would open a new connection that nobody closes (a ResourceWarning at exit).
    http.daemon_threads = False
    thread = threading.Thread(target=http.serve_forever, name="browser-test-server", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{http.server_port}"
    http.shutdown()
    thread.join(timeout=10)
    for handler in list(getattr(http, "_threads", None) or []):
        handler.join(timeout=10)
    http.block_on_close = False  # joined above, each with a bound: never hang here
    http.server_close()


@pytest.fixture
def problems() -> list[str]:
    """Script errors, console errors and CSP violations of the test's page; a test that
    provokes one on purpose takes it out with `expected`."""
    return []


@pytest.fixture
def page(browser: Any, server: str, problems: list[str]) -> Iterator[Any]:
    """A fresh browser page on the test's server; fails the test on any script error,
    console error or CSP violation seen while it was open."""
    context = browser.new_context(base_url=server, viewport=VIEWPORT)
    context.set_default_timeout(WAIT_MS)
    context.add_init_script(_CSP_LISTENER)
    opened = context.new_page()
    opened.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    opened.on(
        "console",
        lambda message: (
            problems.append(f"console: {message.text}") if message.type == "error" else None
        ),
    )
    yield opened
    context.close()
    assert problems == []


def expected(problems: list[str], *seen: str) -> None:
    """Take problems the test provoked on purpose out of the list, checking each was seen."""
    for item in seen:
        assert item in problems, f"expected {item!r} among {problems!r}"
        problems.remove(item)


def failed_load(status: int, reason: str) -> str:
    """How chromium's console reports an answer with an error status (e.g. a refusal)."""
    return f"console: Failed to load resource: the server responded with a status of {status} ({reason})"


def sign_in(page: Any, username: str, password: str = PASSWORD) -> None:
    """Fill in and send the staff sign-in form the page shows (the agent page's)."""
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def shot(page: Any, folder: str, name: str) -> Path:
    """Save a full-page screenshot under the artifacts' `folder`, for people to look at."""
    directory = ARTIFACTS / folder
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path
