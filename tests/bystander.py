"""A bystander for the abuse suite, in a process of its own: it measures what an attack does to everyone else.

Usage: ``python -m tests.bystander WS_URL TOKEN_SENDER TOKEN_RECEIVER ROOM``. Both connections join ROOM and
it prints ``ready``. From then on each connection pings every 100 ms (application pings: a frame through the
whole server and back), the sender sends a message to ROOM every 250 ms, and the receiver collects them. On a line
``stop`` on standard input it stops sending, gives the receiver up to 5 s to get every message that was acked,
and prints one JSON line: ``{"rtts_ms": [...], "pings": N, "acked": [...], "received": [...], "errors": [...]}``.
A ping that got no pong has no round trip in ``rtts_ms`` (the suite counts it as lost).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

PING_INTERVAL_S = 0.1
SEND_INTERVAL_S = 0.25
SETTLE_S = 5.0


class Bystander:
    def __init__(self) -> None:
        self.sent_at: dict[int, float] = {}
        self.rtts_ms: list[float] = []
        self.acked: set[int] = set()
        self.received: set[int] = set()
        self.errors: list[str] = []
        self.stopping = asyncio.Event()

    async def read_sender(self, ws: ClientConnection) -> None:
        loop = asyncio.get_running_loop()
        async for raw in ws:
            frame: dict[str, Any] = json.loads(raw)
            kind = frame.get("type")
            if kind == "pong" and (sent := self.sent_at.pop(int(frame.get("id") or 0), None)) is not None:
                self.rtts_ms.append((loop.time() - sent) * 1000)
            elif kind == "ack":
                self.acked.add(frame["seq"])
            elif kind == "error":
                self.errors.append(str(frame.get("code")))

    async def read_receiver(self, ws: ClientConnection) -> None:
        loop = asyncio.get_running_loop()
        async for raw in ws:
            frame: dict[str, Any] = json.loads(raw)
            kind = frame.get("type")
            if kind == "message":
                self.received.add(frame["seq"])
            elif kind == "pong" and (sent := self.sent_at.pop(int(frame.get("id") or 0), None)) is not None:
                self.rtts_ms.append((loop.time() - sent) * 1000)

    async def ping(self, ws: ClientConnection, first_id: int) -> int:
        """Ping every 100 ms with ids from ``first_id`` up; returns how many."""
        loop = asyncio.get_running_loop()
        count = 0
        while not self.stopping.is_set():
            ping_id = first_id + count
            count += 1
            self.sent_at[ping_id] = loop.time()
            await ws.send(json.dumps({"type": "ping", "id": ping_id}))
            await asyncio.sleep(PING_INTERVAL_S)
        return count

    async def send(self, ws: ClientConnection, room: str) -> None:
        number = 0
        while not self.stopping.is_set():
            number += 1
            await ws.send(
                json.dumps({"type": "send", "id": f"by-{number}", "room": room, "text": f"still here {number}"})
            )
            await asyncio.sleep(SEND_INTERVAL_S)


async def join(ws: ClientConnection, room: str) -> None:
    await ws.recv()  # welcome
    await ws.send(json.dumps({"type": "join", "room": room}))
    while json.loads(await ws.recv()).get("type") != "joined":
        pass


async def main(url: str, sender_token: str, receiver_token: str, room: str) -> None:
    bystander = Bystander()
    options: dict[str, Any] = {"ping_interval": None, "open_timeout": 10, "max_size": None}
    async with (
        connect(f"{url}?token={sender_token}", **options) as sender,
        connect(f"{url}?token={receiver_token}", **options) as receiver,
    ):
        await join(sender, room)
        await join(receiver, room)
        readers = [
            asyncio.ensure_future(bystander.read_sender(sender)),
            asyncio.ensure_future(bystander.read_receiver(receiver)),
        ]
        print("ready", flush=True)
        pinging = [
            asyncio.ensure_future(bystander.ping(sender, 1)),
            asyncio.ensure_future(bystander.ping(receiver, 1_000_000)),
        ]
        sending = asyncio.ensure_future(bystander.send(sender, room))
        loop = asyncio.get_running_loop()
        while (await loop.run_in_executor(None, sys.stdin.readline)).strip() not in ("stop", ""):
            pass
        bystander.stopping.set()
        pings = sum(await asyncio.gather(*pinging))
        await sending
        deadline = loop.time() + SETTLE_S
        while loop.time() < deadline and (not bystander.acked <= bystander.received or bystander.sent_at):
            await asyncio.sleep(0.05)
        for reader in readers:
            reader.cancel()
    report = {
        "rtts_ms": bystander.rtts_ms,
        "pings": pings,
        "acked": sorted(bystander.acked),
        "received": sorted(bystander.received),
        "errors": bystander.errors,
    }
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    try:
        asyncio.run(main(*sys.argv[1:5]))
    except ConnectionClosed as closed:
        print(json.dumps({"closed": str(closed)}), flush=True)
        raise SystemExit(1) from None
