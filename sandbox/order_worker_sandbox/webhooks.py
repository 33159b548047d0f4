"""Outbound delivery of 0trace webhooks and itrx callbacks, with retry ladders on sandbox time.

The body bytes of a delivery are frozen when it is queued (the order's state at that moment) and resent
unchanged on every retry; the headers are rebuilt per attempt, because the timestamp header must be the
send time of each attempt for receivers' freshness windows to behave as in production. The headers use
the *real* wall clock, not sandbox time, for the same reason.

Every attempt is logged (``GET /_sandbox/deliveries``) so tests can assert on exactly what was sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from order_worker_sandbox.clock import Scheduler
from order_worker_sandbox.stats import Stats

HeaderFactory = Callable[[bytes, int], dict[str, str]]
"""(body, unix seconds of this attempt) -> headers to send."""


@dataclass
class Delivery:
    id: int
    provider: str
    event: str
    ref: str
    order_status: str
    url: str | None
    body: bytes
    headers_for: HeaderFactory = field(repr=False)
    schedule: tuple[float, ...]
    success_statuses: range
    state: str = "pending"
    attempts: list[dict[str, Any]] = field(default_factory=list)
    queued_at: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "provider": self.provider,
            "event": self.event,
            "ref": self.ref,
            "order_status": self.order_status,
            "url": self.url,
            "state": self.state,
            "queued_at": self.queued_at,
            "attempts": self.attempts,
            "body": self.body.decode("utf-8"),
        }


class Deliverer:
    def __init__(self, scheduler: Scheduler, stats: Stats, timeout: Callable[[], float]) -> None:
        self._scheduler = scheduler
        self._stats = stats
        self._timeout = timeout
        self._ids = itertools.count(1)
        self._log: deque[Delivery] = deque(maxlen=20000)
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._generation = 0

    def submit(
        self,
        *,
        provider: str,
        event: str,
        ref: str,
        order_status: str,
        url: str | None,
        body: bytes,
        headers_for: HeaderFactory,
        schedule: tuple[float, ...],
        success_statuses: range,
    ) -> Delivery:
        delivery = Delivery(
            id=next(self._ids),
            provider=provider,
            event=event,
            ref=ref,
            order_status=order_status,
            url=url,
            body=body,
            headers_for=headers_for,
            schedule=schedule,
            success_statuses=success_statuses,
        )
        self._log.append(delivery)
        counts = self._stats.deliveries[provider]
        if url is None:
            delivery.state = "skipped"
            counts["skipped"] += 1
            return delivery
        counts["queued"] += 1
        self._spawn(delivery)
        return delivery

    def _spawn(self, delivery: Delivery) -> None:
        generation = self._generation
        if delivery.state != "pending":
            return
        task = asyncio.get_running_loop().create_task(self._attempt(delivery, generation))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _attempt(self, delivery: Delivery, generation: int) -> None:
        assert delivery.url is not None
        counts = self._stats.deliveries[delivery.provider]
        sent_at = int(time.time())
        headers = delivery.headers_for(delivery.body, sent_at)
        record: dict[str, Any] = {
            "n": len(delivery.attempts) + 1,
            "at": time.time(),
            "timestamp": sent_at,
            "http_status": None,
            "error": None,
            "ok": False,
        }
        delivery.attempts.append(record)
        counts["attempts"] += 1
        try:
            session = self._get_session()
            async with session.post(
                delivery.url,
                data=delivery.body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self._timeout()),
            ) as resp:
                await resp.read()
                record["http_status"] = resp.status
                record["ok"] = resp.status in delivery.success_statuses
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            record["error"] = f"{type(exc).__name__}: {exc}"
        if generation != self._generation:
            return  # a reset happened while this attempt was in flight
        if record["ok"]:
            delivery.state = "delivered"
            counts["delivered"] += 1
            return
        counts["failed_attempts"] += 1
        retry_index = len(delivery.attempts) - 1
        if retry_index >= len(delivery.schedule):
            delivery.state = "gave_up"
            counts["gave_up"] += 1
            return
        self._scheduler.call_after(delivery.schedule[retry_index], lambda: self._spawn(delivery))

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=100, force_close=False),
                skip_auto_headers=("Content-Type",),
            )
        return self._session

    def log(self) -> list[Delivery]:
        return list(self._log)

    def pending(self) -> int:
        return sum(1 for d in self._log if d.state == "pending")

    def reset(self) -> None:
        """Forget everything; in-flight attempts finish but neither log nor retry anything."""
        self._generation += 1
        for d in self._log:
            if d.state == "pending":
                d.state = "cancelled"
        self._log.clear()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None
