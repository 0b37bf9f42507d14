"""Rate limits: a token bucket per connection (password attempts are throttled in ``throttle.py``).

Pure code: every call takes ``now`` in seconds (any monotonic clock).
"""

from __future__ import annotations


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
