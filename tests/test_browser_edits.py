"""Edits and deletes in the day-one page (headless Chromium against a real server): an edited message is rendered
again as Markdown, with its new mentions; a tombstone says "message deleted"; an edit (Up arrow or the Edit
button) borrows the message box without losing the tab's draft, and is counted in code points like a new
message; a group conversation's messages are edited and deleted by their author on every member's page.

Every wait is for something the page or the server shows; nothing sleeps to synchronise.
"""

# ruff: noqa: F811 - `open_page` is test_browser.py's fixture, imported here and named by each test

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Locator, expect

from .conftest import make_settings
from .support import ServerThread, clients
from .test_browser import ChatPage, OpenPage, open_page  # noqa: F401 - a fixture
from .test_browser_rooms import bubble, delete_message, wait_stored

pytestmark = pytest.mark.system

# A small text limit, so that the composer's counter shows while editing.
TEXT_CHARS = 20


@pytest.fixture
def small_server(tmp_path: Path) -> Iterator[ServerThread]:
    running = ServerThread(make_settings(tmp_path, max_text_chars=TEXT_CHARS)).start()
    try:
        yield running
    finally:
        running.stop()


def box(chat: ChatPage) -> Locator:
    return chat.page.get_by_role("textbox", name="Message", exact=True)


def edit_button(chat: ChatPage, text: str) -> Locator:
    message = bubble(chat, text)
    message.hover()
    return message.get_by_role("button", name="Edit message")


def test_an_edit_renders_markdown_keeps_the_draft_and_counts_code_points(
    open_page: OpenPage, small_server: ServerThread
) -> None:
    alice = open_page(small_server.base_url, "alice")
    bob = open_page(small_server.base_url, "bob")
    for chat in (alice, bob):
        chat.join("notes")
    alice.say("plain words")
    alice.say("second one")
    expect(bob.texts("second one")).to_have_count(1)

    # A draft is typed; the Edit button borrows the box, and gives the draft back when the edit is saved.
    box(alice).fill("my draft")
    edit_button(alice, "plain words").click()
    expect(alice.page.locator("#editing-banner")).to_be_visible()
    expect(box(alice)).to_have_value("plain words")
    box(alice).fill("**bold** `code` @bob")
    box(alice).press("Enter")
    expect(alice.page.locator("#editing-banner")).to_be_hidden()
    expect(box(alice)).to_have_value("my draft")
    for chat in (alice, bob):
        edited = bubble(chat, "bold code @bob")
        expect(edited.locator(".text strong")).to_have_text("bold")
        expect(edited.locator(".text code")).to_have_text("code")
        expect(edited.locator(".edited")).to_have_text("edited")
    # The edit's new mention is bob's: highlighted on his page (no notification: it is not a new message).
    expect(bubble(bob, "bold code @bob")).to_have_class(re.compile(r"\bmentions-me\b"))
    expect(bubble(bob, "bold code @bob").locator(".mention.me")).to_have_text("@bob")
    # The draft, not the edit, is what a reload of the tab brings back.
    alice.page.reload()
    expect(alice.status).to_have_text("Connected")
    expect(alice.title).to_have_text("#notes")
    expect(box(alice)).to_have_value("my draft")

    # Up arrow in the empty box edits the last message; the length is counted in code points, as for a send.
    box(alice).fill("")
    wait_stored(alice, "second one")
    box(alice).press("ArrowUp")
    expect(box(alice)).to_have_value("second one")
    counter = alice.page.locator("#composer-count")
    box(alice).fill("😀" * (TEXT_CHARS + 1))
    expect(counter).to_have_text(f"{TEXT_CHARS + 1} / {TEXT_CHARS} characters: too long to send")
    expect(alice.page.get_by_role("button", name="Send")).to_be_disabled()
    box(alice).press("Enter")
    expect(alice.page.locator("#toast")).to_contain_text("too long")
    expect(alice.page.locator("#editing-banner")).to_be_visible()
    box(alice).fill("😀" * TEXT_CHARS)
    expect(counter).to_have_text(f"{TEXT_CHARS} / {TEXT_CHARS}")
    expect(alice.page.get_by_role("button", name="Send")).to_be_enabled()
    box(alice).press("Enter")
    expect(alice.page.locator("#editing-banner")).to_be_hidden()
    expect(box(alice)).to_have_value("")
    for chat in (alice, bob):
        expect(bubble(chat, "😀" * TEXT_CHARS).locator(".edited")).to_have_text("edited")

    # A deleted message is a tombstone on every page: no text, no mention, nothing to reply to.
    delete_message(alice, "bold code @bob")
    for chat in (alice, bob):
        tombstone = bubble(chat, "message deleted")
        expect(tombstone).to_have_count(1)
        expect(tombstone.locator(".mention")).to_have_count(0)
        expect(chat.texts("bold code @bob")).to_have_count(0)
    expect(bob.messages.locator("li.mentions-me")).to_have_count(0)
    bubble(bob, "message deleted").hover()
    expect(bubble(bob, "message deleted").get_by_role("button")).to_have_count(0)


def test_a_group_message_is_edited_and_deleted_by_its_author_on_every_page(
    open_page: OpenPage, server: ServerThread
) -> None:
    alice = open_page(server.base_url, "alice")
    bob = open_page(server.base_url, "bob")
    with clients(server.base_url, "carol") as (carol,):
        alice.message_person("bob, carol")  # a group: several names
        alice.say("lunch at noon")
        seq = carol.expect("message", text="lunch at noon")["seq"]
        bob.conversation("alice, carol").click()
        expect(bob.texts("lunch at noon")).to_have_count(1)
        # Only its author may change it: bob's page offers no Edit or Delete on it.
        bubble(bob, "lunch at noon").hover()
        expect(bubble(bob, "lunch at noon").get_by_role("button", name="Edit message")).to_have_count(0)
        expect(bubble(bob, "lunch at noon").get_by_role("button", name="Delete message")).to_have_count(0)
        wait_stored(alice, "lunch at noon")
        box(alice).press("ArrowUp")
        expect(box(alice)).to_have_value("lunch at noon")
        box(alice).fill("lunch at *one*")
        box(alice).press("Enter")
        edited = carol.expect("edited", seq=seq)
        assert edited["members"] == ["alice", "bob", "carol"] and edited["text"] == "lunch at *one*"
        expect(bubble(bob, "lunch at one").locator(".text em")).to_have_text("one")
        expect(bubble(bob, "lunch at one").locator(".edited")).to_have_text("edited")
        delete_message(alice, "lunch at one")
        assert carol.expect("deleted", seq=seq)["members"] == ["alice", "bob", "carol"]
        expect(bubble(bob, "message deleted")).to_have_count(1)
