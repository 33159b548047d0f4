"""Scheduler: turns the ledger's due times into commands on the bus.

Delays live in the ledger (``next_action_at``), not in worker memory, so 100k open orders cost rows, not
RAM, and a lost poll message only delays an order until the next pass. Several schedulers may run: the
ledger hands each due row to one of them (SKIP LOCKED) and holds it until the command had time to run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from worker import metrics
from worker.ledger.base import DueOrder, Ledger
from worker.settings import Settings
from worker.status import Status

log = logging.getLogger(__name__)

Send = Callable[[str, dict[str, Any]], None]
"""send(actor_name, kwargs): enqueue one command (the Dramatiq wiring lives in the caller)."""


class Scheduler:
    def __init__(
        self, settings: Settings, ledger: Ledger, send: Send, clock: Callable[[], float] = time.time
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.send = send
        self.clock = clock

    def pass_once(self) -> int:
        now = self.clock()
        # The hold only matters if the command is lost: the actor sets the real next time when it runs.
        due = self.ledger.take_due(now, self.settings.scheduler_batch, self.settings.submit_stuck_seconds)
        for order in due:
            self._dispatch(order)
        return len(due)

    def _dispatch(self, order: DueOrder) -> None:
        if order.status == Status.SUBMITTING:
            self.send("create_order", order.command)
        else:
            self.send("poll_order", {"command_id": order.command_id})

    def sample_gauges(self) -> None:
        metrics.OUTBOX_BACKLOG.set(self.ledger.outbox_backlog())
        oldest = self.ledger.outbox_oldest_created_at()
        metrics.OUTBOX_OLDEST.set(0.0 if oldest is None else max(0.0, self.clock() - oldest))
        for (provider, status), count in self.ledger.count_by_status().items():
            metrics.ORDERS.labels(provider, status).set(count)

    def run(self, stop: threading.Event, gauge_every: float = 5.0, prune_every: float = 60.0) -> None:
        last_gauges = last_prune = 0.0
        while not stop.is_set():
            started = self.clock()
            try:
                handed_out = self.pass_once()
                if started - last_gauges >= gauge_every:
                    self.sample_gauges()
                    last_gauges = started
                if started - last_prune >= prune_every:
                    self.ledger.prune(started - self.settings.retention_seconds)
                    last_prune = started
            except Exception:
                log.exception("scheduler pass failed")
                handed_out = 0
            if handed_out < self.settings.scheduler_batch:
                stop.wait(self.settings.scheduler_interval)
