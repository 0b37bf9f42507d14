"""No-loss delivery against a real server process: crashes, restarts, resends, replays, a full disk."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from .conftest import make_settings
from .support import (
    WAIT_S,
    RawClient,
    Recorder,
    ServerProcess,
    ServerThread,
    clients,
    connect,
    http,
    login,
    metric,
    scrape,
    wait_until,
)

pytestmark = pytest.mark.integration

ROOM = "durable"


def all_history(base_url: str, token: str, **target: str) -> list[dict[str, Any]]:
    """Every message of a room or conversation through the history API, oldest first."""
    messages: list[dict[str, Any]] = []
    before = ""
    query = "&".join(f"{k}={v}" for k, v in target.items())
    while True:
        status, _, page = http(
            "GET", f"{base_url}api/history?{query}&limit=200{before}", headers={"Authorization": f"Bearer {token}"}
        )
        assert status == 200, page
        messages.extend(page["messages"])
        if not page["more"]:
            return messages[::-1]
        before = f"&before={page['messages'][-1]['seq']}"


def test_acked_messages_survive_a_crash_and_resume_fills_every_gap(tmp_path: Path) -> None:
    data_dir = str(tmp_path / "data")
    names = [f"user{i}" for i in range(4)]
    per_user = 300
    # The senders pipeline hundreds of frames at once: lift the per-connection rate limit for this test.
    # And lift the replay bound: a client may have missed more than the default 1000 by the crash.
    unlimited = ("--rate-limit", "1000000", "--rate-limit-burst", "1000000", "--replay-limit", "100000")
    server = ServerProcess("--data-dir", data_dir, *unlimited).start()
    tokens = {name: login(server.base_url, name) for name in names}
    recorders = [Recorder(server.base_url, name, tokens[name]) for name in names]
    try:
        for recorder in recorders:
            recorder.ws.send(json.dumps({"type": "join", "room": ROOM}))
        wait_until(lambda: all(len(r.of_type("joined")) >= 1 for r in recorders), "every join")

        def send_all(recorder: Recorder) -> None:
            with contextlib.suppress(ConnectionClosed, OSError):
                for i in range(per_user):
                    frame = {"type": "send", "id": f"{recorder.name}-{i}", "room": ROOM, "text": f"m{i}"}
                    if i % 10 == 0:  # some direct messages too
                        frame = {"type": "send", "id": f"{recorder.name}-{i}", "to": "user0", "text": f"d{i}"}
                    recorder.ws.send(json.dumps(frame))

        senders = [threading.Thread(target=send_all, args=(r,), daemon=True) for r in recorders]
        for sender in senders:
            sender.start()
        # Crash once a fair share of messages has been acked, while sends are still in flight.
        for _ in range(150):
            assert recorders[1].acks.acquire(timeout=WAIT_S)
        server.signal(signal.SIGKILL)
        server.wait()
        for thread in [*senders, *(r.reader for r in recorders)]:
            thread.join(WAIT_S)
    finally:
        server.stop()

    acked = {a["id"]: a["seq"] for r in recorders for a in r.of_type("ack")}
    cursors = {r.name: r.cursor() for r in recorders}
    assert len(acked) >= 150

    restarted = ServerProcess("--data-dir", data_dir, *unlimited).start()
    try:
        room = all_history(restarted.base_url, tokens["user0"], room=ROOM)
        # Direct messages all went to user0 (user0's own are notes to self).
        direct = {name: all_history(restarted.base_url, tokens[name], **{"with": "user0"}) for name in names}
        stored = room + [m for messages in direct.values() for m in messages]
        seqs = [m["seq"] for m in stored]
        assert len(seqs) == len(set(seqs)), "a message is stored twice"
        by_seq = {m["seq"]: m for m in stored}
        # Every acked message is there, exactly once, under the seq its ack gave.
        for client_id, seq in acked.items():
            assert seq in by_seq, f"acked {client_id} (seq {seq}) is missing after the crash"
            assert by_seq[seq]["from"] == client_id.rsplit("-", 1)[0]

        # Each client resumes from the last seq it saw and gets exactly what it missed, in order.
        resumed = {}
        for name in names:
            mine = [m for m in stored if m.get("room") == ROOM or name in (m["from"], m.get("to"))]
            expected = sorted(m["seq"] for m in mine if m["seq"] > cursors[name])
            resumed[name] = connect(restarted.base_url, name, token=tokens[name], since=str(cursors[name]))
            frames = resumed[name].frames_until("resumed")
            assert [f["seq"] for f in frames if f["type"] == "message"] == expected, name
            assert frames[-1]["count"] == len(expected) and frames[-1]["truncated"] is False
        # Resending after the crash stores nothing twice: what was acked keeps its seq.
        for name, client in resumed.items():
            for i in range(0, per_user, 37):
                client_id = f"{name}-{i}"
                frame = {"type": "send", "id": client_id, "room": ROOM, "text": f"m{i}"}
                if i % 10 == 0:
                    frame = {"type": "send", "id": client_id, "to": "user0", "text": f"d{i}"}
                client.send(frame)
                ack = client.expect("ack", id=client_id)
                if client_id in acked:
                    assert ack["seq"] == acked[client_id]
            client.close()
        after = all_history(restarted.base_url, tokens["user0"], room=ROOM)
        assert len({(m["from"], m["text"]) for m in after}) == len(after), "a resend was stored twice"
    finally:
        restarted.stop()


def test_a_resend_with_the_same_client_id_is_acked_with_the_same_seq_and_delivered_once(server: ServerThread) -> None:
    with clients(server.base_url, "alice", "bob") as (alice, bob):
        for _ in range(3):
            alice.send({"type": "send", "id": "same", "to": "bob", "text": "once"})
        seqs = {alice.expect("ack", id="same")["seq"] for _ in range(3)}
        assert len(seqs) == 1
        marker = alice.send_message("marker", to="bob")
        frames = bob.frames_until("message", seq=marker["seq"])
        assert [f["text"] for f in frames if f["type"] == "message"] == ["once", "marker"]


def test_history_pages_from_both_ends(server: ServerThread) -> None:
    token = login(server.base_url, "alice")
    with clients(server.base_url, "bob") as (bob,):
        alice = connect(server.base_url, "alice", token=token)
        alice.join("paging")
        seqs = [alice.send_message(f"m{i}", room="paging")["seq"] for i in range(25)]
        alice.close()
        auth = {"Authorization": f"Bearer {token}"}
        url = f"{server.base_url}api/history?room=paging"
        _, _, newest = http("GET", url + "&limit=10", headers=auth)
        assert [m["seq"] for m in newest["messages"]] == seqs[::-1][:10] and newest["more"] is True
        _, _, oldest = http("GET", url + f"&limit=10&before={seqs[10]}", headers=auth)
        assert [m["seq"] for m in oldest["messages"]] == seqs[9::-1] and oldest["more"] is False
        _, _, nothing = http("GET", url + f"&before={seqs[0]}", headers=auth)
        assert nothing["messages"] == [] and nothing["more"] is False
        assert [m["seq"] for m in all_history(server.base_url, token, room="paging")] == seqs
        # The API checks membership like the WebSocket does.
        bob_auth = {"Authorization": f"Bearer {login(server.base_url, 'bob')}"}
        status, _, body = http("GET", url, headers=bob_auth)
        assert status == 403 and body["error"] == "not_member"
        status, _, body = http("GET", f"{server.base_url}api/history?with=nobody", headers=bob_auth)
        assert status == 404 and body["error"] == "unknown_user"
        status, _, body = http("GET", f"{server.base_url}api/history?room=paging&limit=0", headers=auth)
        assert status == 400 and body["error"] == "bad_frame"
        status, _, body = http("GET", url)
        assert status == 401
        bob.barrier()


def test_an_offline_direct_message_survives_a_restart(tmp_path: Path) -> None:
    data_dir = str(tmp_path / "data")
    first = ServerProcess("--data-dir", data_dir).start()
    try:
        bob_token = login(first.base_url, "bob")
        alice = connect(first.base_url, "alice")
        ack = alice.send_message("are you there?", to="bob")
        alice.close()
    finally:
        first.stop()
    second = ServerProcess("--data-dir", data_dir).start()
    try:
        bob = connect(second.base_url, "bob", token=bob_token)
        assert bob.expect("message", seq=ack["seq"])["text"] == "are you there?"
        assert bob.expect("resumed")["count"] == 1
        assert bob.welcome["contacts"] == ["alice"]
        bob.close()
    finally:
        second.stop()


def test_a_replay_over_the_bound_sends_the_newest_and_says_truncated(tmp_path: Path) -> None:
    running = ServerThread(make_settings(tmp_path, replay_limit=5)).start()
    try:
        token = login(running.base_url, "bob")
        with clients(running.base_url, "alice") as (alice,):
            seqs = [alice.send_message(f"m{i}", to="bob")["seq"] for i in range(8)]
        bob = connect(running.base_url, "bob", token=token)
        frames = bob.frames_until("resumed")
        assert [f["seq"] for f in frames if f["type"] == "message"] == seqs[-5:]
        assert frames[-1]["truncated"] is True and frames[-1]["count"] == 5
        bob.close()
    finally:
        running.stop()


def test_resume_frame_replays_below_what_arrived_live(server: ServerThread) -> None:
    token = login(server.base_url, "bob")
    with clients(server.base_url, "alice") as (alice,):
        early = [alice.send_message(f"early{i}", to="bob")["seq"] for i in range(3)]
        bob = connect(server.base_url, "bob", token=token, since=str(early[-1]))
        bob.expect("resumed")
        live = alice.send_message("live", to="bob")["seq"]
        assert bob.expect("message", seq=live)
        bob.send({"type": "resume", "since": 0})
        frames = bob.frames_until("resumed")
        # Everything before the first live message, nothing twice.
        assert [f["seq"] for f in frames if f["type"] == "message"] == early
        bob.send({"type": "resume"})
        assert bob.expect("error")["code"] == "bad_frame"
        bob.close()


def test_sigterm_tells_clients_when_to_return_and_loses_nothing(tmp_path: Path) -> None:
    data_dir = str(tmp_path / "data")
    server = ServerProcess("--data-dir", data_dir, "--reconnect-spread", "2", "--shutdown-timeout", "8").start()
    names = [f"c{i}" for i in range(5)]
    tokens = {name: login(server.base_url, name) for name in names}
    connected = [connect(server.base_url, name, token=tokens[name]) for name in names]
    acked = []
    for client in connected:
        client.join("bye")
        acked.append(client.send_message("before the restart", room="bye")["seq"])
    status, _, _ = http("GET", server.ops_url + "readyz")
    assert status == 200
    server.signal(signal.SIGTERM)
    codes = []
    for client in connected:
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                client.ws.recv(timeout=WAIT_S)
        received = closed.value.rcvd
        assert received is not None
        codes.append(received.code)
        hint = json.loads(received.reason)
        assert 0 <= hint["retry_after_ms"] <= 2000
    assert codes == [1012] * len(names)
    assert server.wait(timeout=8) == 0
    assert any(re.search("shutting down", line) for line in server.lines)

    restarted = ServerProcess("--data-dir", data_dir).start()
    try:
        stored = {m["seq"] for m in all_history(restarted.base_url, tokens["c0"], room="bye")}
        assert set(acked) <= stored
    finally:
        restarted.stop()


def test_readyz_fails_while_shutting_down(tmp_path: Path) -> None:
    running = ServerThread(make_settings(tmp_path, shutdown_timeout_s=4.0)).start()
    try:
        with clients(running.base_url, "slowpoke"):
            # Start the shutdown; the client has not answered the close yet, so the server is draining.
            running.call(lambda: running.chat.tasks.spawn(running.chat.stop()))
            wait_until(lambda: http("GET", running.ops_url + "readyz")[0] == 503, "readyz to fail")
            _, _, body = http("GET", running.ops_url + "readyz")
            assert body["state"] == "stopping"
    finally:
        running.stop()


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs, so that the store's disk really fills up."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip()}); the disk-full path needs one")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_full_disk_fails_sends_without_acking_and_readyz_says_so(tiny_disk: Path) -> None:
    server = ServerProcess("--data-dir", str(tiny_disk / "data")).start()
    try:
        with clients(server.base_url, "alice", "bob") as (alice, bob):
            before = alice.send_message("fits", to="bob")
            bob.expect("message", seq=before["seq"])
            filler = tiny_disk / "filler"
            with contextlib.suppress(OSError), filler.open("wb", buffering=0) as fill:
                while True:
                    fill.write(b"\0" * 65536)
                    fill.flush()
                    os.fsync(fill.fileno())
            # The disk is full. Send until the store has refused three in a row (SQLite may still
            # have a little room in pages it already owns).
            acked: dict[str, int] = {}
            failed: list[str] = []
            for i in range(200):
                frame_id = f"full-{i}"
                alice.send({"type": "send", "id": frame_id, "to": "bob", "text": f"{i} " + "x" * 2000})
                reply = alice.outcome(frame_id)
                if reply["type"] == "ack":
                    acked[frame_id] = reply["seq"]
                    failed.clear()
                else:
                    assert reply["code"] == "internal"
                    failed.append(frame_id)
                    if len(failed) == 3:
                        break
            assert len(failed) == 3, "the disk never filled up"
            status, _, body = http("GET", server.ops_url + "readyz")
            assert status == 503 and "store unavailable" in body["reasons"]
            # What was acked reached bob; what failed did not.
            bob.barrier()
            delivered = {f["seq"] for f in bob.backlog if f["type"] == "message"}
            assert set(acked.values()) <= delivered
            failed_prefixes = {frame_id.split("-")[1] + " " for frame_id in failed}
            assert not any(f["text"][: len(p)] == p for f in bob.backlog for p in failed_prefixes if "text" in f)
            # Space comes back: writes work again, the server is ready, and nothing acked was lost.
            filler.unlink()
            again = alice.send_message("room again", to="bob")
            assert bob.expect("message", seq=again["seq"])["text"] == "room again"
            wait_until(lambda: http("GET", server.ops_url + "readyz")[0] == 200, "readyz to recover")
            stored = all_history(server.base_url, login(server.base_url, "bob"), **{"with": "alice"})
            stored_ids = {m["seq"] for m in stored}
            assert set(acked.values()) <= stored_ids
            assert not {m["text"] for m in stored} & {f"{frame_id.split('-')[1]} " + "x" * 2000 for frame_id in failed}
    finally:
        server.stop()


def test_a_long_replay_is_paced_to_a_slow_reader_instead_of_cutting_it_off(tmp_path: Path) -> None:
    cap = 64 * 1024
    running = ServerThread(
        make_settings(tmp_path, max_buffered_bytes=cap, rate_limit_per_s=10_000.0, rate_limit_burst=10_000)
    ).start()
    try:
        token = login(running.base_url, "reader")
        # 400 messages of 16 KB: 6.4 MB for the reader, more than the kernel's socket buffers can take
        # (at most 4 MB here) and a hundred times the connection's cap.
        text = "🎉" * 4000
        count = 400
        with clients(running.base_url, "writer") as (writer,):
            for i in range(count):
                writer.send({"type": "send", "id": f"w{i}", "to": "reader", "text": text})
            writer.expect("ack", id=f"w{count - 1}")
        # A reader on a small receive window that does not read at first: the server must wait for it.
        reader = RawClient(running.port, token, small_window=True, query="since=0")
        try:

            def buffered() -> int:
                sessions = running.chat.hub.users["reader"].sessions.values()
                return sum(s.transport.buffered_bytes for s in sessions)

            running.wait_for(lambda: buffered() > 0, "the server to buffer for the reader")
            assert running.call(buffered) <= cap
            frames: list[dict[str, Any]] = []
            code: int | None = None
            while not frames or frames[-1]["type"] != "resumed":
                opcode, payload = reader.read_frame()
                if opcode == 0x8:
                    code = int.from_bytes(payload[:2], "big")
                    break
                frames.append(json.loads(payload))
            assert code is None, f"closed with {code}"
            assert sum(1 for f in frames if f["type"] == "message") == count
            assert frames[-1]["count"] == count
        finally:
            reader.close()
    finally:
        running.stop()


def test_a_history_page_of_huge_messages_is_cut_to_a_sendable_size(server: ServerThread) -> None:
    with clients(server.base_url, "emoji") as (emoji,):
        emoji.join("wide")
        text = "🎉" * 4000  # 16 KB of UTF-8 in 4000 characters
        seqs = []
        for i in range(30):
            seqs.append(emoji.send_message(text + str(i)[:0], room="wide")["seq"])
        emoji.send({"type": "history", "room": "wide", "limit": 200})
        first = emoji.expect("history", room="wide")
        assert len(json.dumps(first, ensure_ascii=False, separators=(",", ":")).encode()) <= 256 * 1024
        assert first["more"] is True and 1 <= len(first["messages"]) < 30
        # Paging on from the oldest message of the page reaches every message once.
        seen = [m["seq"] for m in first["messages"]]
        while True:
            emoji.send({"type": "history", "room": "wide", "limit": 200, "before": seen[-1]})
            page = emoji.expect("history", room="wide")
            seen.extend(m["seq"] for m in page["messages"])
            if not page["more"]:
                break
        assert seen == seqs[::-1]


def test_acks_wait_behind_a_running_replay(tmp_path: Path) -> None:
    """A client resumes from the newest seq it saw, acks included: an ack must not overtake the replay."""
    running = ServerThread(
        make_settings(tmp_path, max_buffered_bytes=64 * 1024, rate_limit_per_s=10_000.0, rate_limit_burst=10_000)
    ).start()
    try:
        token = login(running.base_url, "bob")
        count = 400  # 6.4 MB: the replay stalls until bob reads (see the pacing test above)
        with clients(running.base_url, "alice") as (alice,):
            for i in range(count):
                alice.send({"type": "send", "id": f"m{i}", "to": "bob", "text": "🎉" * 4000})
            alice.expect("ack", id=f"m{count - 1}")
        bob = RawClient(running.port, token, small_window=True, query="since=0")
        try:

            def replaying() -> bool:
                sessions = running.chat.hub.users["bob"].sessions.values()
                return any(s.held is not None and s.transport.buffered_bytes > 0 for s in sessions)

            running.wait_for(replaying, "the replay to stall on bob's window")
            bob.send_frame(json.dumps({"type": "send", "id": "mine", "to": "alice", "text": "hi"}).encode())
            frames: list[dict[str, Any]] = []
            while not any(f["type"] == "ack" for f in frames):
                opcode, payload = bob.read_frame()
                if opcode == 0x1:
                    frames.append(json.loads(payload))
            kinds = [f["type"] for f in frames if f["type"] in ("message", "resumed", "ack")]
            assert kinds == ["message"] * count + ["resumed", "ack"]
        finally:
            bob.close()
    finally:
        running.stop()


def test_live_traffic_held_behind_a_stalled_replay_counts_against_the_buffer_cap(tmp_path: Path) -> None:
    cap = 64 * 1024
    running = ServerThread(
        make_settings(tmp_path, max_buffered_bytes=cap, rate_limit_per_s=10_000.0, rate_limit_burst=10_000)
    ).start()
    try:
        token = login(running.base_url, "reader")
        with clients(running.base_url, "writer") as (writer,):
            for i in range(400):  # 6.4 MB: the replay stalls on the reader's small window
                writer.send({"type": "send", "id": f"old{i}", "to": "reader", "text": "🎉" * 4000})
            writer.expect("ack", id="old399")
            reader = RawClient(running.port, token, small_window=True, query="since=0")
            try:

                def holding() -> bool:
                    sessions = running.chat.hub.users["reader"].sessions.values()
                    return any(s.held is not None and s.transport.buffered_bytes > 0 for s in sessions)

                running.wait_for(holding, "the replay to stall")
                # Live messages now queue behind the replay; past the cap the reader is cut off.
                for i in range(20):
                    writer.send({"type": "send", "id": f"live{i}", "to": "reader", "text": "🎉" * 4000})
                writer.expect("ack", id="live19")
                running.wait_for(
                    lambda: not running.chat.hub.users["reader"].sessions, "the reader to be closed as slow"
                )
                assert metric(scrape(running.ops_url), "chat_connections_closed_total", reason="slow_consumer") == 1
            finally:
                reader.close()
    finally:
        running.stop()
