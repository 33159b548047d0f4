"""Sandbox time: a wall clock that can run faster than real time, jump forward, and fire timers on it.

Order lifecycles (deposit windows, progression steps, delivery retries) are expressed in *sandbox
seconds* so that one speed factor shrinks all of them consistently, and ``advance`` lets a test jump
over a 30-minute window without waiting. All timers live in one heap served by one task, so changing
the speed or jumping re-plans every pending timer at once instead of leaving stale ``call_later``
handles behind.

Everything here runs on the sandbox's event loop thread; nothing is thread-safe by design.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Callable


class SandboxClock:
    """``now()`` = real wall time at start + speed * real time elapsed + manual jumps."""

    def __init__(self, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self._speed = speed
        self._anchor_mono = time.monotonic()
        self._anchor_sandbox = time.time()

    @property
    def speed(self) -> float:
        return self._speed

    def now(self) -> float:
        return self._anchor_sandbox + (time.monotonic() - self._anchor_mono) * self._speed

    def set_speed(self, speed: float) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        # Re-anchor so that sandbox time is continuous across the change.
        now_mono = time.monotonic()
        self._anchor_sandbox += (now_mono - self._anchor_mono) * self._speed
        self._anchor_mono = now_mono
        self._speed = speed

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the sandbox clock only moves forward")
        self._anchor_sandbox += seconds

    def real_delay(self, sandbox_seconds: float) -> float:
        return max(0.0, sandbox_seconds / self._speed)


class Scheduler:
    """Runs callbacks at sandbox times. Callbacks are plain functions; they must not block."""

    def __init__(self, clock: SandboxClock) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, Callable[[], object]]] = []
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.errors: list[str] = []

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="sandbox-scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def clear(self) -> None:
        self._heap.clear()
        self._wake.set()

    def __len__(self) -> int:
        return len(self._heap)

    def call_at(self, when: float, callback: Callable[[], object]) -> None:
        seq = next(self._seq)
        heapq.heappush(self._heap, (when, seq, callback))
        if self._heap[0][1] == seq:
            self._wake.set()

    def call_after(self, sandbox_seconds: float, callback: Callable[[], object]) -> None:
        self.call_at(self._clock.now() + sandbox_seconds, callback)

    def poke(self) -> None:
        """Re-plan after the clock changed speed or jumped."""
        self._wake.set()

    def run_due(self) -> int:
        """Fire every timer whose time has come; returns how many fired."""
        fired = 0
        while self._heap and self._heap[0][0] <= self._clock.now():
            _, _, callback = heapq.heappop(self._heap)
            fired += 1
            try:
                callback()
            except Exception as exc:  # noqa: BLE001 - one broken timer must not stop the clock
                self.errors.append(f"{type(exc).__name__}: {exc}")
        return fired

    async def _run(self) -> None:
        while True:
            self.run_due()
            self._wake.clear()
            timeout = None
            if self._heap:
                timeout = self._clock.real_delay(self._heap[0][0] - self._clock.now())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
