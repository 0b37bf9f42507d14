"""Private rooms, roles, moderation, edits and deletes, black-box: a real server process, real clients.

Three users (alice, bob, carol) and one server admin (root, made with ``tornado-chat user add --admin``) prove
what docs/security.md promises: a private room's messages, history, presence and existence never reach a
non-member by any path; roles are enforced with the documented error codes; edits and deletes reach live
sessions and survive a restart; the audit log records each action.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .support import (
    Client,
    ServerProcess,
    clients,
    connect,
    http,
    login,
    metric,
    password_for,
    scrape,
    wait_until,
)
from .test_security import admin, closed_with, post

pytestmark = pytest.mark.integration


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data directory with one server admin, root, made by the command line before the server starts."""
    path = tmp_path / "data"
    made = admin(path, "add", "root", "--admin", "--password-stdin", password=password_for("root"))
    assert made.returncode == 0, made.stderr
    return path


@pytest.fixture
def server(data_dir: Path) -> Iterator[ServerProcess]:
    running = ServerProcess("--data-dir", str(data_dir), "--login-attempts-per-min", "10000").start()
    try:
        yield running
    finally:
        running.stop()


def refusal(client: Client, frame: dict[str, Any]) -> dict[str, Any]:
    """Send a frame with an id and return the error frame that answers it."""
    frame_id = client.new_id()
    client.send({**frame, "id": frame_id})
    return client.expect("error", id=frame_id)


def drained(client: Client) -> list[dict[str, Any]]:
    """After a round trip through the server: every frame this client has been sent and not yet read."""
    client.barrier()
    frames, client.backlog = client.backlog, []
    return frames


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tornado_chat", "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=Path(__file__).resolve().parent.parent,
    )


def bearer(base_url: str, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {login(base_url, user)}"}


# ---------------------------------------------------------------- privacy


def test_a_private_room_never_reaches_a_non_member_by_any_path(server: ServerProcess) -> None:
    url = server.base_url
    with clients(url, "alice", "bob", "carol", "root") as (alice, bob, carol, root):
        carol.join("lobby")  # a room of her own: carol is live and has something she may see
        alice.send({"type": "create", "room": "secret", "private": True, "topic": "launch", "id": "c1"})
        created = alice.expect("joined", room="secret", id="c1")
        assert created["private"] is True and created["roles"] == {"alice": "owner"}
        alice.send({"type": "invite", "room": "secret", "user": "bob", "id": "i1"})
        assert alice.expect("room", id="i1")["members"] == ["alice", "bob"]
        assert bob.expect("joined", room="secret")["topic"] == "launch"
        said = alice.send_message("the launch is on friday", room="secret")
        assert bob.expect("message", seq=said["seq"])["text"] == "the launch is on friday"

        # Every way in answers carol as for a room that does not exist, word for word.
        def same_as_missing(frame: dict[str, Any]) -> None:
            hidden = refusal(carol, {**frame, "room": "secret"})
            missing = refusal(carol, {**frame, "room": "nowhere"})
            assert hidden["code"] == missing["code"] == "unknown_room", (frame, hidden)
            assert hidden["message"] == missing["message"].replace("nowhere", "secret")

        for frame in (
            {"type": "send", "text": "let me in"},
            {"type": "history"},
            {"type": "leave"},
            {"type": "kick", "user": "bob"},
            {"type": "invite", "user": "carol"},
            {"type": "topic", "topic": "mine now"},
            {"type": "audit"},
        ):
            same_as_missing(frame)
        # Joining answers the same, and creates nothing; only the name is taken (docs/security.md).
        joined = refusal(carol, {"type": "join", "room": "secret"})
        assert (joined["code"], joined["message"]) == ("unknown_room", "there is no room called 'secret'")
        assert refusal(carol, {"type": "create", "room": "secret"})["code"] == "room_exists"
        # Its messages cannot be named either.
        for seq in (said["seq"], 10**12):
            assert refusal(carol, {"type": "edit", "seq": seq, "text": "x"})["code"] == "unknown_message"
            assert refusal(carol, {"type": "delete", "seq": seq})["message"] == f"there is no message {seq} for you"
        # History over HTTP: the same 404 as a room that does not exist.
        carol_auth = bearer(url, "carol")
        hidden_http = http("GET", url + "api/history?room=secret", headers=carol_auth)
        missing_http = http("GET", url + "api/history?room=nowhere", headers=carol_auth)
        assert hidden_http[0] == missing_http[0] == 404
        assert hidden_http[2] == {**missing_http[2], "message": missing_http[2]["message"].replace("nowhere", "secret")}
        assert http("GET", url + "api/history?room=secret", headers=bearer(url, "bob"))[0] == 200
        # The room list: carol does not see it; its members and the admin do.
        carol.send({"type": "rooms"})
        assert [r["room"] for r in carol.expect("rooms")["rooms"]] == ["lobby"]
        root.send({"type": "rooms"})
        listed = {r["room"]: r for r in root.expect("rooms")["rooms"]}
        assert (listed["secret"]["private"], listed["secret"]["member"]) == (True, False)

        # Presence and member events of the room go to its members only.
        bob.close()
        assert alice.expect("presence", user="bob")["status"] == "offline"
        bob = connect(url, "bob")
        assert alice.expect("presence", user="bob")["status"] == "online"
        alice.send({"type": "kick", "room": "secret", "user": "bob", "id": "k1"})
        alice.expect("room", id="k1")
        assert bob.expect("removed", room="secret") == {
            "type": "removed",
            "room": "secret",
            "reason": "kicked",
            "by": "alice",
        }
        alice.send_message("bob is out", room="secret")
        assert [f for f in drained(bob) if f.get("room") == "secret"] == []

        # A resume from the very start replays nothing of it either.
        resumed = connect(url, "carol", since="0")
        replayed = resumed.frames_until("resumed")
        assert [f for f in replayed if "secret" in json.dumps(f)] == []
        resumed.close()
        # Nothing else carol was sent (beyond the refusals above) names the room.
        leaks = [f for f in drained(carol) if "secret" in json.dumps(f)]
        assert leaks == []
        bob.close()


# ---------------------------------------------------------------- roles


def test_roles_are_enforced_with_the_documented_codes_and_audited(server: ServerProcess) -> None:
    url = server.base_url
    with clients(url, "alice", "bob", "carol", "root") as (alice, bob, carol, root):
        assert root.welcome["admin"] is True and alice.welcome["admin"] is False
        alice.send({"type": "create", "room": "team", "topic": "", "id": "c"})
        alice.expect("joined", room="team", id="c")
        bob.join("team")
        carol.join("team")
        # A plain member may not moderate.
        assert refusal(bob, {"type": "kick", "room": "team", "user": "carol"})["code"] == "forbidden"
        alice.send({"type": "promote", "room": "team", "user": "bob", "id": "p"})
        assert alice.expect("room", id="p")["roles"] == {"alice": "owner", "bob": "moderator"}
        assert carol.expect("room", room="team")["roles"]["bob"] == "moderator"
        # A moderator moderates members, not the owner, and hands out no roles.
        assert refusal(bob, {"type": "kick", "room": "team", "user": "alice"})["code"] == "forbidden"
        assert refusal(bob, {"type": "promote", "room": "team", "user": "carol"})["code"] == "forbidden"
        assert refusal(bob, {"type": "kick", "room": "team", "user": "nobody"})["code"] == "unknown_user"
        bob.send({"type": "topic", "room": "team", "topic": "ship it", "id": "t"})
        assert bob.expect("room", id="t")["topic"] == "ship it"
        # A ban cuts carol off at once and keeps her out.
        bob.send({"type": "ban", "room": "team", "user": "carol", "id": "b"})
        assert bob.expect("room", id="b")["banned"] == ["carol"]
        assert carol.expect("removed", room="team")["reason"] == "banned"
        assert alice.expect("member", room="team", user="carol", event="banned")["by"] == "bob"
        after = alice.send_message("carol cannot read this", room="team")
        assert [f for f in drained(carol) if f.get("seq") == after["seq"]] == []
        assert refusal(carol, {"type": "join", "room": "team"})["code"] == "banned"
        assert refusal(carol, {"type": "send", "room": "team", "text": "hi"})["code"] == "not_member"
        assert refusal(alice, {"type": "invite", "room": "team", "user": "carol"})["code"] == "banned"
        bob.send({"type": "unban", "room": "team", "user": "carol", "id": "u"})
        assert bob.expect("room", id="u")["banned"] == []
        carol.join("team")
        # Ownership moves by transfer; the old owner stays as a moderator.
        alice.send({"type": "transfer", "room": "team", "user": "bob", "id": "x"})
        assert alice.expect("room", id="x")["roles"] == {"alice": "moderator", "bob": "owner"}
        assert refusal(alice, {"type": "demote", "room": "team", "user": "bob"})["code"] == "forbidden"
        # A server admin does everything everywhere, member or not.
        root.send({"type": "kick", "room": "team", "user": "bob", "id": "r"})
        assert root.expect("room", id="r")["members"] == ["alice", "carol"]
        assert bob.expect("removed", room="team")["by"] == "root"
        # The audit log: the room's owner and admins read it, nobody else.
        assert refusal(alice, {"type": "audit", "room": "team"})["code"] == "forbidden"
        assert refusal(carol, {"type": "audit"})["code"] == "forbidden"
        root.send({"type": "audit", "room": "team", "id": "a"})
        log = root.expect("audit", id="a")
        assert [(e["actor"], e["action"], e.get("user")) for e in reversed(log["entries"])] == [
            ("alice", "promote", "bob"),
            ("bob", "topic", None),
            ("bob", "ban", "carol"),
            ("bob", "unban", "carol"),
            ("alice", "transfer", "bob"),
            ("root", "kick", "bob"),
        ]
        assert log["more"] is False and all(e["room"] == "team" and e["at"].endswith("Z") for e in log["entries"])
    samples = scrape(server.ops_url)
    for action, count in (("promote", 1), ("ban", 1), ("unban", 1), ("transfer", 2), ("kick", 1), ("invite", 0)):
        expected = 1 if action == "transfer" else count  # one transfer, however many roles it moved
        assert metric(samples, "chat_moderation_actions_total", action=action) == expected, action
    # The command line shows the same log.
    printed = cli(Path(server.args[server.args.index("--data-dir") + 1]), "audit", "--room", "team").stdout
    assert [line.split("\t")[1:4] for line in printed.splitlines()][:2] == [
        ["root", "kick", "#team"],
        ["alice", "transfer", "#team"],
    ]


# ---------------------------------------------------------------- edits and deletes


def test_edits_and_deletes_reach_live_sessions_and_survive_a_restart(data_dir: Path) -> None:
    server = ServerProcess("--data-dir", str(data_dir)).start()
    try:
        url = server.base_url
        bob_token = login(url, "bob")
        with clients(url, "alice", "carol") as (alice, carol):
            alice.join("team")
            away = connect(url, "bob", token=bob_token)  # will miss the changes, and resume after the restart
            away.join("team")
            live = connect(url, "bob", token=bob_token)  # sees them as they happen
            first = alice.send_message("helo", room="team")
            second = alice.send_message("this goes", room="team")
            direct = alice.send_message("just us", to="carol")
            away.expect("message", seq=second["seq"])
            cursor = second["seq"]
            away.close()

            alice.send({"type": "edit", "seq": first["seq"], "text": "hello", "id": "e1"})
            edited = alice.expect("edited", id="e1")
            assert (edited["seq"], edited["text"], edited["rev"] > direct["seq"]) == (first["seq"], "hello", True)
            assert {k: v for k, v in live.expect("edited", seq=first["seq"]).items()} == {
                k: v for k, v in edited.items() if k != "id"
            }
            alice.send({"type": "delete", "seq": second["seq"], "id": "d1"})
            deleted = alice.expect("deleted", id="d1")
            assert "text" not in deleted and live.expect("deleted", seq=second["seq"])["rev"] == deleted["rev"]
            alice.send({"type": "edit", "seq": direct["seq"], "text": "just the two of us", "id": "e2"})
            newest = alice.expect("edited", id="e2")["rev"]
            assert carol.expect("edited", seq=direct["seq"])["text"] == "just the two of us"
            # Only the author edits; a non-member cannot even name the message.
            assert refusal(live, {"type": "edit", "seq": first["seq"], "text": "mine"})["code"] == "forbidden"
            assert refusal(live, {"type": "delete", "seq": first["seq"]})["code"] == "forbidden"
            assert refusal(carol, {"type": "delete", "seq": first["seq"]})["code"] == "unknown_message"
            assert refusal(alice, {"type": "edit", "seq": second["seq"], "text": "back"})["code"] == "forbidden"
            # Carol, outside the room, got nothing of it.
            assert [f["type"] for f in drained(carol) if f.get("room") == "team"] == []
            live.close()
    finally:
        server.stop()

    restarted = ServerProcess("--data-dir", str(data_dir)).start()
    try:
        url = restarted.base_url
        # A resume from before the changes replays them, at their positions, once each.
        bob = connect(url, "bob", token=bob_token, since=str(cursor))
        replayed = bob.frames_until("resumed")
        assert [(f["type"], f.get("seq"), f.get("rev")) for f in replayed] == [
            ("edited", first["seq"], edited["rev"]),
            ("deleted", second["seq"], deleted["rev"]),
            ("resumed", None, None),
        ]
        assert replayed[0]["text"] == "hello" and replayed[-1]["until"] == newest
        # History shows the edit and keeps the tombstone, without its text, so no seq goes missing.
        _, _, page = http("GET", url + "api/history?room=team", headers=bearer(url, "bob"))
        shown = {m["seq"]: m for m in page["messages"]}
        assert shown[first["seq"]]["text"] == "hello" and shown[first["seq"]]["edited"] == edited["edited"]
        assert shown[second["seq"]] == {
            "seq": second["seq"],
            "from": "alice",
            "room": "team",
            "text": "",
            "ts": second["ts"],
            "rev": deleted["rev"],
            "deleted": True,
        }
        # Resending an edit (its answer was lost, say) answers it again and delivers nothing again.
        alice = connect(url, "alice")
        alice.send({"type": "edit", "seq": first["seq"], "text": "hello", "id": "e1"})
        assert alice.expect("edited", id="e1")["rev"] == edited["rev"]
        alice.send({"type": "delete", "seq": second["seq"], "id": "d1"})
        assert alice.expect("deleted", id="d1")["rev"] == deleted["rev"]
        assert [f for f in drained(bob) if f["type"] in ("edited", "deleted")] == []
        alice.close()
        bob.close()
    finally:
        restarted.stop()


# ---------------------------------------------------------------- admins and disabled accounts


def test_admins_disable_accounts_from_a_session_and_from_the_command_line(
    data_dir: Path, server: ServerProcess
) -> None:
    url = server.base_url
    with clients(url, "alice", "carol") as (alice, carol):
        carol_token = login(url, "carol")
        root = connect(url, "root")
        assert refusal(alice, {"type": "disable", "user": "carol"})["code"] == "forbidden"
        assert refusal(root, {"type": "disable", "user": "root"})["code"] == "forbidden"
        assert refusal(root, {"type": "disable", "user": "nobody"})["code"] == "unknown_user"
        root.send({"type": "disable", "user": "carol", "id": "x"})
        assert root.expect("disabled", id="x")["user"] == "carol"
        # Her sockets close at once, her tokens die, her name stays hers.
        assert closed_with(carol.ws) == (1008, "account disabled")
        assert http("GET", url + "api/me", headers={"Authorization": f"Bearer {carol_token}"})[2]["error"] == (
            "revoked_token"
        )
        credentials = {"username": "carol", "password": password_for("carol")}
        assert post(url + "api/login", credentials)[2]["error"] == "account_disabled"
        assert post(url + "api/register", credentials)[0] == 409
        assert post(url + "api/login", {**credentials, "password": "wrong password"})[0] == 401
        # The command line disables and enables too; a running server applies it within a second.
        assert admin(data_dir, "disable", "alice").returncode == 0
        assert closed_with(alice.ws) == (1008, "account disabled")
        assert admin(data_dir, "enable", "alice").returncode == 0
        wait_until(
            lambda: post(url + "api/login", {"username": "alice", "password": password_for("alice")})[0] == 200,
            "alice back",
        )
        assert admin(data_dir, "enable", "alice").returncode == 1  # enabled already
        listing = admin(data_dir, "list").stdout.splitlines()
        assert "carol\tactive\tdisabled" in listing and "root\tactive\tadmin" in listing
        # Taking the admin flag away stops root at once; his sessions are told.
        assert admin(data_dir, "admin", "root", "off").returncode == 0
        root.expect("admin", admin=False)
        assert refusal(root, {"type": "audit"})["code"] == "forbidden"
        root.close()
    samples = scrape(server.ops_url)
    assert metric(samples, "chat_moderation_actions_total", action="disable") == 1  # the frame, not the CLI
    log = cli(data_dir, "audit").stdout.splitlines()
    assert [line.split("\t")[1:3] + line.split("\t")[4:5] for line in log] == [
        ["(command line)", "admin_off", "root"],
        ["(command line)", "enable", "alice"],
        ["(command line)", "disable", "alice"],
        ["root", "disable", "carol"],
        ["(command line)", "admin_on", "root"],
    ]


def test_private_rooms_roles_bans_and_admins_survive_a_restart(data_dir: Path) -> None:
    server = ServerProcess("--data-dir", str(data_dir)).start()
    try:
        url = server.base_url
        with clients(url, "alice", "bob", "carol") as (alice, bob, carol):
            alice.send({"type": "create", "room": "vault", "private": True, "topic": "keys", "id": "c"})
            alice.expect("joined", id="c")
            for action, user in (("invite", "bob"), ("promote", "bob"), ("ban", "carol")):
                alice.send({"type": action, "room": "vault", "user": user, "id": action})
                alice.expect("room", id=action)
            alice.send({"type": "audit", "room": "vault", "id": "a"})
            assert len(alice.expect("audit", id="a")["entries"]) == 3  # all stored by now
    finally:
        server.stop()
    restarted = ServerProcess("--data-dir", str(data_dir)).start()
    try:
        url = restarted.base_url
        with clients(url, "alice", "bob", "carol", "root") as (alice, bob, carol, root):
            assert root.welcome["admin"] is True
            assert bob.welcome["rooms"] == ["vault"]
            state = bob.join("vault")
            assert (state["private"], state["topic"], state["roles"]) == (
                True,
                "keys",
                {"alice": "owner", "bob": "moderator"},
            )
            assert state["banned"] == ["carol"]  # bob moderates: he sees the ban
            assert refusal(carol, {"type": "join", "room": "vault"})["code"] == "unknown_room"
            carol.send({"type": "rooms"})
            assert carol.expect("rooms")["rooms"] == []
            assert refusal(carol, {"type": "history", "room": "vault"})["code"] == "unknown_room"
    finally:
        restarted.stop()
