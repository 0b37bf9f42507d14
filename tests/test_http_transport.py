"""The HTTP transports black-box, without a browser: event streams and long polls against a real server, with
real clients (``http.client``, urllib, ``websockets``), speaking the same protocol as the WebSocket."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tornado_chat import sse
from tornado_chat.http_transport import PollTransport
from tornado_chat.session import STREAM_WINDOW_BYTES

from .conftest import make_settings
from .http_support import EventStreamClient, PollClient
from .support import (
    WAIT_S,
    Recorder,
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

FAST_HEARTBEAT = {"ping_interval_s": 0.5, "ping_timeout_s": 0.5, "heartbeat_tick_s": 0.05}
# Messages sent between two looks at whether a slow reader has been cut off yet.
BATCH = 20


@pytest.fixture
def fast_server(tmp_path: Path) -> Iterator[ServerThread]:
    running = ServerThread(make_settings(tmp_path, **FAST_HEARTBEAT)).start()
    try:
        yield running
    finally:
        running.stop()


def events(
    base_url: str, name: str, *, headers: dict[str, str] | None = None, since: str | None = None
) -> EventStreamClient:
    client = EventStreamClient(base_url, name, login(base_url, name), headers=headers, since=since)
    assert client.status == 200, getattr(client, "error", None)
    return client


def poller(base_url: str, name: str, *, wait: float = 5.0, since: str | None = None) -> PollClient:
    client = PollClient(base_url, name, login(base_url, name), wait=wait, since=since)
    assert client.status == 200, getattr(client, "error", None)
    return client


# ---------------------------------------------------------------- the same chat over every transport


def test_an_event_stream_chats_with_a_websocket_in_a_room_and_directly(base_url: str) -> None:
    stream = events(base_url, "alice")
    try:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        assert stream.headers["X-Accel-Buffering"] == "no"
        # The welcome is the first event and names the session.
        assert stream.events[0]["data"].startswith('{"type":"welcome"')
        assert stream.welcome["user"] == "alice" and stream.session
        with clients(base_url, "bob") as (bob,):
            stream.join("lobby")
            bob.join("lobby")
            stream.expect("member", room="lobby", user="bob", event="joined")
            bob.send_message("hello over a websocket", room="lobby")
            message = stream.expect("message", text="hello over a websocket")
            # id: is the message's seq, so that Last-Event-ID is a resume point.
            assert stream.event_of(type="message", seq=message["seq"])["id"] == str(message["seq"])
            ack = stream.send_message("hello over an event stream", room="lobby")
            assert bob.expect("message", text="hello over an event stream")["seq"] == ack["seq"]
            stream.send_message("just for bob", to="bob")
            assert bob.expect("message", text="just for bob")["from"] == "alice"
            bob.send_message("just for alice", to="alice")
            assert stream.expect("message", text="just for alice")["to"] == "alice"
            stream.barrier()
            bob.barrier()
    finally:
        stream.close()


def test_a_long_poller_chats_with_a_websocket_and_its_cursor_makes_each_frame_come_once(base_url: str) -> None:
    polling = poller(base_url, "carol")
    try:
        assert polling.welcome["session"] == polling.session
        with clients(base_url, "dave") as (dave,):
            polling.join("desk")
            dave.join("desk")
            for n in range(5):
                dave.send_message(f"polled {n}", room="desk")
            for n in range(5):
                polling.expect("message", text=f"polled {n}")
            polling.send_message("answer from a poller", room="desk")
            assert dave.expect("message", text="answer from a poller")["from"] == "carol"
            polling.barrier()
        assert polling.texts() == [f"polled {n}" for n in range(5)]
    finally:
        polling.close()


def test_a_poll_answer_lost_on_the_way_is_answered_again_and_a_bad_cursor_is_refused(base_url: str) -> None:
    token = login(base_url, "erin")
    status, _, opened = http("GET", f"{base_url}poll?token={token}")
    assert status == 200 and opened["cursor"] == 1 and opened["frames"][0]["type"] == "welcome"
    sid = opened["session"]
    auth = {"Authorization": f"Bearer {token}"}
    with clients(base_url, "frank") as (frank,):
        frank.send_message("are you there?", to="erin")
        status, _, first = http("GET", f"{base_url}poll?session={sid}&cursor=1&wait=5", headers=auth)
        assert status == 200
        texts = [f.get("text") for f in first["frames"]]
        assert "are you there?" in texts
        # The answer is "lost": polling again with the old cursor answers the same frames.
        status, _, again = http("GET", f"{base_url}poll?session={sid}&cursor=1&wait=5", headers=auth)
        assert status == 200 and again["frames"] == first["frames"] and again["cursor"] == first["cursor"]
        # With the new cursor they are gone, and an empty poll ends after its wait.
        status, _, empty = http("GET", f"{base_url}poll?session={sid}&cursor={again['cursor']}&wait=0.2", headers=auth)
        assert status == 200 and empty["frames"] == [] and empty["cursor"] == again["cursor"]
        for bad in ("99", "-1", "x", ""):
            status, _, refused = http("GET", f"{base_url}poll?session={sid}&cursor={bad}", headers=auth)
            assert (status, refused["error"]) == (400, "bad_cursor"), bad
        status, _, refused = http("GET", f"{base_url}poll?session={sid}&cursor=1&wait=never", headers=auth)
        assert (status, refused["error"]) == (400, "bad_request")
    status, _, _ = http("DELETE", f"{base_url}poll?session={sid}", headers=auth)
    assert status == 200
    status, _, gone = http("GET", f"{base_url}poll?session={sid}&cursor=1", headers=auth)
    assert (status, gone["error"]) == (404, "unknown_session")


def test_post_answers_acks_and_errors_in_order_and_everything_else_comes_down_the_stream(base_url: str) -> None:
    stream = events(base_url, "gina")
    try:
        status, replies = stream.post(
            [
                {"type": "join", "room": "qa"},
                {"type": "send", "id": "s1", "room": "qa", "text": "first"},
                {"type": "send", "id": "s2", "room": "nowhere", "text": "refused"},
                "not an object",
                {"type": "dance"},
                {"type": "ping", "id": 7},
                {"type": "send", "id": "s3", "room": "qa", "text": "third"},
                {"type": "send", "id": "s1", "room": "qa", "text": "first, again"},
            ]
        )
        assert status == 200
        summary = [(r["type"], r.get("id"), r.get("code")) for r in replies]
        assert summary == [
            ("ack", "s1", None),
            ("error", "s2", "unknown_room"),
            ("error", None, "bad_frame"),
            ("error", None, "unknown_type"),
            ("ack", "s3", None),
            ("ack", "s1", None),
        ]
        assert replies[0]["seq"] == replies[-1]["seq"] < replies[4]["seq"]  # the same id is stored once
        stream.expect("joined", room="qa")
        stream.expect("pong", id=7)
        stream.barrier()
        on_the_stream = [json.loads(event["data"])["type"] for event in stream.events]
        assert "ack" not in on_the_stream and "error" not in on_the_stream, on_the_stream
    finally:
        stream.close()


def test_one_history_request_at_a_time_holds_for_sessions_over_http(base_url: str) -> None:
    stream, polling = events(base_url, "hugo"), poller(base_url, "iris")
    try:
        with clients(base_url, "jack") as (jack,):
            jack.send_message("for hugo", to="hugo")
            jack.send_message("for iris", to="iris")
        for client, peer in ((stream, "jack"), (polling, "jack")):
            ask = {"type": "history", "with": peer}
            # Two in one POST: the second is handled while the first is still being read, as on a WebSocket.
            status, replies = client.post([{**ask, "id": "h1"}, {**ask, "id": "h2"}])
            assert status == 200 and [(r["type"], r.get("id"), r.get("code")) for r in replies] == [
                ("error", "h2", "rate_limited")
            ]
            assert [m["text"] for m in client.expect("history", WAIT_S, **{"with": peer})["messages"]] == [
                f"for {client.username}"
            ]
            # Once answered, the next one goes through.
            assert client.post([{**ask, "id": "h3"}]) == (200, [])
            client.expect("history", WAIT_S, **{"with": peer})
    finally:
        stream.close()
        polling.close()


def test_resume_with_since_and_last_event_id_replays_exactly_what_was_missed(base_url: str) -> None:
    with clients(base_url, "hank") as (hank,):
        first = events(base_url, "ivy")
        first.join("log")
        hank.join("log")
        hank.send_message("seen live", room="log")
        seen = first.expect("message", text="seen live")
        first.close()
        wait_until(lambda: first.ended, "the stream to end")
        for n in range(3):
            hank.send_message(f"missed {n}", room="log")
        # What a browser's EventSource sends when it reconnects by itself.
        resumed = events(base_url, "ivy", headers={"Last-Event-ID": str(seen["seq"])})
        try:
            resumed.expect("resumed", since=seen["seq"], count=3)
            resumed.barrier()
            assert resumed.texts() == ["missed 0", "missed 1", "missed 2"]
        finally:
            resumed.close()
        polled = poller(base_url, "ivy", since=str(seen["seq"]))
        try:
            polled.expect("resumed", since=seen["seq"], count=3)
            polled.barrier()
            assert polled.texts() == ["missed 0", "missed 1", "missed 2"]
        finally:
            polled.close()


# ---------------------------------------------------------------- the same rules as the WebSocket


def test_a_session_id_works_only_with_the_token_that_opened_it(server: ServerThread) -> None:
    base_url = server.base_url
    stream = events(base_url, "judy")
    try:
        other_login = login(base_url, "judy")  # the same user, another login
        status, body = stream.post([{"type": "ping"}], token=other_login)
        assert (status, body["error"]) == (404, "unknown_session")
        status, body = stream.post([{"type": "ping"}], token="v1.not-a-token")
        assert (status, body["error"]) == (401, "bad_token")
        status, body = stream.post([{"type": "ping"}], session="no-such-session")
        assert (status, body["error"]) == (404, "unknown_session")
        status, _, body = http("GET", f"{base_url}poll?session={stream.session}&cursor=0&token={other_login}")
        assert (status, body["error"]) == (404, "unknown_session")
        # An event stream is not polled, even by its own token.
        status, _, body = http("GET", f"{base_url}poll?session={stream.session}&cursor=0&token={stream.token}")
        assert (status, body["error"]) == (400, "bad_request")
        # Logging out ends the session: the stream says why, and the token no longer works.
        status, _, _ = http("POST", f"{base_url}api/logout", headers={"Authorization": f"Bearer {stream.token}"})
        assert status == 200
        assert stream.wait_closed() == {"code": 1008, "reason": "logged out"}
        status, body = stream.post([{"type": "ping"}])
        assert (status, body["error"]) == (401, "revoked_token")
    finally:
        stream.close()
    samples = scrape(server.ops_url)
    assert metric(samples, "chat_http_refused_total", code="unknown_session") == 3
    assert metric(samples, "chat_connections_closed_total", reason="policy", transport="sse") == 1


def test_opening_without_a_token_or_from_another_site_is_refused_like_a_websocket(server: ServerThread) -> None:
    base_url = server.base_url
    token = login(base_url, "kim")
    for path in ("events", "poll"):
        status, _, body = http("GET", f"{base_url}{path}")
        assert (status, body["error"]) == (401, "no_token"), path
        status, _, body = http("GET", f"{base_url}{path}?token={token}&since=x")
        assert (status, body["error"]) == (400, "bad_since"), path
        status, _, body = http(
            "GET",
            f"{base_url}{path}?token={token}",
            headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        )
        assert (status, body["error"]) == (403, "origin"), path
    samples = scrape(server.ops_url)
    assert metric(samples, "chat_handshakes_rejected_total", reason="origin") == 2
    # A cross-site POST of frames is refused before anything is read (Tornado's cross-origin protection).
    stream = events(base_url, "kim")
    try:
        status, _, _ = http(
            "POST",
            f"{base_url}api/frames?session={stream.session}&token={stream.token}",
            raw=b'[{"type": "join", "room": "csrf"}]',
            headers={
                "Content-Type": "application/json",
                "Origin": "https://evil.example",
                "Sec-Fetch-Site": "cross-site",
            },
        )
        assert status == 403
        stream.barrier()
        assert not [f for f in stream.frames if f["type"] == "joined"]
    finally:
        stream.close()


def test_bad_posts_get_json_errors_and_the_session_stays_open(server: ServerThread) -> None:
    stream = events(server.base_url, "lee")
    url = f"{server.base_url}api/frames?session={stream.session}&token={stream.token}"
    limit = server.settings.max_message_bytes
    try:
        cases = [
            (b"[", "application/json", 400, "bad_json"),
            (b'{"type": "ping"}', "application/json", 400, "bad_request"),
            (b"\xff[]", "application/json", 400, "bad_json"),
            (b'[{"type": "ping"}] x', "application/json", 400, "bad_json"),
            (b"[" + b",".join([b"{}"] * 65) + b"]", "application/json", 400, "bad_request"),
            (b"[]", "text/plain", 415, "unsupported_media_type"),
            (b"[" + b" " * (4 * limit) + b"]", "application/json", 413, "too_large"),
        ]
        for body, content_type, status, code in cases:
            got, _, answer = http("POST", url, raw=body, headers={"Content-Type": content_type})
            assert (got, answer["error"]) == (status, code), body[:40]
        # A frame over --max-message-bytes is refused on its own, with the WebSocket's error.
        status, replies = stream.post(
            [{"type": "send", "id": "big", "to": "lee", "text": "x" * limit}, {"type": "ping"}]
        )
        assert status == 200 and [r["code"] for r in replies] == ["too_large"]
        status, replies = stream.post([])
        assert (status, replies) == (200, [])
        # A length that str.isdigit accepts and int() does not ("\xb2" is "²" in Latin-1): 400, not a 500.
        with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT_S) as sock:
            sock.sendall(
                f"POST /api/frames?session={stream.session}&token={stream.token} HTTP/1.1\r\nHost: x\r\n"
                "Content-Type: application/json\r\nContent-Length: ".encode()
                + b"\xb2\r\n\r\n"
            )
            assert sock.recv(4096).startswith(b"HTTP/1.1 400")
        stream.barrier()
    finally:
        stream.close()
    samples = scrape(server.ops_url)
    assert metric(samples, "chat_http_refused_total", code="bad_json") == 3
    assert metric(samples, "chat_errors_total", code="too_large") == 1


def test_the_rate_limit_counts_each_posted_frame_and_cuts_off_a_flood(server: ServerThread) -> None:
    stream = events(server.base_url, "mia")
    try:
        burst = server.settings.rate_limit_burst
        status, replies = stream.post([{"type": "rooms"}] * (burst + 10))
        assert status == 200
        assert sum(r.get("code") == "rate_limited" for r in replies) >= 9
        # Keep sending while refused: the session is closed for policy, as a WebSocket would be.
        while not stream.ended:
            status, _ = stream.post([{"type": "rooms"}] * 60)
            if status != 200:
                break
        assert stream.wait_closed() == {"code": 1008, "reason": "rate limit exceeded"}
        status, body = stream.post([{"type": "ping"}])
        assert (status, body["error"]) == (404, "unknown_session")
    finally:
        stream.close()
    samples = scrape(server.ops_url)
    assert metric(samples, "chat_connections_closed_total", reason="policy", transport="sse") == 1


# ---------------------------------------------------------------- bounds, heartbeat, shutdown


def test_a_poller_that_stops_taking_frames_is_cut_off_and_told_why(tmp_path: Path) -> None:
    server = ServerThread(make_settings(tmp_path, max_buffered_bytes=8192)).start()
    try:
        polling = poller(server.base_url, "nina")
        polling.join("flood")
        polling.stop_polling()
        with clients(server.base_url, "oscar") as (oscar,):
            oscar.join("flood")
            n = 0
            while polling.session in server.call(lambda: list(server.chat.hub.sessions)):
                n += 1
                oscar.send_message(f"{n:04d} " + "y" * 500, room="flood")
            status, answer = polling.poll_once(wait=0)
            assert status == 200 and answer["close"] == {
                "code": 1013,
                "reason": "slow consumer: not reading fast enough",
            }
            # As on a WebSocket, what it was not taking is dropped: the close comes at once, not behind it.
            assert answer["frames"] == []
            # Told once; then the session is gone.
            status, answer = polling.poll_once(wait=0)
            assert (status, answer["error"]) == (404, "unknown_session")
        samples = scrape(server.ops_url)
        assert metric(samples, "chat_connections_closed_total", reason="slow_consumer", transport="poll") == 1
    finally:
        server.stop()


def test_an_event_stream_reader_that_stops_reading_is_cut_off(tmp_path: Path) -> None:
    unlimited = {"rate_limit_per_s": 100_000.0, "rate_limit_burst": 100_000}
    server = ServerThread(make_settings(tmp_path, max_buffered_bytes=8192, **unlimited)).start()
    try:
        token = login(server.base_url, "pat")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(WAIT_S)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(f"GET /events?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
        wait_until(lambda: metric(scrape(server.ops_url), "chat_connections", transport="sse") == 1, "the stream")
        transport = server.call(lambda: next(iter(server.chat.hub.users["pat"].sessions.values())).transport)
        # The sender reads on a thread of its own; it sends in batches and waits for each batch's acks.
        sender = Recorder(server.base_url, "quinn", login(server.base_url, "quinn"))
        try:
            n = 0
            while server.call(lambda: "pat" in server.chat.hub.users and server.chat.hub.users["pat"].online):
                for _ in range(BATCH):
                    n += 1
                    sender.ws.send(json.dumps({"type": "send", "id": f"q{n}", "to": "pat", "text": "z" * 3900}))
                for _ in range(BATCH):
                    assert sender.acks.acquire(timeout=WAIT_S)
                assert n < 10_000, "the stream was never cut off"
        finally:
            sender.ws.close()
        samples = scrape(server.ops_url)
        assert metric(samples, "chat_connections_closed_total", reason="slow_consumer", transport="sse") == 1
        # As on a WebSocket: the events not yet in the stream were dropped, and the close event follows the
        # (at most a window of) bytes that were, not the megabyte behind them.
        left = server.call(lambda: transport.buffered_bytes)
        assert left <= STREAM_WINDOW_BYTES + 2 * 4096, left
        received = b""
        while b"event: close" not in received:
            chunk = sock.recv(65536)
            assert chunk, received[-300:]
            received += chunk
        close = received[received.index(b"event: close") :].split(b"\n")[1]
        assert json.loads(close.removeprefix(b"data: "))["code"] == 1013
        assert len(received) < STREAM_WINDOW_BYTES + 64 * 1024, len(received)  # the window and the kernel's
        sock.close()
    finally:
        server.stop()


def test_a_poller_that_stops_coming_back_is_reaped_and_an_open_stream_is_not(fast_server: ServerThread) -> None:
    stream = events(fast_server.base_url, "rose")
    polling = poller(fast_server.base_url, "sam", wait=0.3)
    try:
        polling.stop_polling()
        wait_until(
            lambda: (
                metric(scrape(fast_server.ops_url), "chat_connections_closed_total", reason="reaped", transport="poll")
                == 1
            ),
            "the poller to be reaped",
        )
        # Meanwhile the stream, silent but open, was pinged with comment lines and stays.
        wait_until(lambda: stream.comments >= 4, "several pings on the stream")
        samples = scrape(fast_server.ops_url)
        assert metric(samples, "chat_connections", transport="sse") == 1
        assert metric(samples, "chat_connections_closed_total", reason="reaped", transport="sse") == 0
        assert metric(samples, "chat_heartbeat_reaped_total") == 1
        stream.barrier()
    finally:
        stream.close()
        polling.close()


def test_an_event_stream_whose_peer_stops_acknowledging_is_reaped(
    fast_server: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A peer that vanished stops acknowledging TCP segments; loopback always acknowledges, so the probe says so.
    stream = events(fast_server.base_url, "tess")
    try:

        def silent() -> None:
            for session in fast_server.chat.hub.sessions.values():
                transport = session.transport
                if isinstance(transport, sse.EventStreamTransport):
                    transport.probe = lambda sock, within_s: False

        fast_server.call(silent)
        wait_until(lambda: stream.ended, "the stream to be dropped")
        samples = scrape(fast_server.ops_url)
        assert metric(samples, "chat_connections_closed_total", reason="reaped", transport="sse") == 1
        assert metric(samples, "chat_connections", transport="sse") == 0
    finally:
        stream.close()


def test_a_shutdown_tells_streams_and_pollers_when_to_come_back(tmp_path: Path) -> None:
    server = ServerThread(make_settings(tmp_path, reconnect_spread_s=2.0)).start()
    stream = events(server.base_url, "uma")
    polling = poller(server.base_url, "vic", wait=5.0)
    try:

        def parked() -> bool:
            transport = server.chat.http_sessions.get(polling.session)
            return isinstance(transport, PollTransport) and transport.parked

        server.wait_for(parked, "the poller's poll to wait at the server")
        server.stop()
        notice = stream.wait_closed()
        assert notice is not None and notice["code"] == 1012
        hint = json.loads(notice["reason"])["retry_after_ms"]
        assert 0 <= hint <= 2000
        assert stream.events[-1]["retry"] == str(hint)  # EventSource honours it by itself
        polled = polling.wait_closed()
        assert polled is not None and polled["code"] == 1012
    finally:
        stream.close()
        polling.stop_polling()


def test_connections_are_counted_by_transport(server: ServerThread) -> None:
    before = scrape(server.ops_url)
    stream = events(server.base_url, "walt")
    polling = poller(server.base_url, "xena")
    client = connect(server.base_url, "yuri")
    during = scrape(server.ops_url)
    stream.close()
    polling.close()
    client.close()
    wait_until(lambda: metric(scrape(server.ops_url), "chat_connections") == 0, "every session to end")
    after = scrape(server.ops_url)
    for kind in ("websocket", "sse", "poll"):
        assert metric(during, "chat_connections", transport=kind) == 1, kind
        opened = metric(after, "chat_connections_opened_total", transport=kind)
        assert opened - metric(before, "chat_connections_opened_total", transport=kind) == 1, kind
        closed = metric(after, "chat_connections_closed_total", reason="client", transport=kind)
        assert closed == 1, kind
    assert metric(during, "chat_users_online") == 3
