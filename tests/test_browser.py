"""The chat page in a real browser (headless Debian Chromium driven by Playwright) against a real server.

Every wait is for something the page or the server shows (``expect``, ``wait_for_function``, a frame), with a
timeout; nothing sleeps to synchronise.
"""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Dialog,
    Locator,
    Page,
    ViewportSize,
    WebSocketRoute,
    expect,
)

from .conftest import make_settings
from .support import Client, ServerProcess, ServerThread, clients, http, login, password_for

pytestmark = pytest.mark.system

TIMEOUT_MS = 10_000
# A restart: the server stops, starts again, and the pages' backoff has to bring them back.
COMEBACK_MS = 25_000
SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "screenshot.png"
DESKTOP: ViewportSize = {"width": 1100, "height": 720}
PHONE: ViewportSize = {"width": 375, "height": 700}
FAST_HEARTBEAT = {"ping_interval_s": 1.0, "ping_timeout_s": 1.0}

expect.set_options(timeout=TIMEOUT_MS)


@dataclass
class ChatPage:
    """One user's browser tab, with what it reported: uncaught errors, console errors, dialogs."""

    context: BrowserContext
    page: Page
    name: str
    errors: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def watch(self, page: Page) -> None:
        page.set_default_timeout(TIMEOUT_MS)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("console", self._console)
        page.on("dialog", self._dialog)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console.append(message.text)

    def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    @property
    def status(self) -> Locator:
        return self.page.locator("#connection")

    @property
    def messages(self) -> Locator:
        return self.page.get_by_role("list", name="Messages")

    @property
    def title(self) -> Locator:
        return self.page.locator("#conv-title")

    def texts(self, text: str) -> Locator:
        """Message bubbles whose text is exactly ``text``."""
        return self.messages.locator(".text").filter(has_text=re.compile(f"^{re.escape(text)}$"))

    def log_in(self, action: str = "Create account", password: str | None = None) -> None:
        self.page.get_by_label("Name", exact=True).fill(self.name)
        self.page.get_by_label("Password", exact=True).fill(password or password_for(self.name))
        self.page.get_by_role("button", name=action, exact=True).click()
        expect(self.status).to_have_text("Connected")

    def join(self, room: str) -> None:
        self.page.get_by_role("textbox", name="Room to join or create").fill(room)
        self.page.get_by_role("button", name="Join", exact=True).click()
        expect(self.title).to_have_text(f"#{room}")

    def message_person(self, name: str) -> None:
        self.page.get_by_role("textbox", name="Name of the person to message").fill(name)
        self.page.get_by_role("button", name="Start", exact=True).click()
        expect(self.title).to_have_text(name)

    def say(self, text: str) -> None:
        box = self.page.get_by_role("textbox", name="Message", exact=True)
        box.fill(text)
        box.press("Enter")
        expect(box).to_have_value("")

    def account_menu(self, page: Page | None = None) -> Locator:
        """Open the account menu (top right); returns it."""
        page = page or self.page
        page.locator("#account-menu summary").click()
        return page.locator("#account-menu")

    def conversation(self, label: str) -> Locator:
        """The sidebar button of a room (``#name``) or a person (``name``); its accessible name starts so."""
        nav = self.page.get_by_role("navigation", name="Conversations")
        return nav.get_by_role("button", name=re.compile(f"^{re.escape(label)}(,| \\(you\\))"))


OpenPage = Callable[..., ChatPage]


@pytest.fixture
def open_page(browser: Browser) -> Iterator[OpenPage]:
    """Open the chat for a user in a fresh browser context (its own cookies and storage), logged in."""
    opened: list[ChatPage] = []

    def open_one(base_url: str, name: str, *, viewport: ViewportSize = DESKTOP, log_in: bool = True) -> ChatPage:
        context = browser.new_context(viewport=viewport)
        chat = ChatPage(context, context.new_page(), name)
        opened.append(chat)
        chat.watch(chat.page)
        chat.page.goto(base_url)
        if log_in:
            chat.log_in()
        return chat

    yield open_one
    for chat in opened:
        chat.context.close()
    for chat in opened:
        assert not chat.errors, f"{chat.name}'s page threw: {chat.errors}"
        assert not chat.dialogs, f"{chat.name}'s page opened dialogs: {chat.dialogs}"


@pytest.fixture
def fast_server(tmp_path: Path) -> Iterator[ServerThread]:
    """A server with a 1 s + 1 s heartbeat, so that dead links are found in about two seconds."""
    running = ServerThread(make_settings(tmp_path, **FAST_HEARTBEAT)).start()
    try:
        yield running
    finally:
        running.stop()


def history_texts(base_url: str, user: str, **target: str) -> list[str]:
    """Every text of a room or conversation, oldest first, as the server has stored it."""
    token = login(base_url, user)
    texts: list[str] = []
    before = ""
    while True:
        query = "&".join(f"{k}={v}" for k, v in target.items())
        status, _, page = http(
            "GET", f"{base_url}api/history?{query}&limit=200{before}", headers={"Authorization": f"Bearer {token}"}
        )
        assert status == 200, page
        texts.extend(m["text"] for m in page["messages"])
        if not page["more"]:
            return texts[::-1]
        before = f"&before={page['messages'][-1]['seq']}"


def no_more_messages(client: Client) -> list[str]:
    """After a round trip through the server: the texts of any messages still waiting (duplicates)."""
    client.barrier()
    return [frame["text"] for frame in client.backlog if frame.get("type") == "message"]


# ---------------------------------------------------------------- chatting


def test_two_users_chat_in_a_room_and_directly_with_presence_and_unread_counts(
    open_page: OpenPage, server: ServerThread
) -> None:
    alice = open_page(server.base_url, "alice")
    expect(alice.page.get_by_text("Pick a conversation")).to_be_visible()
    alice.join("general")
    expect(alice.conversation("#general")).to_have_accessible_name("#general, 1 member")

    bob = open_page(server.base_url, "bob")
    bob.join("general")
    # Member counts follow joins on both sides, and the header counts who is online.
    expect(alice.conversation("#general")).to_have_accessible_name("#general, 2 members")
    expect(alice.page.locator("#conv-subtitle")).to_have_text("2 members · 2 online")

    bob.say("Morning! Is the deploy done?")
    expect(alice.texts("Morning! Is the deploy done?")).to_have_count(1)
    first = alice.messages.locator("li.message").first
    expect(first.locator(".sender")).to_have_text("bob")
    expect(first).to_have_class(re.compile(r"\bother\b"))
    alice.say("Yes, all green. Notes: https://example.org/deploy")
    own = alice.messages.locator("li.message.own")
    expect(own).to_have_count(1)
    expect(own.get_by_role("link")).to_have_attribute("href", "https://example.org/deploy")
    expect(bob.texts("Yes, all green. Notes: https://example.org/deploy")).to_have_count(1)

    # A direct conversation: bob is in #general, so alice's message shows as unread for him.
    alice.message_person("bob")
    expect(alice.page.locator("#conv-subtitle")).to_have_text("Online")
    alice.say("psst, lunch at noon?")
    expect(bob.conversation("alice")).to_have_accessible_name("alice, online, 1 unread message")
    expect(bob.page).to_have_title("(1) tornado-chat")
    bob.conversation("alice").click()
    expect(bob.texts("psst, lunch at noon?")).to_have_count(1)
    expect(bob.conversation("alice")).to_have_accessible_name("alice, online")
    expect(bob.page).to_have_title("tornado-chat")
    # Shift+Enter is a new line, Enter sends.
    box = bob.page.get_by_role("textbox", name="Message", exact=True)
    box.press_sequentially("sure!")
    box.press("Shift+Enter")
    box.press_sequentially("where?")
    expect(box).to_have_value("sure!\nwhere?")
    box.press("Enter")
    expect(alice.texts("sure!\nwhere?")).to_have_count(1)
    # alice is in that conversation, so nothing is unread for her; a room message while away is.
    expect(alice.conversation("bob")).to_have_accessible_name("bob, online")
    bob.conversation("#general").click()
    bob.say("see you all there")
    expect(alice.conversation("#general")).to_have_accessible_name("#general, 2 members, 1 unread message")

    # Presence: bob closes his tab, then comes back in a new one.
    bob.page.close()
    expect(alice.conversation("bob")).to_have_accessible_name("bob, offline")
    bob.page = bob.context.new_page()
    bob.watch(bob.page)
    bob.page.goto(server.base_url)
    expect(bob.status).to_have_text("Connected")
    expect(alice.conversation("bob")).to_have_accessible_name("bob, online")

    # A third person joins; alice's view of #general becomes the README's screenshot.
    with clients(server.base_url, "carol") as (carol,):
        carol.join("general")
        expect(alice.conversation("#general")).to_have_accessible_name(re.compile(r"^#general, 3 members"))
        carol.send_message("I'll bring the **release notes**.\nAnd cake, @alice.", room="general")
        alice.conversation("#general").click()
        expect(alice.texts("I'll bring the release notes.\nAnd cake, @alice.")).to_have_count(1)
        expect(alice.messages.locator("strong")).to_have_text("release notes")
        alice.say("Perfect, thanks Carol!")
        bob.conversation("alice").click()
        bob.say("running 5 min late")
        expect(alice.conversation("bob")).to_have_accessible_name("bob, online, 1 unread message")
        save_screenshot(alice.page)

    # Leaving: the room moves to bob's "Other rooms", and alice's member count drops.
    bob.conversation("#general").click()
    bob.page.locator("#members summary").click()
    expect(bob.page.get_by_role("list", name="Members").get_by_role("listitem")).to_have_count(3)
    bob.page.get_by_role("button", name="Leave #general").click()
    expect(bob.conversation("#general")).to_have_count(0)
    bob.page.get_by_text("Other rooms").click()
    expect(bob.page.locator("#other-rooms").get_by_role("button", name="Join #general")).to_be_visible()
    expect(alice.conversation("#general")).to_have_accessible_name("#general, 2 members")


def save_screenshot(page: Page) -> None:
    """docs/screenshot.png, rewritten only when it changes (clock times are pinned so that it rarely does)."""
    page.evaluate(
        """() => document.querySelectorAll('#messages time').forEach((t, i) => {
            t.textContent = `9:${String(41 + i).padStart(2, '0')} AM`; })"""
    )
    expect(page.locator("#messages li.message.pending")).to_have_count(0)
    page.mouse.move(0, 0)  # no hover effects
    image = page.screenshot(animations="disabled", caret="hide")
    if not SCREENSHOT.exists() or SCREENSHOT.read_bytes() != image:
        SCREENSHOT.write_bytes(image)


def test_older_history_loads_on_scroll_up(open_page: OpenPage, tmp_path: Path) -> None:
    server = ServerThread(make_settings(tmp_path, rate_limit_per_s=1000.0, rate_limit_burst=1000)).start()
    try:
        scroll_through_history(open_page, server)
    finally:
        server.stop()


def scroll_through_history(open_page: OpenPage, server: ServerThread) -> None:
    with clients(server.base_url, "historian") as (historian,):
        historian.join("archive")
        for n in range(1, 81):
            historian.send_message(f"entry {n}", room="archive")
    alice = open_page(server.base_url, "alice")
    alice.join("archive")
    # The newest page first (50), at the bottom ...
    expect(alice.messages.locator("li.message")).to_have_count(50)
    expect(alice.texts("entry 80")).to_be_in_viewport()
    # ... and the rest when the reader scrolls to the top.
    alice.page.locator("#scroller").evaluate("el => { el.scrollTop = 0; }")
    expect(alice.messages.locator("li.message")).to_have_count(80)
    expect(alice.page.get_by_text("This is the start of #archive.")).to_be_visible()
    assert alice.messages.locator(".text").all_inner_texts() == [f"entry {n}" for n in range(1, 81)]


def test_markup_in_messages_is_shown_as_text_and_never_run(open_page: OpenPage, server: ServerThread) -> None:
    alice = open_page(server.base_url, "alice")
    alice.join("xss")
    alice.console.clear()  # the 401 of "am I logged in?" before logging in is expected
    payloads = [
        "<img src=x onerror=alert(1)>",
        "<script>alert(2)</script>",
        '<a href="javascript:alert(3)">click</a> javascript:alert(4)',
        "see https://example.org/a?b=1&c=2 and <b>bold</b>",
    ]
    alice.say(payloads[0])
    with clients(server.base_url, "mallory") as (mallory,):
        mallory.join("xss")
        for text in payloads[1:]:
            mallory.send_message(text, room="xss")
        for text in payloads:
            expect(alice.texts(text)).to_have_count(1)
    messages = alice.messages
    expect(messages.locator("img, script, b, iframe")).to_have_count(0)
    # Only the http(s) URL became a link, a safe one; javascript: stayed text.
    links = messages.get_by_role("link")
    expect(links).to_have_count(1)
    expect(links).to_have_attribute("href", "https://example.org/a?b=1&c=2")
    expect(links).to_have_attribute("rel", "noopener noreferrer")
    expect(links).to_have_attribute("target", "_blank")
    alice.page.reload()  # and again from history
    expect(alice.status).to_have_text("Connected")
    for text in payloads:
        expect(alice.texts(text)).to_have_count(1)
    expect(messages.locator("img, script, b, iframe")).to_have_count(0)
    assert not alice.dialogs
    assert not alice.console, alice.console


# ---------------------------------------------------------------- bad networks and restarts


def test_a_server_restart_loses_and_repeats_nothing(open_page: OpenPage, tmp_path: Path) -> None:
    args = ("--data-dir", str(tmp_path / "data"), "--ping-interval", "1", "--ping-timeout", "1")
    server = ServerProcess(*args, "--reconnect-spread", "1").start()
    restarted: ServerProcess | None = None
    try:
        base_url = server.base_url
        alice = open_page(base_url, "alice")
        bob = open_page(base_url, "bob")
        alice.join("ops")
        bob.join("ops")
        bob.say("before the restart")
        expect(alice.texts("before the restart")).to_have_count(1)

        server.signal(signal.SIGTERM)
        assert server.wait() == 0
        for chat in (alice, bob):
            expect(chat.status).to_contain_text("Reconnecting")
        # Both type while the server is down: queued, shown as waiting.
        alice.say("typed during the outage 1")
        alice.say("typed during the outage 2")
        bob.say("bob typed this while it was down")
        expect(alice.messages.locator("li.pending")).to_have_count(2)
        expect(alice.messages.locator("li.pending .delivery").first).to_have_text("Waiting for connection…")
        expect(bob.messages.locator("li.pending")).to_have_count(1)

        restarted = ServerProcess(*args, "--port", str(server.port)).start()
        for chat in (alice, bob):
            expect(chat.status).to_have_text("Connected", timeout=COMEBACK_MS)
            expect(chat.messages.locator("li.pending")).to_have_count(0)
        everything = [
            "before the restart",
            "typed during the outage 1",
            "typed during the outage 2",
            "bob typed this while it was down",
        ]
        for chat in (alice, bob):
            for text in everything:
                expect(chat.texts(text)).to_have_count(1)
        stored = history_texts(restarted.base_url, "alice", room="ops")
        assert sorted(stored) == sorted(everything), stored
        assert stored.index("typed during the outage 1") < stored.index("typed during the outage 2")
        # Still working, both ways.
        bob.say("back to normal")
        expect(alice.texts("back to normal")).to_have_count(1)
    finally:
        server.stop()
        if restarted is not None:
            restarted.stop()


def test_a_cut_network_is_detected_and_the_page_recovers(open_page: OpenPage, fast_server: ServerThread) -> None:
    alice = open_page(fast_server.base_url, "alice")
    alice.join("field")
    with clients(fast_server.base_url, "bob") as (bob,):
        bob.join("field")
        alice.context.set_offline(True)
        expect(alice.status).to_have_attribute("data-state", "offline")
        expect(alice.status).to_contain_text("Offline")
        # The old link goes quiet; the heartbeat gives up on it after interval + timeout (2 s here).
        expect(alice.status).not_to_have_attribute("data-link", "up", timeout=6_000)
        alice.say("written on the train")
        expect(alice.messages.locator("li.pending .delivery")).to_have_text("Waiting for connection…")
        bob.send_message("did you get this?", room="field")

        # Back online: the page reconnects at once (its backoff by now could wait several seconds).
        alice.context.set_offline(False)
        expect(alice.status).to_have_text("Connected", timeout=3_000)
        expect(alice.texts("did you get this?")).to_have_count(1)
        expect(alice.messages.locator("li.pending")).to_have_count(0)
        got = bob.expect("message", text="written on the train")
        assert got["from"] == "alice"
        assert no_more_messages(bob) == []
    assert history_texts(fast_server.base_url, "bob", room="field").count("written on the train") == 1


def test_a_frozen_server_is_detected_by_the_heartbeat(open_page: OpenPage, tmp_path: Path) -> None:
    server = ServerProcess("--data-dir", str(tmp_path / "data"), "--ping-interval", "1", "--ping-timeout", "1").start()
    try:
        alice = open_page(server.base_url, "alice")
        server.signal(signal.SIGSTOP)  # the TCP connection stays open; nothing comes through it
        try:
            expect(alice.status).to_contain_text("Reconnecting", timeout=6_000)
        finally:
            server.signal(signal.SIGCONT)
        expect(alice.status).to_have_text("Connected", timeout=COMEBACK_MS)
    finally:
        server.stop()


def test_unsent_messages_survive_a_reload_and_failed_ones_retry_with_their_id(
    open_page: OpenPage, fast_server: ServerThread
) -> None:
    alice = open_page(fast_server.base_url, "alice")
    alice.join("desk")
    sent: list[dict[str, Any]] = []
    mode = {"value": "pass"}

    def route(ws: WebSocketRoute) -> None:
        if mode["value"] == "refuse":
            ws.close(code=1012, reason=json.dumps({"retry_after_ms": 60_000}))
            return
        server = ws.connect_to_server()

        def from_page(message: str | bytes) -> None:
            frame = json.loads(message)
            if frame.get("type") == "send":
                sent.append(frame)
                if mode["value"] == "drop":
                    return
            server.send(message)

        ws.on_message(from_page)

    alice.page.route_web_socket(re.compile(r"/ws(\?|$)"), route)
    with clients(fast_server.base_url, "bob") as (bob,):
        bob.join("desk")
        # The server is restarting for a minute: a message typed now waits ... and survives a reload.
        mode["value"] = "refuse"
        alice.page.reload()
        expect(alice.status).to_contain_text(re.compile(r"Reconnecting in (59|60) s"))
        alice.say("typed, then reloaded")
        expect(alice.messages.locator("li.pending .delivery")).to_have_text("Waiting for connection…")
        bob.send_message("sent while alice was away", room="desk")
        alice.page.reload()
        expect(alice.messages.locator("li.pending .text")).to_have_text("typed, then reloaded")
        # The page honours the minute the server asked for, unless the tab comes back into view.
        mode["value"] = "pass"
        expect(alice.status).to_contain_text(re.compile(r"Reconnecting in \d+ s"))
        hide_and_show(alice.page)
        expect(alice.status).to_have_text("Connected")
        expect(alice.messages.locator("li.pending")).to_have_count(0)
        assert bob.expect("message", text="typed, then reloaded")["from"] == "alice"
        # What bob sent meanwhile comes both in the page's history and in the server's replay: shown once.
        expect(alice.texts("sent while alice was away")).to_have_count(1)
        expect(alice.texts("typed, then reloaded")).to_have_count(1)

        # A send that is never acknowledged shows as failed; Retry sends it again with the same id.
        mode["value"] = "drop"
        alice.say("lost on the way")
        failed = alice.messages.locator("li.state-failed")
        expect(failed.locator(".delivery")).to_contain_text("Not delivered")
        mode["value"] = "pass"
        failed.get_by_role("button", name="Retry").click()
        expect(alice.messages.locator("li.pending")).to_have_count(0)
        expect(alice.texts("lost on the way")).to_have_count(1)
        assert bob.expect("message", text="lost on the way")["from"] == "alice"
        assert no_more_messages(bob) == []
    tries = [frame for frame in sent if frame["text"] == "lost on the way"]
    assert len(tries) == 2 and tries[0]["id"] == tries[1]["id"], tries
    assert history_texts(fast_server.base_url, "bob", room="desk").count("typed, then reloaded") == 1


def hide_and_show(page: Page) -> None:
    """What the page sees when its tab goes to the background and comes back."""
    page.evaluate(
        """() => {
            for (const hidden of [true, false]) {
                Object.defineProperty(document, "hidden", { configurable: true, get: () => hidden });
                document.dispatchEvent(new Event("visibilitychange"));
            }
        }"""
    )


# ---------------------------------------------------------------- accounts and small screens


def test_accounts_log_in_change_password_log_out_and_guests(open_page: OpenPage, tmp_path: Path) -> None:
    server = ServerThread(make_settings(tmp_path, allow_guests=True)).start()
    try:
        alice = open_page(server.base_url, "alice")
        # Change the password; this tab stays logged in (its old login session ends, the answer brings a new one).
        alice.account_menu().get_by_role("button", name="Change password").click()
        dialog = alice.page.get_by_role("dialog", name="Change password")
        dialog.get_by_label("Current password").fill("not my password")
        dialog.get_by_label("New password").fill("a much better passphrase")
        dialog.get_by_role("button", name="Save").click()
        expect(dialog.get_by_role("alert")).to_have_text("The current password is wrong.")
        dialog.get_by_label("Current password").fill(password_for("alice"))
        dialog.get_by_role("button", name="Save").click()
        expect(dialog).to_be_hidden()
        expect(alice.status).to_have_text("Connected")
        alice.join("general")

        # A second tab shares the login; logging out in one sends the other to the login screen too.
        second = alice.context.new_page()
        alice.watch(second)
        second.goto(server.base_url)
        expect(second.locator("#connection")).to_have_text("Connected")
        alice.account_menu(second).get_by_role("button", name="Log out").click()
        for page in (second, alice.page):
            expect(page.get_by_role("button", name="Log in", exact=True)).to_be_visible()
        expect(alice.page.locator("#login-error")).to_have_text("You were logged out.")

        # The old password is refused, the new one works.
        alice.page.get_by_label("Name", exact=True).fill("alice")
        alice.page.get_by_label("Password", exact=True).fill(password_for("alice"))
        alice.page.get_by_role("button", name="Log in", exact=True).click()
        expect(alice.page.locator("#login-error")).to_contain_text("Wrong name or password")
        alice.log_in("Log in", password="a much better passphrase")
        expect(alice.conversation("#general")).to_be_visible()

        # Guests: a name is enough.
        guest = open_page(server.base_url, "visitor", log_in=False)
        guest.page.get_by_label("Name", exact=True).fill("visitor")
        guest.page.get_by_role("button", name="Continue as a guest").click()
        expect(guest.status).to_have_text("Connected")
        expect(guest.page.locator("#me-name")).to_have_text("guest-visitor")
        menu = guest.account_menu()
        expect(menu.get_by_role("button", name="Log out")).to_be_visible()
        expect(menu.get_by_role("button", name="Change password")).to_be_hidden()
    finally:
        server.stop()


def test_the_page_is_usable_at_phone_width(open_page: OpenPage, server: ServerThread) -> None:
    alice = open_page(server.base_url, "alice", viewport=PHONE)
    page = alice.page
    expect(page.get_by_text("No rooms yet: join one below.")).to_be_visible()
    alice.join("general")
    # One column: the conversation replaces the list, and a back button returns to it.
    expect(page.get_by_role("navigation", name="Conversations")).to_be_hidden()
    with clients(server.base_url, "bob") as (bob,):
        bob.join("general")
        alice.say("hello from my phone")
        assert bob.expect("message", text="hello from my phone")["from"] == "alice"
        bob.send_message("hi phone", room="general")
        expect(alice.texts("hi phone")).to_be_in_viewport()
    expect(page.get_by_role("button", name="Send")).to_be_in_viewport()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.get_by_role("button", name="Back to conversations").click()
    expect(alice.conversation("#general")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


def test_the_room_list_comes_in_pages_and_forgets_rooms_that_are_gone(open_page: OpenPage, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, room_creations_per_hour=1000, rate_limit_per_s=10_000.0, rate_limit_burst=10_000)
    server = ServerThread(settings).start()
    try:
        # 120 rooms: more than the page's first page of 100.
        with clients(server.base_url, "maker") as (maker,):
            for number in range(120):
                maker.send({"type": "join", "room": f"room-{number:03d}"})
                maker.expect("joined", room=f"room-{number:03d}")
            alice = open_page(server.base_url, "alice")
            alice.page.get_by_text("Other rooms").click()
            other = alice.page.locator("#other-rooms")
            expect(other.get_by_role("button", name=re.compile(r"^Join #room-"))).to_have_count(100)
            expect(alice.page.locator("#browse-count")).to_have_text("(120)")
            alice.page.get_by_role("button", name="More rooms").click()
            expect(other.get_by_role("button", name=re.compile(r"^Join #room-"))).to_have_count(120)
            expect(alice.page.get_by_role("button", name="More rooms")).to_be_hidden()
            # A room whose last member leaves is gone; the next refresh of its page drops it from the list.
            maker.send({"type": "leave", "room": "room-000"})
            maker.expect("left", room="room-000")
            alice.join("room-001")  # a join asks for the list again
            expect(other.get_by_role("button", name="Join #room-000")).to_have_count(0)
    finally:
        server.stop()
