"""The page where WebSocket cannot get through, in headless Chromium: it falls back to an event stream, then to
long polling, chats, comes back after restarts and network cuts, moves back to WebSocket when it can, and
never loses or repeats a message on the way.

WebSocket is blocked with Playwright's routes (``route_web_socket``), the event stream held back with
``route``; ``test_ops_nginx.py`` blocks it in a real nginx. Every wait is for something the page or the
server shows; nothing sleeps to synchronise.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Route, WebSocketRoute, expect

from .conftest import make_settings
from .support import ServerProcess, ServerThread, clients, password_for
from .test_browser import ChatPage, history_texts, no_more_messages

pytestmark = pytest.mark.system

TIMEOUT_MS = 10_000
# WebSocket gives up after two failed attempts or 5 s; an event stream after 10 s of silence.
TO_EVENT_STREAM_MS = 15_000
TO_LONG_POLLING_MS = 30_000
COMEBACK_MS = 25_000
WS_URL = re.compile(r"/ws(\?|$)")
VIA_SSE = "Connected · via server-sent events"
VIA_POLLING = "Connected · via long polling"

OpenBlocked = Callable[..., ChatPage]


class Switch:
    """Whether the page's WebSockets get through (``pass``), are closed at once (``close``) or hang (``hang``)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def route(self, ws: WebSocketRoute) -> None:
        if self.mode == "pass":
            ws.connect_to_server()
        elif self.mode == "close":
            ws.close(code=4403, reason="blocked by a proxy")
        # "hang": mocked and silent, like a middlebox that swallows the upgrade


@pytest.fixture
def open_blocked(browser: Browser) -> Iterator[OpenBlocked]:
    """A logged-in page whose WebSockets go where ``switch`` says (routes set before the page loads)."""
    opened: list[ChatPage] = []

    def open_one(base_url: str, name: str, switch: Switch, *, hold_events: bool = False) -> ChatPage:
        context = browser.new_context()
        context.route_web_socket(WS_URL, switch.route)
        if hold_events:
            # A proxy that buffers the event stream: the request is never answered.
            context.route(re.compile(r"/events(\?|$)"), lambda route: held.append(route))
        chat = ChatPage(context, context.new_page(), name)
        opened.append(chat)
        chat.watch(chat.page)
        chat.page.goto(base_url)
        chat.page.get_by_label("Name", exact=True).fill(name)
        chat.page.get_by_label("Password", exact=True).fill(password_for(name))
        chat.page.get_by_role("button", name="Create account", exact=True).click()
        return chat

    held: list[Route] = []
    yield open_one
    for chat in opened:
        chat.context.close()
    for chat in opened:
        assert not chat.errors, f"{chat.name}'s page threw: {chat.errors}"


def test_with_websocket_refused_two_pages_chat_over_an_event_stream(
    open_blocked: OpenBlocked, server: ServerThread
) -> None:
    blocked = Switch("close")
    alice = open_blocked(server.base_url, "alice", blocked)
    bob = open_blocked(server.base_url, "bob", blocked)
    for chat in (alice, bob):
        expect(chat.status).to_have_text(VIA_SSE, timeout=TO_EVENT_STREAM_MS)
        expect(chat.status).to_have_attribute("data-transport", "sse")
    alice.join("general")
    bob.join("general")
    expect(alice.page.locator("#conv-subtitle")).to_have_text("2 members · 2 online")
    bob.say("over server-sent events")
    expect(alice.texts("over server-sent events")).to_have_count(1)
    alice.say("and back")
    expect(bob.texts("and back")).to_have_count(1)
    alice.message_person("bob")
    alice.say("directly")
    expect(bob.conversation("alice")).to_have_accessible_name("alice, online, 1 unread message")
    # Presence: bob's tab closes, his event stream with it.
    bob.page.close()
    expect(alice.conversation("bob")).to_have_accessible_name("bob, offline")
    with clients(server.base_url, "carol") as (carol,):
        carol.join("general")
        for n in range(5):
            carol.send_message(f"from a websocket {n}", room="general")
        alice.conversation("#general").click()
        for n in range(5):
            expect(alice.texts(f"from a websocket {n}")).to_have_count(1)
        alice.say("seen them all")
        assert carol.expect("message", text="seen them all")["from"] == "alice"
        assert no_more_messages(carol) == []
    assert history_texts(server.base_url, "carol", room="general").count("seen them all") == 1


def test_a_held_back_event_stream_gives_way_to_long_polling_which_survives_restarts_and_cuts(
    open_blocked: OpenBlocked, tmp_path: Path
) -> None:
    args = ("--data-dir", str(tmp_path / "data"), "--ping-interval", "1", "--ping-timeout", "1")
    server = ServerProcess(*args, "--reconnect-spread", "1").start()
    restarted: ServerProcess | None = None
    try:
        # WebSocket hangs (5 s), the event stream never starts (10 s): long polling.
        alice = open_blocked(server.base_url, "alice", Switch("hang"), hold_events=True)
        expect(alice.status).to_have_text(VIA_POLLING, timeout=TO_LONG_POLLING_MS)
        alice.join("ops")
        with clients(server.base_url, "bob") as (bob,):
            bob.join("ops")
            bob.send_message("polled to you", room="ops")
            expect(alice.texts("polled to you")).to_have_count(1)
            alice.say("polled from me")
            assert bob.expect("message", text="polled from me")["from"] == "alice"

        # A restart: the poll is told to come back later; what is typed meanwhile waits, then goes once.
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
        expect(alice.status).to_contain_text("Reconnecting")
        alice.say("typed while the server was down")
        expect(alice.messages.locator("li.pending")).to_have_count(1)
        restarted = ServerProcess(*args, "--port", str(server.port)).start()
        expect(alice.status).to_have_text(VIA_POLLING, timeout=COMEBACK_MS)
        expect(alice.messages.locator("li.pending")).to_have_count(0)

        # The network goes away and comes back: the page notices, and resumes where it stopped.
        # (Another user: a new client of bob's would number its sends from 1 again, which the server
        # takes for resends of his first ones.)
        with clients(restarted.base_url, "carol") as (carol,):
            carol.join("ops")
            alice.context.set_offline(True)
            expect(alice.status).to_contain_text("Offline")
            expect(alice.status).not_to_have_attribute("data-link", "up", timeout=6_000)
            alice.say("written offline")
            carol.send_message("sent while alice was offline", room="ops")
            alice.context.set_offline(False)
            expect(alice.status).to_have_text(VIA_POLLING, timeout=COMEBACK_MS)
            expect(alice.texts("sent while alice was offline")).to_have_count(1)
            assert carol.expect("message", text="written offline")["from"] == "alice"
            assert no_more_messages(carol) == []
        stored = history_texts(restarted.base_url, "bob", room="ops")
        assert stored == [
            "polled to you",
            "polled from me",
            "typed while the server was down",
            "sent while alice was offline",
            "written offline",  # it waited for the network
        ], stored
        for text in stored:
            expect(alice.texts(text)).to_have_count(1)
    finally:
        server.stop()
        if restarted is not None:
            restarted.stop()


def test_the_page_moves_back_to_websocket_without_losing_or_repeating_a_message(
    open_blocked: OpenBlocked, tmp_path: Path
) -> None:
    # The page paces its own sends; bob's client does not, and this test is not about rate limits.
    unlimited = {"rate_limit_per_s": 1000.0, "rate_limit_burst": 1000}
    server = ServerThread(make_settings(tmp_path, websocket_retry_s=1.0, **unlimited)).start()
    try:
        switch = Switch("hang")
        alice = open_blocked(server.base_url, "alice", switch)
        expect(alice.status).to_have_text(VIA_SSE, timeout=TO_EVENT_STREAM_MS)
        alice.join("switch")
        sent: list[str] = []
        with clients(server.base_url, "bob") as (bob,):
            bob.join("switch")
            bob.send_message("before the switch", room="switch")
            sent.append("before the switch")
            expect(alice.texts("before the switch")).to_have_count(1)
            # WebSocket gets through again; the background retry (every ~1 s here) finds it while both talk.
            switch.mode = "pass"
            n = 0
            while alice.status.get_attribute("data-transport") != "websocket":
                n += 1
                assert n <= 100, "the page never moved back to WebSocket"
                bob.send_message(f"bob {n}", room="switch")
                alice.say(f"alice {n}")
                sent += [f"bob {n}", f"alice {n}"]
                expect(alice.texts(f"bob {n}")).to_have_count(1)
                assert bob.expect("message", text=f"alice {n}")["from"] == "alice"
            bob.send_message("after the switch", room="switch")
            alice.say("alice after the switch")
            sent += ["after the switch", "alice after the switch"]
            expect(alice.status).to_have_text("Connected")
            assert bob.expect("message", text="alice after the switch")["from"] == "alice"
            for text in sent:
                expect(alice.texts(text)).to_have_count(1)
            expect(alice.messages.locator("li.pending")).to_have_count(0)
            assert no_more_messages(bob) == []
        stored = history_texts(server.base_url, "bob", room="switch")
        assert sorted(stored) == sorted(sent) and len(stored) == len(set(stored)), stored
        # The event stream's session was closed when the page moved: one session left, on a WebSocket.
        kinds = server.call(lambda: [s.transport.kind for s in server.chat.hub.users["alice"].sessions.values()])
        assert kinds == ["websocket"]
    finally:
        server.stop()
