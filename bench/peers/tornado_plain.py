"""A chat server written the way Tornado's own chat demo and most tutorials write one.

Identity from the query string, dicts from user name and room name to handlers, ``json.loads`` of
every frame, ``json.dumps`` and ``write_message`` once per recipient, and Tornado's built-in
``websocket_ping_interval``/``websocket_ping_timeout`` as the heartbeat. One line differs from the
tutorials: ``set_nodelay(True)``. Without it Nagle's algorithm holds small frames back by tens of
milliseconds and every latency figure would measure that rather than the server (Node's ws and asyncio
turn Nagle off by themselves). Speaks the subset of the tornado-chat protocol that the bench (bench/)
drives: join -> joined, send -> ack + message.

Usage: python tornado_plain.py [--port 0] [--ping-interval 25] [--ping-timeout 10] [--loop asyncio|uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import socket
from collections import defaultdict
from typing import Any

import tornado.httpserver
import tornado.netutil
import tornado.web
import tornado.websocket

users: defaultdict[str, set[ChatHandler]] = defaultdict(set)
rooms: defaultdict[str, set[ChatHandler]] = defaultdict(set)


class ChatHandler(tornado.websocket.WebSocketHandler):
    def open(self, *args: str, **kwargs: str) -> None:
        self.set_nodelay(True)
        self.user = self.get_argument("user")
        self.rooms: set[str] = set()
        users[self.user].add(self)

    def on_message(self, message: str | bytes) -> None:
        try:
            msg = json.loads(message)
        except ValueError:
            self.write_message(json.dumps({"type": "error", "code": "bad_json"}))
            return
        if msg.get("type") == "join":
            rooms[msg["room"]].add(self)
            self.rooms.add(msg["room"])
            self.write_message(json.dumps({"type": "joined", "room": msg["room"]}))
        elif msg.get("type") == "send":
            self.write_message(json.dumps({"type": "ack", "id": msg["id"]}))
            if "room" in msg:
                out: dict[str, Any] = {"type": "message", "from": self.user, "room": msg["room"], "text": msg["text"]}
                for client in rooms[msg["room"]]:
                    if client is not self:
                        client.write_message(json.dumps(out))
            else:
                out = {"type": "message", "from": self.user, "to": msg["to"], "text": msg["text"]}
                for client in users.get(msg["to"], ()):
                    client.write_message(json.dumps(out))

    def on_close(self) -> None:
        users[self.user].discard(self)
        if not users[self.user]:
            del users[self.user]
        for room in self.rooms:
            rooms[room].discard(self)


async def run_server(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.WARNING)
    app = tornado.web.Application(
        [(r"/ws", ChatHandler)],
        websocket_ping_interval=args.ping_interval,
        websocket_ping_timeout=args.ping_timeout,
    )
    sockets = tornado.netutil.bind_sockets(args.port, "127.0.0.1", family=socket.AF_INET)
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets(sockets)
    print(f"tornado-plain listening on http://127.0.0.1:{sockets[0].getsockname()[1]}/", flush=True)
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
