"""The page's day-one features, and one test for each bug a first user met (issue 14, section 7), in headless
Chromium against a real server. Every wait is for something the page shows; nothing sleeps to synchronise.
"""

# ruff: noqa: F811 - `open_page` is test_browser.py's fixture, imported here and named by each test

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from playwright.sync_api import Page, WebSocketRoute, expect

from .conftest import make_settings
from .support import ServerThread, clients
from .test_browser import PHONE, ChatPage, OpenPage, open_page  # noqa: F401 - a fixture

pytestmark = pytest.mark.system

# Contrast of a text element against the first opaque background behind it (WCAG 2 relative luminance).
CONTRAST_JS = """(el) => {
    const rgb = (text) => text.match(/[\\d.]+/g).map(Number);
    const lum = ([r, g, b]) => {
        const c = [r, g, b].map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
        return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
    };
    let back = el;
    while (back && (rgb(getComputedStyle(back).backgroundColor)[3] ?? 1) === 0) back = back.parentElement;
    const fg = lum(rgb(getComputedStyle(el).color));
    const bg = lum(rgb(getComputedStyle(back || document.body).backgroundColor));
    return (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
}"""
# Records desktop notifications and permission requests instead of showing them.
FAKE_NOTIFICATIONS = """(() => {
    window.__notes = [];
    window.__asked = 0;
    class FakeNotification {
        constructor(title, options) { window.__notes.push({ title, ...options }); }
        close() {}
        static permission = "default";
        static async requestPermission() {
            window.__asked += 1;
            FakeNotification.permission = "granted";
            return "granted";
        }
    }
    window.Notification = FakeNotification;
})();"""


def box(chat: ChatPage) -> Any:
    return chat.page.get_by_role("textbox", name="Message", exact=True)


def set_hidden(page: Page, hidden: bool) -> None:
    """What the page sees when its tab goes to the background (or comes back)."""
    page.evaluate(
        """(hidden) => {
            Object.defineProperty(document, "hidden", { configurable: true, get: () => hidden });
            const state = hidden ? "hidden" : "visible";
            Object.defineProperty(document, "visibilityState", { configurable: true, get: () => state });
            document.dispatchEvent(new Event("visibilitychange"));
        }""",
        hidden,
    )


# ---------------------------------------------------------------- section 7: the bugs, one test each


def test_a_long_paste_is_kept_whole_with_a_warning_and_is_not_sent_cut(
    open_page: OpenPage, server: ServerThread
) -> None:
    alice = open_page(server.base_url, "alice")
    alice.join("paste")
    with clients(server.base_url, "bob") as (bob,):
        bob.join("paste")
        box(alice).focus()
        alice.page.keyboard.insert_text("x" * 4100)  # a paste: the browser's own limits apply
        expect(box(alice)).to_have_js_property("value", "x" * 4100)  # nothing cut
        counter = alice.page.locator("#composer-count")
        expect(counter).to_be_visible()
        expect(counter).to_have_text("4,100 / 4,000 characters: too long to send")
        expect(alice.page.get_by_role("button", name="Send")).to_be_disabled()
        box(alice).press("Enter")
        expect(alice.page.locator("#toast")).to_contain_text("too long")
        expect(alice.messages.locator("li.pending")).to_have_count(0)
        alice.page.keyboard.press("Backspace")
        for _ in range(99):
            alice.page.keyboard.press("Backspace")
        expect(alice.page.get_by_role("button", name="Send")).to_be_enabled()
        box(alice).press("Enter")
        assert len(bob.expect("message")["text"]) == 4000


def test_no_phantom_general_appears_on_a_server_without_it(open_page: OpenPage, server: ServerThread) -> None:
    alice = open_page(server.base_url, "alice")
    expect(alice.page.get_by_role("button", name="Join #general")).to_be_visible()
    alice.page.locator("#browse summary").click()
    expect(alice.page.locator("#other-rooms")).to_have_text("No other rooms.")
    expect(alice.page.locator("#browse-count")).to_have_text("")


def test_nobody_shows_as_online_while_this_page_is_disconnected(open_page: OpenPage, server: ServerThread) -> None:
    alice = open_page(server.base_url, "alice")
    with clients(server.base_url, "bob") as (bob,):
        bob.join("dots")
        alice.join("dots")
        alice.page.locator("#members summary").click()  # the member list: bob's dot and her own
        expect(alice.page.locator("#member-list .presence.online")).to_have_count(2)
        alice.page.keyboard.press("Escape")
        alice.message_person("bob")
        expect(alice.conversation("bob")).to_have_accessible_name("bob, online")
        alice.context.set_offline(True)
        expect(alice.status).to_contain_text("Offline")
        expect(alice.page.locator(".presence.online")).to_have_count(0)
        expect(alice.conversation("bob")).to_have_accessible_name("bob, offline")
        expect(alice.page.locator("#conv-subtitle")).to_have_text("Offline")
        alice.conversation("#dots").click()
        alice.page.locator("#members summary").click()
        expect(alice.page.locator("#member-list .presence")).to_have_count(2)
        expect(alice.page.locator("#member-list .presence.online")).to_have_count(0)
        alice.page.keyboard.press("Escape")
        alice.context.set_offline(False)
        expect(alice.status).to_have_text("Connected")
        expect(alice.conversation("bob")).to_have_accessible_name("bob, online")


def test_retries_stay_a_few_seconds_apart_early_in_an_outage(open_page: OpenPage, server: ServerThread) -> None:
    alice = open_page(server.base_url, "alice")
    down = {"value": False}
    links: list[WebSocketRoute] = []

    def route(ws: WebSocketRoute) -> None:
        if down["value"]:
            ws.close(code=1011, reason="down")
            return
        links.append(ws)
        ws.connect_to_server()

    alice.page.route_web_socket(re.compile(r"/ws(\?|$)"), route)
    # Down means down for every path: were the HTTP API to answer, the page would rightly take its HTTP
    # fallback (an event stream) instead of waiting for the WebSocket to come back.
    alice.page.route(re.compile(r"/api/session$"), lambda api: api.abort() if down["value"] else api.continue_())
    alice.page.reload()
    expect(alice.status).to_have_text("Connected")
    # The server goes away (a restart, say) and every attempt fails for a while: each new one is made at once
    # with "Retry now", and the page says how long it would have waited.
    down["value"] = True
    links[-1].close(code=1011, reason="going away")
    waits: list[int] = []
    while len(waits) < 8:
        expect(alice.status).to_contain_text(re.compile(r"Reconnecting in \d+ s"), timeout=35_000)
        # Read the wait and retry at once, in one step: a short wait may be over before a second look.
        shown = alice.page.evaluate(
            """() => {
                const text = document.getElementById("connection").textContent;
                document.getElementById("retry-now").click();
                return text;
            }"""
        )
        waits.extend(int(n) for n in re.findall(r"in (\d+) s", shown))
    assert max(waits) <= 4, waits  # a backoff that doubles would be waiting up to 30 s by now
    assert alice.page.locator("#connection").get_attribute("data-transport") == "websocket"
    down["value"] = False
    expect(alice.status).to_have_text("Connected", timeout=15_000)


def test_an_emoji_counts_as_one_character_as_on_the_server(open_page: OpenPage, server: ServerThread) -> None:
    alice = open_page(server.base_url, "alice")
    alice.join("emoji")
    with clients(server.base_url, "bob") as (bob,):
        bob.join("emoji")
        box(alice).focus()
        alice.page.keyboard.insert_text("😀" * 3000)  # 3,000 characters, 6,000 UTF-16 units
        expect(alice.page.get_by_role("button", name="Send")).to_be_enabled()
        expect(alice.page.locator("#composer-count")).to_be_hidden()
        box(alice).press("Enter")
        assert bob.expect("message")["text"] == "😀" * 3000
        alice.page.keyboard.insert_text("😀" * 4001)
        expect(alice.page.locator("#composer-count")).to_have_text("4,001 / 4,000 characters: too long to send")


def test_right_to_left_text_runs_right_to_left(open_page: OpenPage, server: ServerThread) -> None:
    alice = open_page(server.base_url, "alice")
    alice.join("bidi")
    with clients(server.base_url, "bob") as (bob,):
        bob.join("bidi")
        bob.send_message("שלום לכולם", room="bidi")
        bob.send_message("مرحبا بالجميع", room="bidi")
        bob.send_message("hello everyone", room="bidi")
        for text, direction in (("שלום לכולם", "rtl"), ("مرحبا بالجميع", "rtl"), ("hello everyone", "ltr")):
            shown = alice.texts(text)
            expect(shown).to_have_count(1)
            assert shown.evaluate("el => getComputedStyle(el.querySelector('p') ?? el).direction") == direction, text
    box(alice).fill("שלום")
    assert box(alice).evaluate("t => getComputedStyle(t).direction") == "rtl"


def test_a_reload_keeps_the_draft_and_a_new_tab_opens_the_last_conversation(
    open_page: OpenPage, server: ServerThread
) -> None:
    alice = open_page(server.base_url, "alice")
    alice.join("drafts")
    alice.join("other")
    alice.conversation("#drafts").click()
    box(alice).fill("half a thought")
    alice.page.reload()
    expect(alice.status).to_have_text("Connected")
    expect(alice.title).to_have_text("#drafts")
    expect(box(alice)).to_have_value("half a thought")
    # Each conversation has its own draft.
    alice.conversation("#other").click()
    expect(box(alice)).to_have_value("")
    alice.conversation("#drafts").click()
    expect(box(alice)).to_have_value("half a thought")
    # A new tab opens where the user was last; drafts stay with their tab.
    tab = alice.context.new_page()
    alice.watch(tab)
    tab.goto(server.base_url)
    expect(tab.locator("#conv-title")).to_have_text("#drafts")
    expect(tab.get_by_role("textbox", name="Message", exact=True)).to_have_value("")
    box(alice).fill("")
    box(alice).press("Enter")


def test_the_message_list_scrolls_from_the_keyboard(open_page: OpenPage, tmp_path: Any) -> None:
    server = ServerThread(make_settings(tmp_path, rate_limit_per_s=1000.0, rate_limit_burst=1000)).start()
    try:
        with clients(server.base_url, "talker") as (talker,):
            talker.join("long")
            # Links in the list: a scroller with focusable content is not one the browser focuses by itself.
            for n in range(40):
                talker.send_message(f"line {n}, see https://example.org/{n}", room="long")
        alice = open_page(server.base_url, "alice")
        alice.join("long")
        expect(alice.messages.locator("li.message")).to_have_count(40)
        scroller = alice.page.locator("#scroller")
        # Tab from the header's last control lands on the list itself, not on a link inside it.
        alice.page.locator("#members summary").focus()
        alice.page.keyboard.press("Tab")
        expect(scroller).to_be_focused()
        expect(alice.page.get_by_role("region", name="Message history")).to_be_focused()
        bottom = scroller.evaluate("el => el.scrollTop")
        assert bottom > 0
        alice.page.keyboard.press("Home")
        alice.page.wait_for_function("() => document.getElementById('scroller').scrollTop === 0")
        alice.page.keyboard.press("End")
        alice.page.wait_for_function(f"() => document.getElementById('scroller').scrollTop >= {bottom}")
    finally:
        server.stop()


def test_text_has_at_least_4_5_to_1_contrast_where_it_had_less(open_page: OpenPage, server: ServerThread) -> None:
    alice = open_page(server.base_url, "alice")
    alice.join("contrast")
    alice.say("my own message")
    own_time = alice.messages.locator("li.message.own:not(.pending) time")
    expect(own_time).to_have_count(1)
    assert own_time.evaluate(CONTRAST_JS) >= 4.5
    count = alice.page.locator("#room-list .member-count")
    assert count.evaluate(CONTRAST_JS) >= 4.5
    alice.conversation("#contrast").hover()  # and on the hovered row
    dark = open_page(server.base_url, "dark", log_in=False)
    dark.page.emulate_media(color_scheme="dark")
    dark.page.get_by_role("button", name="Log in", exact=True).click()
    error = dark.page.locator("#login-error")
    expect(error).not_to_be_empty()
    assert error.evaluate(CONTRAST_JS) >= 4.5


def test_a_visit_while_logged_out_logs_no_error(open_page: OpenPage, server: ServerThread) -> None:
    visitor = open_page(server.base_url, "visitor", log_in=False)
    expect(visitor.page.get_by_role("button", name="Log in", exact=True)).to_be_visible()
    assert visitor.console == []
    visitor.page.reload()
    expect(visitor.page.get_by_role("button", name="Log in", exact=True)).to_be_visible()
    assert visitor.console == []


# ---------------------------------------------------------------- read state, mentions, notifications


def test_unread_counts_come_from_the_server_and_reading_in_one_tab_reads_in_the_others(
    open_page: OpenPage, server: ServerThread
) -> None:
    alice = open_page(server.base_url, "alice")
    alice.join("news")
    alice.join("quiet")
    second = alice.context.new_page()
    alice.watch(second)
    second.goto(server.base_url)
    expect(second.locator("#connection")).to_have_text("Connected")
    second_news = second.get_by_role("navigation", name="Conversations").get_by_role(
        "button", name=re.compile("^#news")
    )
    with clients(server.base_url, "bob") as (bob,):
        bob.join("news")
        for n in range(20):
            bob.send_message(f"news {n}", room="news")
        expect(alice.conversation("#news")).to_have_accessible_name("#news, 2 members, 20 unread messages")
        expect(second_news).to_have_accessible_name("#news, 2 members, 20 unread messages")
        # Reading in the first tab reads in the second one too.
        alice.conversation("#news").click()
        expect(alice.texts("news 19")).to_have_count(1)
        expect(alice.conversation("#news")).to_have_accessible_name("#news, 2 members")
        expect(second_news).to_have_accessible_name("#news, 2 members")
        expect(second).to_have_title("tornado-chat")
        # A reopened tab counts from the server: nothing already read shows as unread again.
        second.close()
        third = alice.context.new_page()
        alice.watch(third)
        third.goto(server.base_url)
        expect(third.locator("#connection")).to_have_text("Connected")
        expect(third.locator('#room-list li[data-key="room:news"] button')).to_have_accessible_name("#news, 2 members")
        expect(third).to_have_title("tornado-chat")
        third.close()
        # The "New messages" line marks where the reader stood, and the page opens there.
        alice.conversation("#quiet").click()
        for n in range(30):
            bob.send_message(f"later {n}", room="news")
        expect(alice.conversation("#news")).to_have_accessible_name("#news, 2 members, 30 unread messages")
        alice.conversation("#news").click()
        line = alice.messages.locator("li.new-divider")
        expect(line).to_have_text("New messages")
        expect(line).to_be_in_viewport()
        expect(alice.messages.locator("li.new-divider + li .text")).to_have_text("later 0")


def test_mentions_are_highlighted_and_notify_while_the_tab_is_hidden_unless_muted(
    open_page: OpenPage, server: ServerThread
) -> None:
    alice = open_page(server.base_url, "alice", log_in=False)
    alice.page.add_init_script(FAKE_NOTIFICATIONS)
    alice.page.reload()
    alice.log_in()
    alice.join("team")
    alice.join("elsewhere")
    assert alice.page.evaluate("window.__asked") == 0  # never asked on load
    alice.account_menu().get_by_role("button", name="Turn on desktop notifications").click()
    assert alice.page.evaluate("window.__asked") == 1
    expect(alice.page.locator("#notify-button")).to_have_text("Desktop notifications are on")
    with clients(server.base_url, "bob") as (bob,):
        bob.join("team")
        set_hidden(alice.page, True)
        bob.send_message("@alice can you review?", room="team")
        bob.send_message("just chatting", room="team")
        bob.send_message("psst", to="alice")
        alice.page.wait_for_function("() => window.__notes.length === 2")
        notes = alice.page.evaluate("window.__notes")
        assert [(n["title"], n["body"], n["tag"]) for n in notes] == [
            ("bob in #team", "@alice can you review?", "room:team"),
            ("bob", "psst", "dm:bob"),
        ]
        expect(alice.conversation("#team")).to_have_accessible_name("#team, 2 members, 2 unread messages, 1 mention")
        icon = alice.page.locator('link[rel="icon"]')
        expect(icon).to_have_attribute("href", re.compile(r"^data:image/svg\+xml,.*%3E3%3C%2Ftext%3E"))  # a 3 on it
        expect(alice.page).to_have_title("(3) tornado-chat")
        # Muted: no notification, and out of the title and the icon.
        set_hidden(alice.page, False)
        alice.conversation("#team").click()
        mention = alice.messages.locator("li.message.mentions-me .mention.me")
        expect(mention).to_have_text("@alice")
        alice.page.get_by_role("button", name="Mute").click()
        expect(alice.page.locator("#mute-button")).to_have_attribute("aria-pressed", "true")
        alice.conversation("#elsewhere").click()
        set_hidden(alice.page, True)
        bob.send_message("@alice again", room="team")
        expect(alice.conversation("#team")).to_have_accessible_name(
            "#team, 2 members, 1 unread message, 1 mention, muted"
        )
        bob.send_message("hello?", to="alice")
        alice.page.wait_for_function("() => window.__notes.length === 3")
        assert alice.page.evaluate("window.__notes.map((n) => n.body)") == [
            "@alice can you review?", "psst", "hello?"
        ]  # fmt: skip
        expect(alice.page).to_have_title("(2) tornado-chat")  # the two direct messages; #team is muted


def test_typing_shows_for_the_others_and_runs_out(open_page: OpenPage, server: ServerThread) -> None:
    alice = open_page(server.base_url, "alice")
    bob = open_page(server.base_url, "bob")
    for chat in (alice, bob):
        chat.join("desk")
    box(bob).press_sequentially("let me think")
    typing = alice.page.locator("#typing")
    expect(typing).to_have_text("bob is typing…")
    expect(bob.page.locator("#typing")).to_have_text("")
    expect(typing).to_have_text("", timeout=8_000)  # five seconds after the last notice
    box(bob).press_sequentially("!")
    expect(typing).to_have_text("bob is typing…")
    box(bob).press("Enter")
    expect(alice.texts("let me think!")).to_have_count(1)
    expect(typing).to_have_text("")  # the message came: done typing


def test_search_finds_words_and_chinese_and_opens_the_result_in_its_conversation(
    open_page: OpenPage, tmp_path: Any
) -> None:
    server = ServerThread(make_settings(tmp_path, rate_limit_per_s=1000.0, rate_limit_burst=1000)).start()
    try:
        with clients(server.base_url, "bob") as (bob,):
            bob.join("archive")
            bob.send_message("The Café opens at nine", room="archive")
            bob.send_message("我们明天在世界公园见面", room="archive")
            for n in range(120):
                bob.send_message(f"filler {n}", room="archive")
            bob.join("secret")
            bob.send_message("café in the secret room", room="secret")
        alice = open_page(server.base_url, "alice")
        alice.join("archive")
        search = alice.page.get_by_role("searchbox", name="Search messages")
        search.fill("cafe")
        search.press("Enter")
        results = alice.page.get_by_role("list", name="Search results")
        expect(results.get_by_role("button")).to_have_count(1)  # not the room she is not in
        expect(results).to_contain_text("The Café opens at nine")
        search.fill("世界")
        search.press("Enter")
        expect(results.get_by_role("button")).to_have_count(1)
        results.get_by_role("button").click()
        found = alice.messages.locator("li.found")
        expect(found).to_contain_text("我们明天在世界公园见面")
        expect(found).to_be_in_viewport()
        expect(alice.page.locator("#search-panel")).to_be_hidden()
    finally:
        server.stop()


def test_formatting_is_built_as_elements_and_reply_quotes(open_page: OpenPage, server: ServerThread) -> None:
    alice = open_page(server.base_url, "alice")
    alice.join("fmt")
    with clients(server.base_url, "bob") as (bob,):
        bob.join("fmt")
        links = "[docs](https://example.org/docs) [bad](javascript:alert(1))"
        bob.send_message(f"**bold** *it* `x<y>` {links}\n```\n<b>raw</b>\n```\n> quoted", room="fmt")
        message = alice.messages.locator("li.message").last
        expect(message.locator("strong")).to_have_text("bold")
        expect(message.locator("em")).to_have_text("it")
        expect(message.locator("p code")).to_have_text("x<y>")
        expect(message.locator("pre code")).to_have_text("<b>raw</b>")
        expect(message.locator("blockquote")).to_have_text("quoted")
        expect(message.get_by_role("link")).to_have_count(1)
        expect(message.get_by_role("link")).to_have_attribute("href", "https://example.org/docs")
        expect(message.locator("b, script")).to_have_count(0)
        message.hover()
        message.get_by_role("button", name="Reply to bob").click()
        expect(box(alice)).to_have_value(re.compile(r"^> \*\*bold\*\* .*\n> ```\n> <b>raw</b>\n> …\n@bob $"))
        box_text = box(alice).input_value()
        box(alice).press_sequentially("agreed")
        box(alice).press("Enter")
        assert bob.expect("message", text=f"{box_text}agreed")["mentions"] == ["bob"]
    assert not alice.dialogs


def test_a_group_conversation_from_the_page(open_page: OpenPage, server: ServerThread) -> None:
    alice = open_page(server.base_url, "alice")
    bob = open_page(server.base_url, "bob")
    with clients(server.base_url, "carol") as (carol,):
        alice.message_person("bob, carol")  # a group: several names
        alice.say("lunch, the three of us?")
        got = carol.expect("message")
        assert got["members"] == ["alice", "bob", "carol"] and got["text"] == "lunch, the three of us?"
        expect(bob.conversation("alice, carol")).to_have_accessible_name("alice, carol, group of 3, 1 unread message")
        bob.conversation("alice, carol").click()
        expect(bob.texts("lunch, the three of us?")).to_have_count(1)
        bob.say("yes!")
        assert carol.expect("message", text="yes!")["from"] == "bob"
        expect(alice.texts("yes!")).to_have_count(1)
        carol.send({"type": "send", "id": "c1", "to": ["alice", "bob"], "text": "count me in @alice"})
        expect(alice.texts("count me in @alice")).to_have_count(1)
        expect(alice.messages.locator(".mention.me")).to_have_text("@alice")


def test_the_phone_view_reaches_search_and_group_conversations(open_page: OpenPage, server: ServerThread) -> None:
    alice = open_page(server.base_url, "alice", viewport=PHONE)
    alice.join("small")
    alice.say("tiny screen notes")
    alice.page.get_by_role("button", name="Back to conversations").click()
    search = alice.page.get_by_role("searchbox", name="Search messages")
    search.fill("tiny")
    search.press("Enter")
    results = alice.page.get_by_role("list", name="Search results")
    expect(results.get_by_role("button")).to_have_count(1)
    assert alice.page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    results.get_by_role("button").click()
    expect(alice.messages.locator("li.found")).to_contain_text("tiny screen notes")
    assert json.loads(json.dumps(alice.errors)) == []
