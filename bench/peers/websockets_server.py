"""A chat server written the way the ``websockets`` documentation writes one (asyncio implementation).

Identity from the query string, sets of connections per user and per room, one ``async for`` loop per
connection, ``websockets.broadcast`` for rooms, and the library's own keepalive pings
(``ping_interval``/``ping_timeout``) as the heartbeat. Speaks the subset of the tornado-chat protocol
that the bench (bench/) drives: join -> joined, send -> ack + message.

Usage: python websockets_server.py [--port 0] [--ping-interval 25] [--ping-timeout 10] [--loop asyncio|uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import urllib.parse
from collections import defaultdict

from websockets.asyncio.server import ServerConnection, broadcast, serve

users: defaultdict[str, set[ServerConnection]] = defaultdict(set)
rooms: defaultdict[str, set[ServerConnection]] = defaultdict(set)


async def handler(websocket: ServerConnection) -> None:
    assert websocket.request is not None
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(websocket.request.path).query)
    user = query["user"][0]
    joined: set[str] = set()
    users[user].add(websocket)
    try:
        async for message in websocket:
            try:
                msg = json.loads(message)
            except ValueError:
                await websocket.send(json.dumps({"type": "error", "code": "bad_json"}))
                continue
            if msg.get("type") == "join":
                rooms[msg["room"]].add(websocket)
                joined.add(msg["room"])
                await websocket.send(json.dumps({"type": "joined", "room": msg["room"]}))
            elif msg.get("type") == "send":
                await websocket.send(json.dumps({"type": "ack", "id": msg["id"]}))
                if "room" in msg:
                    out = json.dumps({"type": "message", "from": user, "room": msg["room"], "text": msg["text"]})
                    broadcast([c for c in rooms[msg["room"]] if c is not websocket], out)
                else:
                    out = json.dumps({"type": "message", "from": user, "to": msg["to"], "text": msg["text"]})
                    broadcast(users.get(msg["to"], set()), out)
    finally:
        users[user].discard(websocket)
        if not users[user]:
            del users[user]
        for room in joined:
            rooms[room].discard(websocket)


async def run_server(args: argparse.Namespace) -> None:
    async with serve(
        handler, "127.0.0.1", args.port, ping_interval=args.ping_interval, ping_timeout=args.ping_timeout
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(f"websockets listening on http://127.0.0.1:{port}/", file=sys.stderr, flush=True)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
        await stopping.wait()


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
