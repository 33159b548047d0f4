"""Replay and rate limits, both O(1) amortised per request so they cost nothing at thousands of req/s.

Both use the real monotonic clock, not sandbox time: they protect against real clients sending real
traffic, and a ``Retry-After`` must be something a real client can wait for.
"""

from __future__ import annotations

import math
import time
from collections import deque


class NonceStore:
    """Remembers nonces for ``ttl`` seconds: a dict for lookup plus a FIFO deque for expiry.

    Expiry times are monotonic in insertion order (fixed ttl), so purging pops from the left only.
    """

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._seen: dict[str, float] = {}
        self._order: deque[tuple[float, str]] = deque()

    def __len__(self) -> int:
        return len(self._seen)

    def check_and_add(self, nonce: str, now: float | None = None) -> bool:
        """True if the nonce is fresh (and is now remembered), False if seen within the ttl."""
        now = time.monotonic() if now is None else now
        order = self._order
        seen = self._seen
        while order and order[0][0] <= now:
            expires, old = order.popleft()
            if seen.get(old) == expires:
                del seen[old]
        if nonce in seen:
            return False
        expires = now + self.ttl
        seen[nonce] = expires
        order.append((expires, nonce))
        return True

    def clear(self) -> None:
        self._seen.clear()
        self._order.clear()


class WeightWindow:
    """Sliding-window weight budget: at most ``limit`` weight in any ``window`` seconds.

    The deque holds (time, weight) of accepted calls and a running sum; refused calls are not recorded
    (they do not consume budget, so a client hammering on 429 is not punished forever).
    """

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._events: deque[tuple[float, int]] = deque()
        self._used = 0

    @property
    def used(self) -> int:
        return self._used

    def _expire(self, now: float) -> None:
        cutoff = now - self.window
        events = self._events
        while events and events[0][0] <= cutoff:
            self._used -= events.popleft()[1]

    def take(self, weight: int, now: float | None = None) -> int | None:
        """Charge ``weight``; None if accepted, else the Retry-After seconds (an int >= 1)."""
        now = time.monotonic() if now is None else now
        self._expire(now)
        if self._used + weight <= self.limit:
            self._events.append((now, weight))
            self._used += weight
            return None
        if weight > self.limit:
            # Never satisfiable: say "one full window" rather than a misleading short wait.
            return max(1, math.ceil(self.window))
        need = self._used + weight - self.limit
        freed = 0
        for at, w in self._events:
            freed += w
            if freed >= need:
                return max(1, math.ceil(at + self.window - now))
        return max(1, math.ceil(self.window))  # pragma: no cover - unreachable with consistent sums

    def clear(self) -> None:
        self._events.clear()
        self._used = 0
