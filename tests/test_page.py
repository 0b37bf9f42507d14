"""The chat page in a real browser (headless Chromium): log in, join, send and receive."""

from __future__ import annotations

from playwright.sync_api import Browser, expect

from .support import ServerThread, clients

TIMEOUT_MS = 10_000


def test_page_logs_in_joins_sends_and_receives(browser: Browser, server: ServerThread) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        page.goto(server.base_url)
        page.get_by_role("textbox", name="Name").fill("webuser")
        page.get_by_label("Password").fill("webuser-password")
        page.get_by_role("button", name="Log in").click()
        page.get_by_role("button", name="Join").click()
        expect(page.get_by_role("status")).to_contain_text("#general", timeout=TIMEOUT_MS)
        with clients(server.base_url, "cli") as (cli,):
            cli.join("general")
            page.get_by_role("textbox", name="Message").fill("hello from the browser")
            page.get_by_role("button", name="Send").click()
            got = cli.expect("message", text="hello from the browser")
            assert got["from"] == "webuser" and got["room"] == "general"
            cli.send_message("hello from python", room="general")
            expect(page.get_by_role("list", name="Messages")).to_contain_text("hello from python", timeout=TIMEOUT_MS)
    finally:
        context.close()
