"""Rate limits: a token bucket per connection, and failed-attempt counters for logins.

Pure code: every call takes ``now`` in seconds (any monotonic clock).
"""

from __future__ import annotations

from collections import OrderedDict, deque


class TokenBucket:
    """``rate`` tokens a second up to ``burst``; each frame takes one.

    A second, smaller bucket measures abuse: every refused frame takes a
    token from it, and it refills at half the rate. A client that keeps
    sending while refused empties it and ``exhausted`` turns True; one that
    slows down when told is never cut off.
    """

    __slots__ = ("rate", "burst", "tokens", "penalty", "updated")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.penalty = float(burst)
        self.updated = now

    def take(self, now: float) -> bool:
        """Spend a token for one frame; False when the frame is over the limit."""
        elapsed = now - self.updated
        if elapsed > 0:
            self.updated = now
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            self.penalty = min(self.burst, self.penalty + elapsed * self.rate / 2)
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        self.penalty -= 1
        return False

    @property
    def exhausted(self) -> bool:
        """True once refused frames have kept coming faster than the bucket forgives them."""
        return self.penalty <= 0


class AttemptLimiter:
    """At most ``limit`` failures per key in any ``window_s`` seconds; keys are addresses or user names.

    Memory is bounded: past ``max_keys`` keys the least recently failed is forgotten.
    """

    def __init__(self, limit: int, window_s: float, max_keys: int = 100_000) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_keys = max_keys
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, key: str, now: float) -> float:
        """Seconds until ``key`` may try again; 0 when it may try now."""
        failures = self._failures.get(key)
        if failures is None:
            return 0.0
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return 0.0
        if len(failures) < self.limit:
            return 0.0
        return failures[0] + self.window_s - now

    def failed(self, key: str, now: float) -> None:
        failures = self._failures.get(key)
        if failures is None:
            failures = self._failures[key] = deque()
            if len(self._failures) > self.max_keys:
                self._failures.popitem(last=False)
        else:
            self._failures.move_to_end(key)
        failures.append(now)
        if len(failures) > self.limit:
            failures.popleft()

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)

    def __len__(self) -> int:
        return len(self._failures)
