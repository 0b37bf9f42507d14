"""Throttles for password checks and registrations: every attempt is counted before its hash, not after.

``Throttle`` is pure code: every call takes ``now`` in seconds (any monotonic
clock). ``HashPool`` runs the hashes on threads of its own.

A password check (a login, or the old password of a password change) and a
registration each cost a scrypt hash, tens of milliseconds of CPU. So before
the hash, ``Throttle.begin`` decides and records the attempt:

- **per address**: at most ``attempts_per_min`` failures a minute, where an
  attempt still in flight counts as a failure until it succeeds (so hundreds
  of concurrent guesses cannot all pass the check before any is counted), and
  at most ``ADDRESS_IN_FLIGHT`` attempts at once; registrations are limited
  to ``registrations_per_hour`` per address;
- **per name**: failures for a name make the next attempt on it from an
  address that has failed lately (a *suspect* address) wait, doubling from 1 s
  after ``NAME_FREE_FAILURES`` up to ``max_delay_s``, and at most
  ``NAME_IN_FLIGHT`` attempts on the name may be in flight from suspect
  addresses. A guesser, who fails, is slowed and queued; the owner, from an
  address without recent failures, is neither delayed nor refused for the
  name, so failed guesses never lock the owner out.

The hashes themselves run on ``HashPool``, which refuses work past a cap on
hashes running and waiting, so a flood from many addresses costs bounded
CPU and bounded delay for everyone else.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

R = TypeVar("R")

ADDRESS_WINDOW_S = 60.0
REGISTRATION_WINDOW_S = 3600.0
# Failures of a name are remembered this long for its delay.
NAME_WINDOW_S = 900.0
# Attempts one address may have in flight (waiting out a delay or being hashed).
ADDRESS_IN_FLIGHT = 2
# Attempts on one name that may be in flight from addresses that failed lately.
NAME_IN_FLIGHT = 4
# Failures of a name in NAME_WINDOW_S that cost nothing; each one more doubles the wait, from 1 s.
NAME_FREE_FAILURES = 5
# Threads that hash passwords. Each hash keeps a core busy for its duration; one thread leaves the event
# loop a core of its own on a two-core machine, and hashes 15-20 passwords a second.
HASH_THREADS = 1
# Keys (addresses, names) each log remembers; past it the least recently used is forgotten.
MAX_KEYS = 100_000

LOGIN = "login"
REGISTER = "register"


class Throttled(Exception):
    """An attempt refused before its hash: HTTP ``status``, a stable ``code``, and when to come back."""

    def __init__(self, status: int, code: str, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s


class RecentEvents:
    """When events happened per key, within the last ``window_s``; memory bounded by ``max_keys`` and ``cap``."""

    def __init__(self, window_s: float, cap: int, max_keys: int = MAX_KEYS) -> None:
        self.window_s = window_s
        self.cap = cap
        self.max_keys = max_keys
        self._events: OrderedDict[str, deque[float]] = OrderedDict()

    def count(self, key: str, now: float) -> int:
        """Events of ``key`` in the window (at most ``cap``)."""
        events = self._events.get(key)
        if events is None:
            return 0
        while events and events[0] <= now - self.window_s:
            events.popleft()
        if not events:
            del self._events[key]
        return len(events)

    def retry_after(self, key: str, now: float, limit: int) -> float:
        """Seconds until ``key`` has fewer than ``limit`` events in the window; 0 when it has now."""
        if self.count(key, now) < limit:
            return 0.0
        events = self._events[key]
        return events[len(events) - limit] + self.window_s - now

    def add(self, key: str, now: float) -> None:
        events = self._events.get(key)
        if events is None:
            events = self._events[key] = deque(maxlen=self.cap)
            if len(self._events) > self.max_keys:
                self._events.popitem(last=False)
        else:
            self._events.move_to_end(key)
        events.append(now)

    def take_back(self, key: str) -> None:
        """Forget the latest event of ``key`` (an attempt counted in advance that succeeded)."""
        events = self._events.get(key)
        if events:
            events.pop()

    def clear(self, key: str) -> None:
        self._events.pop(key, None)

    def __len__(self) -> int:
        return len(self._events)


@dataclass(slots=True)
class Attempt:
    """One attempt let through ``Throttle.begin``: wait ``delay_s``, hash, then ``Throttle.end`` it once."""

    kind: str
    address: str
    name_key: str | None
    delay_s: float
    ended: bool = False


class Throttle:
    """The limits of the module docstring, for one server."""

    def __init__(self, attempts_per_min: int, registrations_per_hour: int, max_delay_s: float) -> None:
        self.attempts_per_min = attempts_per_min
        self.registrations_per_hour = registrations_per_hour
        self.max_delay_s = max_delay_s
        self.address_failures = RecentEvents(ADDRESS_WINDOW_S, attempts_per_min)
        self.registrations = RecentEvents(REGISTRATION_WINDOW_S, registrations_per_hour)
        self.name_failures = RecentEvents(NAME_WINDOW_S, NAME_FREE_FAILURES + 16)
        self.address_in_flight: dict[str, int] = {}
        self.name_in_flight: dict[str, int] = {}

    def name_delay(self, name_key: str, now: float) -> float:
        """How long the next attempt on this name waits, in seconds."""
        excess = self.name_failures.count(name_key, now) - NAME_FREE_FAILURES
        return 0.0 if excess < 0 else min(self.max_delay_s, float(2**excess))

    def _check_address(self, kind: str, address: str, now: float) -> None:
        wait = self.address_failures.retry_after(address, now, self.attempts_per_min)
        if kind == REGISTER:
            wait = max(wait, self.registrations.retry_after(address, now, self.registrations_per_hour))
        if wait > 0:
            raise Throttled(429, "too_many_attempts", "too many attempts from your address; try again later", wait)

    def begin(self, kind: str, address: str, name_key: str | None, now: float) -> Attempt:
        """Let an attempt through, counted as a failure until it succeeds; raises ``Throttled``."""
        self._check_address(kind, address, now)
        if self.address_in_flight.get(address, 0) >= ADDRESS_IN_FLIGHT:
            raise Throttled(429, "too_many_attempts", "wait for your other attempts to finish", 1.0)
        delay = 0.0
        if name_key is not None:
            if self.address_failures.count(address, now) > 0:  # a suspect address
                if self.name_in_flight.get(name_key, 0) >= NAME_IN_FLIGHT:
                    raise Throttled(429, "too_many_attempts", "too many attempts for this name; try again later", 1.0)
                delay = self.name_delay(name_key, now)
            self.name_failures.add(name_key, now)
            _bump(self.name_in_flight, name_key, 1)
        if kind == REGISTER:
            self.registrations.add(address, now)
        else:
            self.address_failures.add(address, now)
        _bump(self.address_in_flight, address, 1)
        return Attempt(kind, address, name_key, delay)

    def end(self, attempt: Attempt, succeeded: bool) -> None:
        """The attempt is over: a success takes back what ``begin`` counted against the address and name."""
        if attempt.ended:
            return
        attempt.ended = True
        _bump(self.address_in_flight, attempt.address, -1)
        if attempt.name_key is not None:
            _bump(self.name_in_flight, attempt.name_key, -1)
        if succeeded and attempt.kind != REGISTER:
            self.address_failures.take_back(attempt.address)
            if attempt.name_key is not None:
                self.name_failures.clear(attempt.name_key)

    def probe(self, address: str, now: float) -> None:
        """A request that needs no hash but answers a guesser (is this name taken?): refused past the address
        limit (raises ``Throttled``), else counted as a failure."""
        self._check_address(LOGIN, address, now)
        self.address_failures.add(address, now)


def _bump(counts: dict[str, int], key: str, by: int) -> None:
    value = counts.get(key, 0) + by
    if value > 0:
        counts[key] = value
    else:
        counts.pop(key, None)


class HashPool:
    """Threads that hash passwords, with at most ``max_queued`` hashes running or waiting at once."""

    def __init__(self, max_queued: int, threads: int = HASH_THREADS) -> None:
        self.max_queued = max_queued
        self.queued = 0
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="chat-hash")

    async def run(self, work: Callable[[], R]) -> R:
        """``work()`` on a hashing thread; raises ``Throttled`` (503) when the queue is full."""
        if self.queued >= self.max_queued:
            raise Throttled(503, "busy", "the server is busy checking passwords; try again in a moment", 1.0)
        self.queued += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, work)
        finally:
            self.queued -= 1

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
