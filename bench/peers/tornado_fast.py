"""The fastest plain-Tornado chat server we know how to write in about a hundred lines.

Still Tornado's ``WebSocketHandler`` for the handshake, the frame parser and the heartbeat
(``websocket_ping_interval``/``websocket_ping_timeout``), but the way out is built for fan-out: the JSON is
encoded once per message, the WebSocket frame (a final unmasked text frame, RFC 6455 section 5.2) is built
once, and the same bytes go to every recipient's IOStream. A stream with nothing queued
(``not stream.writing()``) gets them with one ``socket.send``; whatever does not fit, or a stream that
is still writing, goes through ``stream.write``, so frames never overtake each other. Acks and ``joined``
take the same path: ``write_message`` schedules a task per frame. ``set_nodelay(True)`` as in
tornado_plain.py. Speaks the subset of the tornado-chat protocol the bench drives: join -> joined,
send -> ack + message (to a room or to a user).

Usage: python tornado_fast.py [--port 0] [--ping-interval 25] [--ping-timeout 10] [--loop asyncio|uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import socket
import struct
from collections import defaultdict

import tornado.httpserver
import tornado.iostream
import tornado.netutil
import tornado.web
import tornado.websocket

users: defaultdict[str, set[FastHandler]] = defaultdict(set)
rooms: defaultdict[str, set[FastHandler]] = defaultdict(set)
dumps = json.JSONEncoder(separators=(",", ":")).encode


def text_frame(payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 0x10000:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


def send(stream: tornado.iostream.IOStream, frame: bytes) -> None:
    """Write one frame: straight to the socket when nothing is queued, the rest behind what is."""
    if stream.closed():
        return
    if not stream.writing():
        try:
            sent = stream.socket.send(frame)
        except BlockingIOError:
            sent = 0
        except OSError:
            sent = 0  # reset or broken: stream.write below finds it out and closes the stream
        if sent == len(frame):
            return
        frame = frame[sent:]
    with contextlib.suppress(tornado.iostream.StreamClosedError):
        stream.write(frame)


class FastHandler(tornado.websocket.WebSocketHandler):
    def open(self, *args: str, **kwargs: str) -> None:
        self.set_nodelay(True)
        assert self.ws_connection is not None and self.ws_connection.stream is not None
        self.out = self.ws_connection.stream
        self.user = self.get_argument("user")
        self.rooms: set[str] = set()
        users[self.user].add(self)

    def on_message(self, message: str | bytes) -> None:
        try:
            msg = json.loads(message)
        except ValueError:
            send(self.out, text_frame(b'{"type":"error","code":"bad_json"}'))
            return
        kind = msg.get("type")
        if kind == "join":
            rooms[msg["room"]].add(self)
            self.rooms.add(msg["room"])
            send(self.out, text_frame(dumps({"type": "joined", "room": msg["room"]}).encode()))
        elif kind == "send":
            send(self.out, text_frame(dumps({"type": "ack", "id": msg["id"]}).encode()))
            if "room" in msg:
                out = {"type": "message", "from": self.user, "room": msg["room"], "text": msg["text"]}
                recipients = [c for c in rooms[msg["room"]] if c is not self]
            else:
                out = {"type": "message", "from": self.user, "to": msg["to"], "text": msg["text"]}
                recipients = list(users.get(msg["to"], ()))
            frame = text_frame(dumps(out).encode())  # once per fan-out, not once per recipient
            for client in recipients:
                send(client.out, frame)

    def on_close(self) -> None:
        users[self.user].discard(self)
        if not users[self.user]:
            del users[self.user]
        for room in self.rooms:
            rooms[room].discard(self)


async def run_server(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.WARNING)
    app = tornado.web.Application(
        [(r"/ws", FastHandler)],
        websocket_ping_interval=args.ping_interval,
        websocket_ping_timeout=args.ping_timeout,
    )
    sockets = tornado.netutil.bind_sockets(args.port, "127.0.0.1", family=socket.AF_INET)
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets(sockets)
    print(f"tornado-fast listening on http://127.0.0.1:{sockets[0].getsockname()[1]}/", flush=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()
    server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ping-interval", type=float, default=25.0)
    parser.add_argument("--ping-timeout", type=float, default=10.0)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio", help="event loop to run on")
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop  # noqa: PLC0415 - only when asked for

        uvloop.run(run_server(args))
    else:
        asyncio.run(run_server(args))


if __name__ == "__main__":
    main()
