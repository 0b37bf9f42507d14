"""One request at a time per client: a second waits behind the first (a few at most), the rest are refused.

History pages are the case: each one reads up to a page of rows and builds
up to 256 KiB on the loop, so a client that asks for many at once could hold
many of them in memory together. Keys are whatever names a client (a
WebSocket session, an HTTP login session).
"""

from __future__ import annotations

import asyncio
from collections import deque


class Busy(Exception):
    """The client has as many requests running and waiting as it may."""


class InFlight:
    """At most one running request per key, and ``waiting`` more queued behind it, served in order."""

    def __init__(self, waiting: int) -> None:
        self.waiting = waiting
        self._running: set[str] = set()
        self._waiters: dict[str, deque[asyncio.Future[None]]] = {}

    def try_enter(self, key: str) -> bool:
        """Start at once if nothing runs for ``key``; False otherwise. Pair a True with ``leave``."""
        if key in self._running:
            return False
        self._running.add(key)
        return True

    async def enter(self, key: str) -> None:
        """Start when it is ``key``'s turn; raises ``Busy`` when its queue is full. Pair with ``leave``."""
        if self.try_enter(key):
            return
        waiters = self._waiters.setdefault(key, deque())
        if len(waiters) >= self.waiting:
            raise Busy(key)
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.leave(key)  # the turn came just as this waiter was cancelled: pass it on
            raise

    def leave(self, key: str) -> None:
        """The running request for ``key`` is done: the next waiter starts."""
        waiters = self._waiters.get(key)
        while waiters:
            turn = waiters.popleft()
            if not waiters:
                del self._waiters[key]
            if not turn.done():
                turn.set_result(None)
                return
        self._running.discard(key)

    @property
    def waiting_count(self) -> int:
        """Requests waiting, for every key together."""
        return sum(len(waiters) for waiters in self._waiters.values())

    def __len__(self) -> int:
        """Keys with a request running."""
        return len(self._running)
