"""A well-behaved chat client in its own process, for tests that freeze it with SIGSTOP.

Usage: python -m tests.peer_client WS_URL ROOM. It joins ROOM, prints "ready",
then reads frames until the connection ends; its WebSocket library answers the
server's pings from a background thread, as any live client would.
"""

from __future__ import annotations

import json
import sys

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect


def main() -> None:
    url, room = sys.argv[1], sys.argv[2]
    with connect(url, ping_interval=None, open_timeout=10) as ws:
        ws.recv()
        ws.send(json.dumps({"type": "join", "room": room}))
        while json.loads(ws.recv()).get("type") != "joined":
            pass
        print("ready", flush=True)
        try:
            while True:
                ws.recv()
        except ConnectionClosed:
            return


if __name__ == "__main__":
    main()
