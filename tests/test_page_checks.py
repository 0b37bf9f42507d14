"""The page checked by third-party tools from npm: axe-core for accessibility, fast-check for the renderer.

Both are installed at test time into a temporary directory (never a dependency of the project). axe-core is
injected into real pages in headless Chromium (in contexts that bypass the page's CSP, which would refuse
an injected script); fast-check drives ``static/markdown.js`` under Node.
"""

from __future__ import annotations

import json
import os
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


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_nothing_serious_on_the_login_room_and_phone_views(
    browser: Browser, server: ServerThread, node_modules: Path, scheme: str
) -> None:
    axe = node_modules / "axe-core" / "axe.min.js"
    with clients(server.base_url, "bob") as (bob,):
        bob.join("general")
        bob.send_message("**Deploy** notes: `make release`, see https://example.org/notes @alice", room="general")
        for width, height in ((1100, 720), (375, 700)):
            context = browser.new_context(
                viewport={"width": width, "height": height},
                bypass_csp=True,
                color_scheme=scheme,  # type: ignore[arg-type]
            )
            try:
                page = context.new_page()
                page.goto(server.base_url)
                expect(page.get_by_role("button", name="Log in", exact=True)).to_be_visible()
                # The login view, with an error showing (its colour is one that was too faint in dark mode).
                page.get_by_role("button", name="Log in", exact=True).click()
                expect(page.locator("#login-error")).not_to_be_empty()
                found = serious_violations(page, axe)
                assert found == [], f"login view, {width}px, {scheme}: {json.dumps(found, indent=1)}"
                name = f"axe{width}{scheme}"
                page.get_by_label("Name", exact=True).fill(name)
                page.get_by_label("Password", exact=True).fill(password_for(name))
                page.get_by_role("button", name="Create account", exact=True).click()
                expect(page.locator("#connection")).to_have_text("Connected")
                page.get_by_role("textbox", name="Room to join or create").fill("general")
                page.get_by_role("button", name="Join", exact=True).click()
                expect(page.locator("#conv-title")).to_have_text("#general")
                box = page.get_by_role("textbox", name="Message", exact=True)
                box.fill("my own message, with its time")
                box.press("Enter")
                expect(page.locator("#messages li.message.own:not(.pending)")).to_have_count(1)
                expect(page.locator("#messages li.message.other").first).to_be_visible()
                found = serious_violations(page, axe)
                assert found == [], f"room view, {width}px, {scheme}: {json.dumps(found, indent=1)}"
            finally:
                context.close()
