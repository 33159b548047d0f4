"""Scheduler: turns the ledger's due times into commands on the bus.

Delays live in the ledger (``next_action_at``), not in worker memory, so 100k open orders cost rows, not
RAM, and a lost poll message only delays an order until the next pass. Several schedulers may run: the
ledger hands each due row to one of them (SKIP LOCKED) and holds it until the command had time to run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from worker import metrics
from worker.ledger.base import DueOrder, Ledger
from worker.ledger.outage import LedgerWaiter
from worker.logs import get_logger
from worker.settings import Settings
from worker.status import Status

log = get_logger(__name__)

UNTRACKABLE = "untrackable"
"""The pseudo-status under which ``Ledger.count_by_status`` counts orders that cannot be polled."""

Dispatch = Callable[[Sequence[tuple[str, dict[str, Any]]]], list[bool]]
"""dispatch([(actor_name, kwargs), ...]) -> per command, whether the broker took it; raises when that is
unknown (``worker.bus.publishing.CommandBatchPublisher.publish``)."""


class Scheduler:
    def __init__(
        self, settings: Settings, ledger: Ledger, dispatch: Dispatch, clock: Callable[[], float] = time.time
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.dispatch = dispatch
        self.clock = clock
        self.waiter = LedgerWaiter()
        self._sampled: set[tuple[str, str]] = set()

    def pass_once(self) -> int:
        """Hands out one batch of due orders as one batch of commands; returns how many were due.

        The ledger holds every row it hands out, so a command the broker refused, or a batch whose fate is
        unknown, costs only a wait: the row is due again when its hold ends. The hold only matters then;
        the actor sets the real next time when it runs."""
        now = self.clock()
        due = self.ledger.take_due(
            now, self.settings.tracking.scheduler_batch, self.settings.tracking.submit_stuck_seconds
        )
        if due:
            refused = self.dispatch([_command(order) for order in due]).count(False)
            if refused:
                log.warning(
                    "due_commands_refused",
                    refused=refused,
                    due=len(due),
                    again_in_seconds=self.settings.tracking.submit_stuck_seconds,
                )
        return len(due)

    def sample_gauges(self) -> None:
        metrics.OUTBOX_BACKLOG.set(self.ledger.outbox_backlog())
        oldest = self.ledger.outbox_oldest_created_at()
        metrics.OUTBOX_OLDEST.set(0.0 if oldest is None else max(0.0, self.clock() - oldest))
        metrics.HELD_PUSHES_WAITING.set(self.ledger.held_push_count())
        counts = self.ledger.count_by_status()
        # A status nobody holds any more is absent from the counts; left alone its gauge would keep the
        # last count forever (and an in_doubt alert would never clear), so it is set to 0 instead.
        for provider, status in self._sampled - counts.keys():
            counts[(provider, status)] = 0
        self._sampled |= counts.keys()
        for (provider, status), count in counts.items():
            if status == UNTRACKABLE:
                # The ledger counts untrackable orders besides their real status: a label of the orders
                # gauge would count them twice in every sum over statuses.
                metrics.ORDERS_UNTRACKABLE.labels(provider).set(count)
            else:
                metrics.ORDERS.labels(provider, status).set(count)

    def drop_expired_pushes(self, now: float) -> int:
        """Held pushes whose order never appeared within the TTL (not ours, or a create that failed)."""
        dropped = self.ledger.drop_expired_pushes(now - self.settings.tracking.held_push_seconds)
        if dropped:
            metrics.HELD_PUSHES_EXPIRED.inc(dropped)
            log.info("held_pushes_expired", dropped=dropped)
        return dropped

    def run(self, stop: threading.Event, gauge_every: float = 5.0, prune_every: float = 60.0) -> None:
        """Pass after pass until ``stop``; while the ledger is out, one warning and passes backed off."""
        last_gauges = last_prune = 0.0
        failures = 0
        while not stop.is_set():
            started = self.clock()
            try:
                handed_out = self.pass_once()
                if started - last_gauges >= gauge_every:
                    self.sample_gauges()
                    last_gauges = started
                if started - last_prune >= prune_every:
                    self.ledger.prune(started - self.settings.ledger.retention_seconds)
                    self.drop_expired_pushes(started)
                    last_prune = started
            except Exception as error:
                failures += 1
                pause = self.waiter.pause_after(error, failures, "the scheduler's passes")
                if pause is not None:
                    stop.wait(pause)
                    continue
                log.exception("scheduler_pass_failed")
                handed_out = 0
            else:
                if failures:
                    failures = 0
                    self.waiter.recovered()
            if handed_out < self.settings.tracking.scheduler_batch:
                stop.wait(self.settings.tracking.scheduler_interval)


def _command(order: DueOrder) -> tuple[str, dict[str, Any]]:
    if order.status == Status.SUBMITTING:
        return "create_order", order.command
    return "poll_order", {"command_id": order.command_id}
