"""The ops console in a real browser (Debian's chromium under Playwright, the fixtures of
tests/browser_kit.py), as an ops user who never sees YAML: change the greeting in both
languages, meet the placeholder check, review the diff, publish, hear it in the call
simulator, roll back; be refused a change that opens the number change to unverified
callers; the default flow's diagram drawn without overlapping labels at 1280x800; the
simulator's keypad used with the keyboard alone; placeholders checked as you type.

Every page is signed in through the real sign-in form, and any script error, console
error or CSP violation fails the test. Screenshots of each page go to
tests/artifacts/ops/ (or $IVR_TEST_ARTIFACTS/ops/); `make screenshots` copies them into
docs/screenshots/ for the README.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from agent_kit import add_user
from browser_kit import expected, failed_load, shot, sign_in
from flask import Flask

ROOT = Path(__file__).resolve().parent.parent
SHOTS = "ops"
OLD_EN = "Thank you for calling Example support."
NEW_EN = "Welcome to the new support line."
NEW_ES = "Bienvenido a la nueva línea de asistencia."
SLIP = "Hello {first_name}, thanks for calling."  # account data before any verification
EPSILON = 0.5  # SVG user units two boxes may share (rounding of the layout's numbers)


@pytest.fixture
def app(make_app: Any, tmp_path: Path) -> Flask:
    """The service on a scratch copy of the working files, with a first version published
    from the command line (as a deploy does), and olga, an ops user."""
    shutil.copytree(ROOT / "flows", tmp_path / "flows")
    shutil.copytree(ROOT / "prompts", tmp_path / "prompts")
    built: Flask = make_app(
        IVR_FLOWS_DIR=str(tmp_path / "flows"), IVR_PROMPTS_DIR=str(tmp_path / "prompts")
    )
    published = built.test_cli_runner().invoke(args=["flows", "publish", "-m", "first"])
    assert published.exit_code == 0, published.output
    add_user(built, "olga", role="ops")
    return built


def expect(target: Any) -> Any:
    """Playwright's `expect` (imported late: the module loads without playwright)."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def open_signed_in(page: Any, path: str) -> None:
    """Ask for a console page, get the sign-in form, sign in as olga, land on the page."""
    page.goto(path)
    expect(page).to_have_url(re.compile(r"/agent/login\?next="))
    sign_in(page, "olga")
    expect(page).to_have_url(re.compile(re.escape(path) + "$"))
    expect(page.get_by_test_id("signed-in-as")).to_have_text("olga")


def live_version(page: Any) -> str:
    """The support flow's live version, as the flows page shows it."""
    in_menu(page, "Flows")
    version: str = page.get_by_test_id("live-version").inner_text()
    return version


def start_draft(page: Any) -> None:
    """From a flow's page: start a draft of it from the live version."""
    page.get_by_role("link", name="Start a draft").click()
    expect(page.get_by_test_id("no-draft")).to_be_visible()
    page.get_by_role("button", name="Start a draft from the live version").click()
    expect(page.get_by_test_id("revision")).to_have_text("1")


def in_draft_nav(page: Any, link: str) -> None:
    """Follow a link of the draft pages' own menu (Draft, Review & publish, History)."""
    page.get_by_role("navigation", name="Draft").get_by_role("link", name=link, exact=True).click()


def in_menu(page: Any, link: str) -> None:
    """Follow a link of the console's menu (Flows, Simulator, Audit)."""
    page.get_by_role("navigation", name="Console").get_by_role(
        "link", name=link, exact=True
    ).click()


def simulate_call(page: Any, version: str) -> Any:
    """From the simulator's setup: the live version (which must be `version`), Jane Doe (a
    demo customer) calling, in English; the call's transcript, once it asks for her
    account digits."""
    setup = page.get_by_test_id("start-form")
    setup.get_by_label(re.compile(r"^Flow\b")).select_option("support")
    setup.get_by_label(re.compile(r"^Version\b")).select_option("live")
    setup.get_by_label(re.compile(r"^Caller\b")).select_option(label="Jane Doe (+1415•••0100)")
    setup.get_by_label(re.compile(r"^Language\b")).select_option("en-US")
    setup.get_by_role("button", name="Start call").click()
    expect(page.get_by_test_id("current-node")).to_contain_text("last4")
    expect(page.get_by_role("heading", name=f"support · version {version[:12]}")).to_be_visible()
    return page.get_by_test_id("transcript")


def test_change_the_greeting_publish_hear_it_and_roll_back(page: Any) -> None:
    """The issue's journey, in the browser only."""
    open_signed_in(page, "/ops/")
    first = page.get_by_test_id("live-version").inner_text()
    shot(page, SHOTS, "01-flows")

    # The flow drawn, a node selected: its fields and prompts in both languages.
    page.get_by_role("link", name="support", exact=True).click()
    page.get_by_role("link", name=re.compile(r"^welcome: say\b")).click()
    panel = page.get_by_role("complementary", name="welcome")
    expect(panel.get_by_test_id("node-type")).to_have_text("say")
    expect(panel.locator('[data-language="en-US"] q')).to_have_text(OLD_EN)
    expect(panel.locator('[data-language="es-US"] q')).not_to_be_empty()
    expect(page.locator('svg.flow-diagram [data-node="welcome"]')).to_have_class(
        re.compile(r"\bis-selected\b")
    )
    shot(page, SHOTS, "02-flow-diagram-node")

    start_draft(page)
    expect(page.get_by_test_id("draft-ok")).to_be_visible()
    shot(page, SHOTS, "03-draft")

    # A greeting that names the caller before anyone is verified: saved as a draft, the
    # problem beside the English field, with a link to the node that speaks it.
    page.get_by_test_id("prompt-list").get_by_role("link", name="welcome", exact=True).click()
    english = page.get_by_label("en-US", exact=True)
    spanish = page.get_by_label("es-US", exact=True)
    english.fill(SLIP)
    page.get_by_role("button", name="Save").click()
    error = page.get_by_test_id("error-en-US")
    expect(error).to_contain_text("{first_name}")
    expect(english).to_have_attribute("aria-invalid", "true")
    expect(english).to_have_value(SLIP)
    expect(page.get_by_test_id("error-es-US")).to_have_count(0)
    node_link = error.get_by_role("link", name="node welcome")
    expect(node_link).to_have_attribute("href", "/ops/flows/support/draft/nodes/welcome")
    shot(page, SHOTS, "04-prompt-error")
    node_link.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Node welcome say")
    page.go_back()

    english.fill(NEW_EN)
    spanish.fill(NEW_ES)
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".flash.ok")).to_contain_text("passes every check")
    expect(page.get_by_test_id("error-en-US")).to_have_count(0)
    expect(english).not_to_have_attribute("aria-invalid", "true")

    # The review shows what changed, in both languages; then publish with a message.
    in_draft_nav(page, "Review & publish")
    diff = page.get_by_test_id("diff")
    changes = diff.get_by_test_id("prompt-change")
    expect(changes).to_have_count(2)
    expect(changes.filter(has_text="en-US").locator("del")).to_have_text(OLD_EN)
    expect(changes.filter(has_text="en-US").locator("ins")).to_have_text(NEW_EN)
    expect(changes.filter(has_text="es-US").locator("ins")).to_have_text(NEW_ES)
    page.get_by_label("Message").fill("A new greeting")
    shot(page, SHOTS, "05-review")
    page.get_by_role("button", name="Publish").click()

    history = page.get_by_test_id("history")
    live_row = history.locator("tr.live")
    expect(live_row).to_contain_text("A new greeting")
    expect(live_row).to_contain_text("ops:olga")
    expect(live_row.get_by_test_id("live")).to_be_visible()
    second = live_row.get_attribute("data-version")
    assert second and second != first
    expect(page.locator(".flash.ok")).to_contain_text(f"Version {second} is live.")
    shot(page, SHOTS, "06-history")

    # The next simulated call hears the new greeting.
    in_menu(page, "Simulator")
    transcript = simulate_call(page, second)
    expect(transcript.locator('[data-kind="say"]').first).to_contain_text(NEW_EN)
    expect(transcript).not_to_contain_text(OLD_EN)
    expect(page.locator('svg.flow-diagram .is-current[data-node="last4"]')).to_have_count(1)
    shot(page, SHOTS, "08-simulator-mid-call")

    # Roll back to the first version, after a confirmation.
    in_menu(page, "Flows")
    page.get_by_role("link", name="history", exact=True).click()
    old_row = page.get_by_test_id("history").locator(f'tr[data-version="{first}"]')
    old_row.get_by_role("link", name="Roll back to this version").click()
    confirm = page.get_by_test_id("confirm-rollback")
    expect(confirm).to_contain_text(f"Make version {first}")
    expect(confirm).to_contain_text(f"live instead of {second}")
    shot(page, SHOTS, "07-rollback-confirmation")
    confirm.get_by_role("button", name=f"Make {first} live").click()
    expect(page.locator(".flash.ok")).to_contain_text(f"Version {first} is live again")
    live_row = page.get_by_test_id("history").locator("tr.live")
    expect(live_row).to_have_attribute("data-version", first)
    assert live_version(page) == first

    # A new call hears the old greeting again.
    in_menu(page, "Simulator")
    transcript = simulate_call(page, first)
    expect(transcript.locator('[data-kind="say"]').first).to_contain_text(OLD_EN)
    expect(transcript).not_to_contain_text(NEW_EN)

    # The audit lists olga's draft, publish and rollback.
    in_menu(page, "Audit")
    page.get_by_label("Person").select_option("olga")
    page.get_by_role("button", name="Show").click()
    expect(page).to_have_url(re.compile(r"[?&]person=olga\b"))
    events = page.get_by_test_id("events").locator("tbody tr")
    for action in ("flow.published", "flow.rolled_back", "ops.draft_edited"):
        expect(events.and_(page.locator(f'[data-action="{action}"]')).first).to_be_visible()
    who = events.locator("td:nth-child(2)")  # the Who column
    expect(who.filter(has_not_text="olga")).to_have_count(0)
    shot(page, SHOTS, "09-audit-by-person")


def test_publishing_a_way_to_the_number_change_without_verification_is_refused(
    page: Any, problems: list[str]
) -> None:
    """A language menu whose wrong key leads straight to the new-number step: saved as a
    draft, listed and highlighted on the diagram, and refused at Publish."""
    open_signed_in(page, "/ops/flows/support")
    first = page.get_by_test_id("version").inner_text()
    start_draft(page)

    page.get_by_test_id("node-list").get_by_role("link", name="language", exact=True).click()
    invalid = page.get_by_label("invalid", exact=True)
    expect(invalid).to_have_value("language")
    invalid.select_option("new_number")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".flash")).to_contain_text("problem")

    in_draft_nav(page, "Draft")
    listed = page.get_by_test_id("problems")
    finding = listed.get_by_role("listitem").filter(has_text="changes the phone number")
    expect(finding).to_contain_text("reachable without passing both an account-digits check")
    expect(finding).to_contain_text("welcome → language[invalid] → new_number")
    expect(finding.get_by_role("link", name="node new_number")).to_have_attribute(
        "href", "/ops/flows/support/draft/nodes/new_number"
    )
    expect(page.get_by_test_id("draft-ok")).to_have_count(0)
    diagram = page.locator("svg.flow-diagram")
    expect(diagram.locator('[data-node="new_number"].has-finding')).to_have_count(1)
    expect(diagram.locator('[data-node="language"].on-finding')).to_have_count(1)
    expect(
        diagram.locator('path.edge.on-finding[data-from="language"][data-to="new_number"]')
    ).to_have_count(1)
    diagram.locator('[data-node="new_number"]').scroll_into_view_if_needed()
    shot(page, SHOTS, "10-draft-with-a-finding")

    in_draft_nav(page, "Review & publish")
    page.get_by_label("Message").fill("Shortcut for callers who press a wrong key")
    page.get_by_role("button", name="Publish").click()
    refused = page.get_by_test_id("refused")
    expect(refused.get_by_role("heading")).to_have_text("Not published")
    # The bypass, the menu greeting by name, and the verified agent transfer's call-back
    # offer (through new_number's no_input exit to the menu) reachable unverified.
    expect(refused).to_contain_text("The draft has 3 problem(s); fix them first.")
    expect(page.get_by_test_id("problems")).to_contain_text(
        "changes the phone number, but is reachable without passing both"
    )
    expect(page.get_by_label("Message")).to_have_value("Shortcut for callers who press a wrong key")
    shot(page, SHOTS, "11-publish-refused")
    expected(problems, failed_load(409, "CONFLICT"))

    assert live_version(page) == first
    page.get_by_role("link", name="support", exact=True).click()
    expect(page.get_by_test_id("version")).to_have_text(first)
    page.get_by_role("link", name=re.compile(r"^language: choose_language\b")).click()
    expect(page.locator('#node-panel a[data-to="new_number"]')).to_have_count(0)


# Every label's and node box's bounding box in the SVG's own units (getBBox: the same
# whatever the zoom), with the node it belongs to and its text for the messages.
_BOXES = """svg => {
  const box = (element, text) => {
    const b = element.getBBox();
    const node = element.closest("[data-node]");
    return {text, node: node ? node.dataset.node : null,
            x: b.x, y: b.y, right: b.x + b.width, bottom: b.y + b.height};
  };
  return {
    labels: [...svg.querySelectorAll("text")].map(t => box(t, t.firstChild.textContent)),
    nodes: [...svg.querySelectorAll("rect.node-box")].map(r => box(r, "")),
  };
}"""


def _overlapping(boxes: list[dict[str, Any]]) -> list[str]:
    """Pairs of boxes that share more than EPSILON in both directions."""
    found = []
    for i, one in enumerate(boxes):
        for other in boxes[i + 1 :]:
            wide = min(one["right"], other["right"]) - max(one["x"], other["x"])
            high = min(one["bottom"], other["bottom"]) - max(one["y"], other["y"])
            if wide > EPSILON and high > EPSILON:
                found.append(f"{one['node']}:{one['text']!r} and {other['node']}:{other['text']!r}")
    return found


def test_the_default_flow_is_drawn_without_overlapping_labels_at_1280_by_800(page: Any) -> None:
    """All 48 nodes of flows/support.yaml at 1280x800: no two labels overlap, no two node
    boxes overlap, and each label stays inside its own node's box."""
    page.set_viewport_size({"width": 1280, "height": 800})
    open_signed_in(page, "/ops/flows/support")
    svg = page.locator("svg.flow-diagram")
    expect(svg.locator("a.node")).to_have_count(48)
    page.evaluate("document.fonts.ready")  # the labels measured in the font they are drawn in
    boxes = svg.evaluate(_BOXES)
    labels, nodes = boxes["labels"], boxes["nodes"]
    assert len(nodes) == 48
    assert len(labels) > 2 * 48  # a title and a detail per node, and the exits
    assert all(label["right"] - label["x"] > 0 for label in labels)
    assert _overlapping(labels) == []
    assert _overlapping(nodes) == []
    by_node = {node["node"]: node for node in nodes}
    outside = [
        f"{label['node']}:{label['text']!r}"
        for label in labels
        if (home := by_node[label["node"]])
        and not (
            label["x"] >= home["x"] - EPSILON
            and label["right"] <= home["right"] + EPSILON
            and label["y"] >= home["y"] - EPSILON
            and label["bottom"] <= home["bottom"] + EPSILON
        )
    ]
    assert outside == []
    expect(svg).to_be_visible()
    shot(page, SHOTS, "12-diagram-1280x800")


def tab_to(page: Any, selector: str, *, back: bool = False, limit: int = 80) -> None:
    """Press Tab (Shift+Tab with `back`) until the focus is on `selector`, as a keyboard
    user moves through the page."""
    for _ in range(limit):
        if page.evaluate("s => document.activeElement.matches(s)", selector):
            expect(page.locator(f"{selector}:focus")).to_be_visible()
            return
        page.keyboard.press("Shift+Tab" if back else "Tab")
    raise AssertionError(f"{limit} presses of Tab never reached {selector}")


def press_to_send(page: Any, key: str) -> None:
    """Press a key that posts the phone's form, and wait for the answer to load (with its
    scripts: the next keys go to the new page)."""
    with page.expect_event("load"):
        page.keyboard.press(key)


def test_the_simulator_keypad_with_the_keyboard_alone(page: Any) -> None:
    """After signing in, no mouse: choose English and start a call, type the account
    digits and send, key in the texted code, press 2 on the keypad for an agent."""
    open_signed_in(page, "/ops/simulator")
    page.wait_for_load_state()
    transcript = page.get_by_test_id("transcript").locator("li")
    entry = page.get_by_test_id("entry")

    tab_to(page, "select#language")
    page.keyboard.type("en-US")
    expect(page.locator("select#language")).to_have_value("en-US")
    expect(page.locator("select#caller")).to_have_value("customer:0")  # Jane Doe
    tab_to(page, "button[data-testid=start-call]")
    press_to_send(page, "Enter")
    expect(page.get_by_test_id("current-node")).to_contain_text("last4")
    expect(entry).to_be_focused()
    started = transcript.count()
    assert started > 0

    page.keyboard.type("4321")
    expect(entry).to_have_value("4321")
    press_to_send(page, "Enter")
    expect(page.get_by_test_id("current-node")).to_contain_text("enter_code")
    expect(transcript.filter(has_text="Caller pressed").last).to_contain_text("4321")
    after_digits = transcript.count()
    assert after_digits > started

    code = page.get_by_test_id("code").get_attribute("data-code")
    assert code and code.isdigit()
    tab_to(page, f'button.keyin[data-code="{code}"]')
    page.keyboard.press("Enter")
    expect(entry).to_be_focused()
    expect(entry).to_have_value(code)
    shot(page, SHOTS, "13-simulator-keyboard")
    press_to_send(page, "Enter")
    expect(page.get_by_test_id("current-node")).to_contain_text("menu")
    expect(transcript.filter(has_text="Thank you, Jane.")).to_have_count(1)
    after_code = transcript.count()
    assert after_code > after_digits

    tab_to(page, 'button.key[data-key="2"]')
    page.keyboard.press(" ")
    expect(entry).to_have_value("2")
    tab_to(page, "button[data-testid=send]", back=True)
    press_to_send(page, "Enter")
    ended = page.get_by_test_id("call-ended")
    expect(ended.get_by_test_id("transferred")).to_be_visible()
    expect(transcript.filter(has_text="Caller pressed").last).to_contain_text("2")
    assert transcript.count() > after_code
    expect(page.get_by_test_id("new-call")).to_be_focused()


def test_the_prompt_page_checks_placeholders_as_you_type(page: Any) -> None:
    """A warning for an unknown placeholder while typing (before any save), gone once the
    text is right; the Speak buttons shown; the form saves."""
    open_signed_in(page, "/ops/flows/support")
    start_draft(page)
    page.goto("/ops/flows/support/draft/prompts/welcome")
    english = page.get_by_label("en-US", exact=True)
    english.fill("Hello {frist_name}, welcome.")
    warning = page.locator('ul.placeholder-check[data-for="text_0"]')
    expect(warning).to_contain_text("{frist_name} is not a placeholder this prompt may use")
    english.fill(NEW_EN)
    expect(warning.locator("li")).to_have_count(0)
    expect(page.get_by_role("button", name="Speak")).to_have_count(2)
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".flash.ok")).to_contain_text("passes every check")
    expect(english).to_have_value(NEW_EN)
