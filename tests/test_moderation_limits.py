"""Rooms and moderation meet resource control, against a real server: names in any case, caps on every way into
a room, a paged room list that keeps private rooms private, rooms that go when they empty, and logins of
disabled accounts under the throttle."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tornado_chat.sqlite_schema import DB_FILE

from .conftest import make_settings
from .support import (
    Client,
    ServerThread,
    clients,
    http,
    login,
    metric,
    password_for,
    run_cli,
    scrape,
    wait_until,
)
from .test_moderation import bearer, refusal
from .test_security import admin, post

pytestmark = pytest.mark.integration


@pytest.fixture
def with_admin(tmp_path: Path) -> Iterator[ServerThread]:
    """A server whose data directory has one server admin, root, made by the command line before it starts."""
    made = admin(tmp_path / "data", "add", "root", "--admin", "--password-stdin", password=password_for("root"))
    assert made.returncode == 0, made.stderr
    running = ServerThread(make_settings(tmp_path, login_attempts_per_min=10_000)).start()
    try:
        yield running
    finally:
        running.stop()


def act(client: Client, frame: dict[str, Any]) -> dict[str, Any]:
    """Send a moderation frame with an id; the room state that answers it."""
    frame_id = client.new_id()
    client.send({**frame, "id": frame_id})
    return client.expect("room", id=frame_id)


def pages(client: Client, limit: int) -> tuple[list[dict[str, Any]], set[int]]:
    """Every page of the room list, ``limit`` rooms at a time: the rooms in order, and the totals the pages gave."""
    rooms: list[dict[str, Any]] = []
    totals: set[int] = set()
    after: str | None = None
    while True:
        client.send({"type": "rooms", "after": after, "limit": limit})
        page = client.expect("rooms", after=after)
        assert len(page["rooms"]) <= limit
        rooms += page["rooms"]
        totals.add(page["total"])
        after = page["next"]
        if after is None:
            return rooms, totals


# ---------------------------------------------------------------- names


def test_moderation_names_an_account_in_any_case_as_a_login_does(with_admin: ServerThread) -> None:
    url = with_admin.base_url
    login(url, "mallory")
    with clients(url, "alice", "bob", "carol", "root") as (alice, bob, carol, root):
        alice.send({"type": "create", "room": "den", "private": True, "id": "c"})
        alice.expect("joined", id="c")
        assert act(alice, {"type": "invite", "room": "den", "user": "BOB"})["members"] == ["alice", "bob"]
        assert bob.expect("joined", room="den")["room"] == "den"
        assert act(alice, {"type": "promote", "room": "den", "user": "Bob"})["roles"]["bob"] == "moderator"
        assert "bob" not in act(alice, {"type": "demote", "room": "den", "user": "bOB"})["roles"]
        act(alice, {"type": "invite", "room": "den", "user": "carol"})
        carol.expect("joined", room="den")
        assert act(alice, {"type": "kick", "room": "den", "user": "CAROL"})["members"] == ["alice", "bob"]
        assert carol.expect("removed", room="den")["reason"] == "kicked"
        assert act(alice, {"type": "ban", "room": "den", "user": "Carol"})["banned"] == ["carol"]
        assert act(alice, {"type": "unban", "room": "den", "user": "CaRoL"})["banned"] == []
        assert act(alice, {"type": "transfer", "room": "den", "user": "BOB"})["roles"] == {
            "alice": "moderator",
            "bob": "owner",
        }
        assert refusal(alice, {"type": "invite", "room": "den", "user": "Nobody"})["code"] == "unknown_user"
        bob.send({"type": "audit", "room": "den", "id": "a"})
        targets = [entry["user"] for entry in bob.expect("audit", id="a")["entries"]]
        assert targets == ["bob", "carol", "carol", "carol", "carol", "bob", "bob", "bob"]  # their own spelling
        # An admin disables an account named in any case; it is that account that cannot log in.
        root.send({"type": "disable", "user": "MALLORY", "id": "x"})
        assert root.expect("disabled", id="x")["user"] == "mallory"
        wrong_case = {"username": "Mallory", "password": password_for("mallory")}
        assert post(url + "api/login", wrong_case)[2]["error"] == "account_disabled"


def test_the_command_line_names_accounts_in_any_case(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert admin(data, "add", "Dora", "--password-stdin", password="dora's password").returncode == 0
    taken = admin(data, "add", "dora", "--password-stdin", password="another password")
    assert taken.returncode == 1 and "exists in some case" in taken.stderr
    for args in (("admin", "DORA", "on"), ("disable", "dora"), ("enable", "dORA"), ("admin", "dora", "off")):
        done = admin(data, *args)
        assert done.returncode == 0 and done.stdout.strip() == f"{args[0]}: Dora: done", (args, done.stderr)
    assert admin(data, "passwd", "DORA", "--password-stdin", password="a new password").returncode == 0
    assert admin(data, "disable", "nobody").returncode == 1
    log = admin(data, "list").stdout.splitlines()
    assert log == ["Dora\tactive"]
    audit = [line.split("\t")[2:5] for line in _audit(data)]
    assert audit == [
        ["admin_off", "-", "Dora"],
        ["enable", "-", "Dora"],
        ["disable", "-", "Dora"],
        ["admin_on", "-", "Dora"],
    ]
    server = ServerThread(make_settings(tmp_path)).start()
    try:
        status, _, answer = post(server.base_url + "api/login", {"username": "DORA", "password": "a new password"})
        assert status == 200 and answer["username"] == "Dora"
    finally:
        server.stop()
    assert admin(data, "remove", "dORa").stdout.strip() == "remove: Dora: done"


def _audit(data: Path) -> list[str]:
    done = run_cli("--data-dir", str(data), "audit")
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


# ---------------------------------------------------------------- logins of disabled accounts


def test_a_disabled_account_answers_403_to_its_password_and_a_wrong_one_is_a_failure(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, login_attempts_per_min=3, trust_proxy_headers=True)
    server = ServerThread(settings).start()
    try:
        url = server.base_url
        login(url, "erin")
        assert admin(tmp_path / "data", "disable", "erin").returncode == 0
        right = {"username": "erin", "password": password_for("erin")}
        wrong = {"username": "erin", "password": "not her password"}

        def attempt(body: dict[str, str], address: str) -> tuple[int, str]:
            status, _, answer = post(url + "api/login", body, **{"X-Real-IP": address})
            return status, answer.get("error", "")

        wait_until(lambda: attempt(right, "10.0.0.9") == (403, "account_disabled"), "the disable to apply")
        # From one address: wrong passwords are failures like any other; the right one is never a failure.
        assert attempt(wrong, "10.0.0.1") == (401, "bad_credentials")
        assert attempt(wrong, "10.0.0.1") == (401, "bad_credentials")
        assert attempt(right, "10.0.0.1") == (403, "account_disabled")
        assert attempt(right, "10.0.0.1") == (403, "account_disabled")
        assert attempt(wrong, "10.0.0.1") == (401, "bad_credentials")
        assert attempt(right, "10.0.0.1") == (429, "too_many_attempts")  # 3 failures: nothing is checked now
        # The name's failures slow guessers only: from another address the right password is answered at once.
        assert attempt(right, "10.0.0.2") == (403, "account_disabled")
        samples = scrape(server.ops_url)
        assert metric(samples, "chat_auth_refused_total", code="account_disabled") >= 4
        assert metric(samples, "chat_auth_refused_total", code="bad_credentials") == 3
        assert metric(samples, "chat_http_refused_total") == 0  # account refusals are counted apart
    finally:
        server.stop()


# ---------------------------------------------------------------- caps


def test_room_caps_hold_for_create_and_invite_as_for_join(tmp_path: Path) -> None:
    server = ServerThread(make_settings(tmp_path, max_rooms_per_user=2, room_creations_per_hour=3)).start()
    try:
        with clients(server.base_url, "alice", "bob") as (alice, bob):
            for room in ("a", "b"):
                alice.send({"type": "create", "room": room, "id": room})
                alice.expect("joined", id=room)
            full = refusal(alice, {"type": "create", "room": "c"})
            assert full["code"] == "too_many_rooms" and "leave one" in full["message"]
            alice.send({"type": "leave", "room": "a"})
            alice.expect("left", room="a")
            alice.send({"type": "create", "room": "c", "private": True, "id": "c"})  # the third this hour
            alice.expect("joined", id="c")
            alice.send({"type": "leave", "room": "c"})
            alice.expect("left", room="c")
            hourly = refusal(alice, {"type": "create", "room": "d"})
            assert hourly["code"] == "too_many_rooms" and "an hour" in hourly["message"]
            assert refusal(alice, {"type": "join", "room": "d"})["code"] == "too_many_rooms"  # a join creates too
            # The membership cap holds for an invitee too: whoever invites is told.
            bob.send({"type": "create", "room": "e", "private": True, "id": "e"})
            bob.expect("joined", id="e")
            bob.join("f")
            alice.join("f")  # a room that exists: no creation, a second membership
            invited = refusal(bob, {"type": "invite", "room": "e", "user": "alice"})
            assert invited["code"] == "too_many_rooms" and "alice" in invited["message"]
            alice.send({"type": "leave", "room": "f"})
            alice.expect("left", room="f")
            assert act(bob, {"type": "invite", "room": "e", "user": "alice"})["members"] == ["alice", "bob"]
        assert metric(scrape(server.ops_url), "chat_errors_total", code="too_many_rooms") == 4
    finally:
        server.stop()


# ---------------------------------------------------------------- the room list


def test_the_paged_room_list_never_shows_a_private_room_to_a_non_member(with_admin: ServerThread) -> None:
    url = with_admin.base_url
    with clients(url, "alice", "bob", "root") as (alice, bob, root):
        public = ["r1", "r2", "r3", "r4", "r5"]
        for room in public:
            alice.join(room)
        for room, topic in (("r2x", "hidden"), ("r4x", "also hidden"), ("zz", "last")):
            alice.send({"type": "create", "room": room, "private": True, "topic": topic, "id": room})
            alice.expect("joined", id=room)
        everything = sorted([*public, "r2x", "r4x", "zz"])
        for limit in (1, 2, 3, 100):
            seen, totals = pages(bob, limit)
            assert [r["room"] for r in seen] == public and totals == {5}, limit
            assert all(r["private"] is False and r["member"] is False for r in seen)
            mine, totals = pages(alice, limit)
            assert [r["room"] for r in mine] == everything and totals == {8}, limit
            assert {r["room"]: r["topic"] for r in mine if r["private"]} == {
                "r2x": "hidden",
                "r4x": "also hidden",
                "zz": "last",
            }
            assert [r["room"] for r in pages(root, limit)[0]] == everything  # an admin sees every room
        # Invited into one, bob sees that one too, and only that one.
        act(alice, {"type": "invite", "room": "r4x", "user": "bob"})
        seen, totals = pages(bob, 2)
        assert [r["room"] for r in seen] == ["r1", "r2", "r3", "r4", "r4x", "r5"] and totals == {6}
        # A bare rooms frame is the first page of 100, as before pages.
        bob.send({"type": "rooms"})
        assert bob.expect("rooms")["next"] is None


# ---------------------------------------------------------------- rooms that empty


def test_a_private_room_that_empties_goes_with_its_bans_and_leaves_nothing_to_the_next(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    server = ServerThread(settings).start()
    try:
        url = server.base_url
        with clients(url, "alice", "bob", "carol") as (alice, bob, carol):
            alice.send({"type": "create", "room": "vault", "private": True, "topic": "keys", "id": "c"})
            alice.expect("joined", id="c")
            act(alice, {"type": "invite", "room": "vault", "user": "bob"})
            act(alice, {"type": "ban", "room": "vault", "user": "carol"})
            secret = alice.send_message("the code is 1234", room="vault")
            for member in (bob, alice):
                member.send({"type": "leave", "room": "vault"})
                member.expect("left", room="vault")
            # Gone, with its bans: carol, banned from it, makes a room of that name, and it is hers and new.
            carol.send({"type": "create", "room": "vault", "id": "mine"})
            made = carol.expect("joined", id="mine")
            assert (made["private"], made["topic"], made["roles"], made["banned"]) == (
                False,
                "",
                {"carol": "owner"},
                [],
            )
            _nothing_of_the_old_room(url, carol, secret["seq"])
            alice.join("vault")  # once a member of the old room: nothing of it either
            _nothing_of_the_old_room(url, alice, secret["seq"])
            carol.send_message("a new room", room="vault")
    finally:
        server.stop()
    connection = sqlite3.connect(settings.data_dir / DB_FILE)
    try:
        assert connection.execute("SELECT count(*) FROM room_bans WHERE room = 'vault'").fetchone() == (0,)
        (first_seq,) = connection.execute("SELECT first_seq FROM rooms WHERE name = 'vault'").fetchone()
        assert first_seq >= secret["seq"]
        assert connection.execute("SELECT count(*) FROM messages WHERE text = 'the code is 1234'").fetchone() == (1,)
    finally:
        connection.close()
    restarted = ServerThread(settings).start()
    try:
        with clients(restarted.base_url, "carol") as (carol,):
            _nothing_of_the_old_room(restarted.base_url, carol, secret["seq"], ["a new room"])
    finally:
        restarted.stop()


def _nothing_of_the_old_room(url: str, client: Client, old_seq: int, texts: list[str] | None = None) -> None:
    """``client``, a member of the new room 'vault', gets nothing of the earlier room of that name."""
    client.send({"type": "history", "room": "vault"})
    assert [m["text"] for m in client.expect("history", room="vault")["messages"]] == (texts or [])
    status, _, page = http("GET", url + "api/history?room=vault", headers=bearer(url, client.username))
    assert status == 200 and [m["text"] for m in page["messages"]] == (texts or [])
    assert refusal(client, {"type": "delete", "seq": old_seq})["code"] == "unknown_message"
    if client.username == "carol":  # the owner: the room's audit log starts with the room
        client.send({"type": "audit", "room": "vault", "id": "a"})
        assert client.expect("audit", id="a")["entries"] == []
