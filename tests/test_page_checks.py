"""The page checked by third-party tools from npm: axe-core for accessibility, fast-check for the renderer.

Both are installed at test time into a temporary directory (never a dependency of the project). axe-core is
injected into real pages in headless Chromium (in contexts that bypass the page's CSP, which would refuse
an injected script); fast-check drives ``static/markdown.js`` under Node.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from .support import ServerThread, clients, password_for

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parent.parent
NPM_PACKAGES = ("axe-core@4", "fast-check@3")
# Impacts that fail the check; "moderate" and "minor" findings are reported but allowed.
BLOCKING = ("serious", "critical")


@pytest.fixture(scope="module")
def node_modules(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed")
    prefix = tmp_path_factory.mktemp("npm")
    done = subprocess.run(
        [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--silent", *NPM_PACKAGES],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"npm install failed (no registry?): {done.stderr[-500:]}")
    yield prefix / "node_modules"


def test_no_input_makes_the_renderer_produce_a_script_a_handler_or_an_unsafe_link(node_modules: Path) -> None:
    node = shutil.which("node")
    assert node is not None
    done = subprocess.run(
        [node, "--test", str(ROOT / "tests" / "js" / "markdown.property.mjs")],
        env={**os.environ, "FAST_CHECK_MODULES": str(node_modules), "PROPERTY_RUNS": "3000"},
        capture_output=True, text=True, timeout=300, check=False, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "# pass 3" in done.stdout and "# fail 0" in done.stdout


def serious_violations(page: Page, axe: Path) -> list[dict[str, Any]]:
    """axe-core's findings on the page as it is now, serious and critical ones only (with their nodes)."""
    page.add_script_tag(path=str(axe))
    found: list[dict[str, Any]] = page.evaluate(
        """async () => {
            const result = await axe.run(document, { resultTypes: ["violations"] });
            return result.violations.map((v) => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map((n) => n.target.join(" ") + ": " + (n.failureSummary || "")).slice(0, 5),
            }));
        }"""
    )
    return [violation for violation in found if violation["impact"] in BLOCKING]


# The page at desktop and at phone width.
WIDTHS = ((1100, 720), (375, 700))


def pages(browser: Browser, scheme: str) -> Iterator[tuple[int, Page]]:
    """A fresh page (its own storage, the CSP bypassed so that axe can be injected) at each width in turn."""
    for width, height in WIDTHS:
        context = browser.new_context(
            viewport={"width": width, "height": height},
            bypass_csp=True,
            color_scheme=scheme,  # type: ignore[arg-type]
        )
        try:
            page = context.new_page()
            yield width, page
        finally:
            context.close()


def create_account(page: Page, name: str) -> None:
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Password", exact=True).fill(password_for(name))
    page.get_by_role("button", name="Create account", exact=True).click()
    expect(page.locator("#connection")).to_have_text("Connected")


def assert_clean(page: Page, axe: Path, what: str) -> None:
    found = serious_violations(page, axe)
    assert found == [], f"{what}: {json.dumps(found, indent=1)}"


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_nothing_serious_on_the_login_room_and_phone_views(
    browser: Browser, server: ServerThread, node_modules: Path, scheme: str
) -> None:
    axe = node_modules / "axe-core" / "axe.min.js"
    with clients(server.base_url, "bob") as (bob,):
        bob.join("general")
        bob.send_message("**Deploy** notes: `make release`, see https://example.org/notes @alice", room="general")
        for width, page in pages(browser, scheme):
            page.goto(server.base_url)
            expect(page.get_by_role("button", name="Log in", exact=True)).to_be_visible()
            # The login view, with an error showing (its colour is one that was too faint in dark mode).
            page.get_by_role("button", name="Log in", exact=True).click()
            expect(page.locator("#login-error")).not_to_be_empty()
            assert_clean(page, axe, f"login view, {width}px, {scheme}")
            create_account(page, f"axe{width}{scheme}")
            page.get_by_role("textbox", name="Room to join or create").fill("general")
            page.get_by_role("button", name="Join", exact=True).click()
            expect(page.locator("#conv-title")).to_have_text("#general")
            box = page.get_by_role("textbox", name="Message", exact=True)
            box.fill("my own message, with its time")
            box.press("Enter")
            expect(page.locator("#messages li.message.own:not(.pending)")).to_have_count(1)
            expect(page.locator("#messages li.message.other").first).to_be_visible()
            assert_clean(page, axe, f"room view, {width}px, {scheme}")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_nothing_serious_in_the_room_tools_the_dialogs_and_edits(
    browser: Browser, server: ServerThread, node_modules: Path, scheme: str
) -> None:
    """The rooms and moderation parts of the page: the new-room dialog, a private room's member list with its
    roles and tools, the confirmation dialog, a message being edited, an edited one and a tombstone."""
    axe = node_modules / "axe-core" / "axe.min.js"
    with clients(server.base_url, "bob") as (bob,):
        for width, page in pages(browser, scheme):
            name, room = f"mod{width}{scheme}", f"vault-{width}-{scheme}"
            page.goto(server.base_url)
            create_account(page, name)
            page.get_by_role("button", name="New room…").click()
            dialog = page.get_by_role("dialog", name="New room")
            dialog.get_by_label("Room name").fill(room)
            dialog.get_by_label("Topic (optional)").fill("keys and codes")
            dialog.get_by_role("checkbox", name=re.compile("Private")).check()
            assert_clean(page, axe, f"new room dialog, {width}px, {scheme}")
            dialog.get_by_role("button", name="Create").click()
            expect(page.locator("#conv-topic")).to_have_text("keys and codes")
            page.locator("#members summary").click()
            page.get_by_label("Name of the person to invite").fill("bob")
            page.get_by_role("button", name="Invite", exact=True).click()
            bob.expect("joined", room=room)
            said = bob.send_message("**status** and @" + name, room=room)
            expect(page.locator("#member-list [data-member=bob]")).to_have_count(1)
            assert_clean(page, axe, f"member list and tools, {width}px, {scheme}")
            page.keyboard.press("Escape")
            box = page.get_by_role("textbox", name="Message", exact=True)
            box.fill("a first line")
            box.press("Enter")
            expect(page.locator("#messages li.message.own:not(.pending)")).to_have_count(1)
            box.press("ArrowUp")
            expect(page.locator("#editing-banner")).to_be_visible()
            box.fill("a first line, **edited**")
            assert_clean(page, axe, f"editing, {width}px, {scheme}")
            box.press("Enter")
            expect(page.locator("#messages .edited")).to_have_count(1)
            theirs = page.locator(f"#messages li[data-seq='{said['seq']}']")
            theirs.hover()
            theirs.get_by_role("button", name="Delete message").click()
            expect(page.locator("#confirm-dialog")).to_be_visible()
            assert_clean(page, axe, f"confirm dialog, {width}px, {scheme}")
            page.locator("#confirm-dialog").get_by_role("button", name="Delete", exact=True).click()
            expect(page.locator("#messages .text.deleted")).to_have_text("message deleted")
            assert_clean(page, axe, f"edited and deleted, {width}px, {scheme}")
