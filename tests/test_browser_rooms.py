"""Private rooms, roles, moderation, edits and deletes in the page (headless Chromium against a real server).

Every wait is for something the page or the server shows, with a timeout; nothing sleeps to synchronise.
"""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import Locator, WebSocket, WebSocketRoute, expect

from .support import ServerThread, clients, wait_until
from .test_browser import ChatPage, OpenPage, open_page  # noqa: F401 - the fixture, shared

pytestmark = pytest.mark.system


def watch_frames(chat: ChatPage) -> list[str]:
    """Every frame the page's WebSockets receive, as text, from now on."""
    received: list[str] = []

    def on_socket(socket: WebSocket) -> None:
        socket.on("framereceived", lambda payload: received.append(payload if isinstance(payload, str) else ""))

    chat.page.on("websocket", on_socket)
    return received


def open_members(chat: ChatPage) -> Locator:
    """Open the open room's member panel; returns it."""
    panel = chat.page.locator("#members")
    if panel.get_attribute("open") is None:
        panel.locator("summary").click()
    return panel


def create_room(chat: ChatPage, name: str, topic: str, private: bool) -> None:
    chat.page.get_by_role("button", name="New room…").click()
    dialog = chat.page.get_by_role("dialog", name="New room")
    dialog.get_by_label("Room name").fill(name)
    dialog.get_by_label("Topic (optional)").fill(topic)
    if private:
        dialog.get_by_role("checkbox", name=re.compile("Private")).check()
    dialog.get_by_role("button", name="Create").click()
    expect(dialog).to_be_hidden()
    expect(chat.title).to_have_text(f"#{name}")


def confirm(chat: ChatPage, action: str) -> None:
    dialog = chat.page.locator("#confirm-dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name=action, exact=True).click()
    expect(dialog).to_be_hidden()


def bubble(chat: ChatPage, text: str) -> Locator:
    """The message list item whose text is exactly ``text``."""
    exactly = chat.page.locator(".text").filter(has_text=re.compile(f"^{re.escape(text)}$"))
    return chat.messages.locator("li.message").filter(has=exactly)


def wait_stored(chat: ChatPage, text: str) -> None:
    """Wait until the page holds its own message ``text`` as stored (acked, with a seq): Up arrow edits only
    such a message, and the ack may reach the page later than the message reaches the others."""
    expect(bubble(chat, text).and_(chat.page.locator("li[data-seq]"))).to_have_count(1)


def delete_message(chat: ChatPage, text: str) -> None:
    """Delete a message from its own Delete button (shown on hover), saying yes when asked."""
    message = bubble(chat, text)
    message.hover()
    message.get_by_role("button", name="Delete message").click()
    confirm(chat, "Delete")


def test_a_private_room_with_roles_moderation_edits_and_deletes_in_the_page(
    open_page: OpenPage,  # noqa: F811 - the fixture imported above
    server: ServerThread,
) -> None:
    url = server.base_url
    carol = open_page(url, "carol")  # never a member: she must not see the room appear anywhere
    carol_frames = watch_frames(carol)
    carol.page.reload()
    expect(carol.status).to_have_text("Connected")
    carol.join("lobby")
    alice = open_page(url, "alice")
    alice.join("lobby")  # alice and carol share a public room, so carol does see alice come and go
    bob = open_page(url, "bob")

    create_room(alice, "secret", "launch plans", private=True)
    expect(alice.page.locator("#conv-topic")).to_have_text("launch plans")
    expect(alice.conversation("#secret")).to_have_accessible_name("#secret, private, 1 member")
    members = open_members(alice)
    expect(members.locator("[data-member=alice] .role")).to_have_text("owner")
    members.get_by_label("Name of the person to invite").fill("bob")
    members.get_by_role("button", name="Invite", exact=True).click()
    expect(bob.conversation("#secret")).to_have_accessible_name("#secret, private, 2 members")
    with clients(url, "dave") as (dave,):
        members.get_by_label("Name of the person to invite").fill("dave")
        members.get_by_role("button", name="Invite", exact=True).click()
        dave.expect("joined", room="secret")
        # The owner makes bob a moderator; his badge shows on every page.
        members.get_by_role("button", name="Promote bob").click()
        expect(members.locator("[data-member=bob] .role")).to_have_text("moderator")
        bob.conversation("#secret").click()
        bob_members = open_members(bob)
        expect(bob_members.locator("[data-member=bob] .role")).to_have_text("moderator")
        # A moderator removes members, not the owner.
        expect(bob_members.get_by_role("button", name="Ban dave")).to_be_visible()
        expect(bob_members.get_by_role("button", name="Ban alice")).to_have_count(0)

        # Messages: dave's goes to a moderator's Delete, alice's first draft to Up arrow.
        spam = dave.send_message("buy cheap watches", room="secret")
        expect(bob.texts("buy cheap watches")).to_have_count(1)
        bob.page.keyboard.press("Escape")
        delete_message(bob, "buy cheap watches")
        assert dave.expect("deleted", seq=spam["seq"])["rev"] > spam["seq"]
        for chat in (alice, bob):
            expect(bubble(chat, "message deleted")).to_have_count(1)
            expect(chat.texts("buy cheap watches")).to_have_count(0)
        # The moderator bans dave from the member list, after saying yes; dave is cut off at once.
        open_members(bob).get_by_role("button", name="Ban dave").click()
        confirm(bob, "Ban")
        assert dave.expect("removed", room="secret")["reason"] == "banned"
        expect(open_members(bob).get_by_role("list", name="Banned")).to_contain_text("dave")
        expect(open_members(bob).locator("[data-member=dave]")).to_have_count(0)

    alice.page.keyboard.press("Escape")
    alice.say("first draft")
    expect(bob.texts("first draft")).to_have_count(1)
    wait_stored(alice, "first draft")
    box = alice.page.get_by_role("textbox", name="Message", exact=True)
    box.press("ArrowUp")
    expect(alice.page.locator("#editing-banner")).to_be_visible()
    expect(box).to_have_value("first draft")
    box.fill("final draft")
    box.press("Enter")
    expect(alice.page.locator("#editing-banner")).to_be_hidden()
    for chat in (alice, bob):
        expect(bubble(chat, "final draft").locator(".edited")).to_have_text("edited")
        expect(chat.texts("first draft")).to_have_count(0)
    # Escape leaves a message as it was.
    box.press("ArrowUp")
    box.fill("never sent")
    box.press("Escape")
    expect(box).to_have_value("")
    alice.say("this one goes")
    expect(bob.texts("this one goes")).to_have_count(1)
    delete_message(alice, "this one goes")
    for chat in (alice, bob):
        expect(bubble(chat, "message deleted")).to_have_count(2)
    # The topic is the header's second line, on every member's page.
    members = open_members(alice)
    members.get_by_label("Room topic").fill("launch on friday")
    members.get_by_role("button", name="Set topic").click()
    expect(bob.page.locator("#conv-topic")).to_have_text("launch on friday")

    # After a reload the page shows the same, from history.
    alice.page.reload()
    expect(alice.status).to_have_text("Connected")
    expect(bubble(alice, "final draft").locator(".edited")).to_have_text("edited")
    expect(bubble(alice, "message deleted")).to_have_count(2)
    expect(alice.texts("never sent")).to_have_count(0)

    # carol saw none of it: not in her sidebar, her room list, her header, nor any frame she was sent.
    expect(carol.conversation("#lobby")).to_be_visible()
    carol.page.get_by_text("Other rooms", exact=True).click()
    expect(carol.page.locator("#other-rooms")).not_to_contain_text("secret")
    assert "secret" not in carol.page.locator("body").inner_text()
    assert any('"room":"lobby"' in frame for frame in carol_frames), "the watch sees her frames"
    assert [frame for frame in carol_frames if "secret" in frame] == []
    # Asking for it by name answers as for a room that does not exist, and leaves nothing behind.
    carol.page.get_by_role("textbox", name="Room to join or create").fill("secret")
    carol.page.get_by_role("button", name="Join", exact=True).click()
    expect(carol.page.locator("#join-error")).to_have_text("there is no room called 'secret'")
    expect(carol.page.locator("#sidebar").get_by_role("button", name=re.compile("secret"))).to_have_count(0)
    expect(carol.page.locator("#other-rooms")).not_to_contain_text("secret")
    leaked = [json.loads(frame) for frame in carol_frames if "secret" in frame]
    assert [(frame["type"], frame["code"]) for frame in leaked] == [("error", "unknown_room")]


def test_a_kicked_member_loses_the_private_room_at_once(open_page: OpenPage, server: ServerThread) -> None:  # noqa: F811
    url = server.base_url
    bob = open_page(url, "bob")
    with clients(url, "alice") as (alice,):
        alice.send({"type": "create", "room": "inner", "private": True, "id": "c"})
        alice.expect("joined", id="c")
        alice.send({"type": "invite", "room": "inner", "user": "bob", "id": "i"})
        alice.expect("room", id="i")
        bob.conversation("#inner").click()
        alice.send_message("welcome in", room="inner")
        expect(bob.texts("welcome in")).to_have_count(1)
        alice.send({"type": "kick", "room": "inner", "user": "bob", "id": "k"})
        alice.expect("room", id="k")
        expect(bob.conversation("#inner")).to_have_count(0)
        expect(bob.page.locator("#toast")).to_have_text("alice removed you from #inner.")
        expect(bob.title).to_have_text("Welcome")
        bob.page.get_by_text("Other rooms", exact=True).click()
        expect(bob.page.locator("#other-rooms")).not_to_contain_text("inner")


def test_an_edit_lost_with_the_link_is_sent_again_with_its_id(open_page: OpenPage, server: ServerThread) -> None:  # noqa: F811
    alice = open_page(server.base_url, "alice")
    alice.join("desk")
    edits: list[dict[str, object]] = []
    routes: list[WebSocketRoute] = []
    mode = {"value": "pass"}

    def route(ws: WebSocketRoute) -> None:
        routes.append(ws)
        upstream = ws.connect_to_server()

        def from_page(message: str | bytes) -> None:
            frame = json.loads(message)
            if frame.get("type") == "edit":
                edits.append(frame)
                if mode["value"] == "drop":
                    return
            upstream.send(message)

        ws.on_message(from_page)

    alice.page.route_web_socket(re.compile(r"/ws(\?|$)"), route)
    alice.page.reload()
    expect(alice.status).to_have_text("Connected")
    with clients(server.base_url, "bob") as (bob,):
        bob.join("desk")
        alice.say("teh plan")
        said = bob.expect("message", text="teh plan")
        mode["value"] = "drop"
        wait_stored(alice, "teh plan")
        box = alice.page.get_by_role("textbox", name="Message", exact=True)
        box.press("ArrowUp")
        expect(box).to_have_value("teh plan")
        box.fill("the plan")
        box.press("Enter")
        expect(box).to_have_value("")
        # The route's handlers run only while Playwright is called: each poll makes a call.
        wait_until(lambda: alice.page.evaluate("1") == 1 and len(edits) == 1, "the edit to leave the page")
        # The link breaks before the edit got through; on the next connection the page sends it again.
        mode["value"] = "pass"
        routes[-1].close(code=1012, reason=json.dumps({"retry_after_ms": 0}))
        wait_until(lambda: alice.page.evaluate("1") == 1 and len(edits) == 2, "the edit to be sent again")
        assert bob.expect("edited", seq=said["seq"])["text"] == "the plan"
        expect(bubble(alice, "the plan").locator(".edited")).to_have_text("edited")
    assert len(edits) == 2 and edits[0]["id"] == edits[1]["id"], edits
