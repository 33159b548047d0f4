"""Scheduler: turns the ledger's due times into commands on the bus.

Delays live in the ledger (``next_action_at``), not in worker memory, so a million open orders cost rows,
not RAM, and a lost poll message only delays an order until the next pass. Several schedulers may run: the
ledger hands each due row to one of them (SKIP LOCKED) and holds it until the command had time to run.

A partner whose reads cost budget is polled no faster than its budget allows (:class:`PollPace`): each
pass hands out at most the polls the reads' share of the budget has room for now, so polls never pile up
in the queue waiting for budget, and creates keep the reserve the budget leaves them. Which polls go when
the budget is short: orders near their deadline first, then the rest oldest due first. An order goes to
the back when it is polled (or pushed), so with more open orders than the budget can poll at their
cadence every order is polled once per ``open orders / polls per second`` (the poll cycle, exported with
the staleness it results in), and none is starved. Creates to re-drive are never paced.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from worker import metrics
from worker.ledger.base import DueKind, DueOrder, Ledger
from worker.ledger.outage import LedgerWaiter
from worker.logs import get_logger
from worker.partners import registry
from worker.ratelimit import BudgetStanding, Priority, WeightBudget
from worker.settings import Settings
from worker.status import Status

log = get_logger(__name__)

UNTRACKABLE = "untrackable"
"""The pseudo-status under which ``Ledger.count_by_status`` counts orders that cannot be polled."""

NOT_POLLED = frozenset({UNTRACKABLE, Status.IN_DOUBT.value})

Dispatch = Callable[[Sequence[tuple[str, dict[str, Any]]]], list[bool]]
"""dispatch([(actor_name, kwargs), ...]) -> per command, whether the broker took it; raises when that is
unknown (``worker.bus.publishing.CommandBatchPublisher.publish``)."""


@dataclass(frozen=True)
class PollPace:
    """How fast one partner's polls may go: its default account's budget and what one poll weighs."""

    budget: WeightBudget
    weight: int

    def per_second_now(self) -> float:
        """Polls per second the budget sustains beside the creates of the last window."""
        return self._per_second(self.budget.standing())

    def allowance(self, seconds: float) -> int:
        """Polls to hand out now, ``seconds`` after the last hand-out: what the budget has room for, and
        never more than the reads' share over that time (polls handed out a moment ago may not be charged
        yet, and a young window's room is the creates' before long)."""
        standing = self.budget.standing()
        room = standing.room(Priority.READ) // self.weight
        return max(0, min(room, math.ceil(self._per_second(standing) * seconds)))

    def _per_second(self, standing: BudgetStanding) -> float:
        return standing.read_share / self.budget.window / self.weight


def poll_paces(
    partners: Iterable[registry.Connected], budgets: Mapping[str, WeightBudget]
) -> dict[str, PollPace]:
    """The pace of every partner whose polls cost weight in a shared budget.

    A partner's orders of every account are paced by its default account's budget: the scheduler reads
    due rows by partner, and the account is inside the stored command."""
    paces = {}
    for connected in partners:
        budget = budgets.get(connected.key)
        weight = connected.partner.capabilities.weights.get("fetch", 0)
        if budget is not None and budget.enabled and weight > 0:
            paces[connected.name] = PollPace(budget, weight)
    return paces


class Scheduler:
    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        dispatch: Dispatch,
        clock: Callable[[], float] = time.time,
        paces: Mapping[str, PollPace] | None = None,
        providers: Sequence[str] | None = None,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.dispatch = dispatch
        self.clock = clock
        self.paces = dict(paces or {})
        self.providers = list(providers if providers is not None else registry.names())
        self.waiter = LedgerWaiter()
        self._sampled: set[tuple[str, str]] = set()
        self._last_pass: float | None = None

    def pass_once(self) -> int:
        """Hands out one batch of due orders as one batch of commands; returns how many were due.

        The ledger holds every row it hands out, so a command the broker refused, or a batch whose fate is
        unknown, costs only a wait: the row is due again when its hold ends. The hold only matters then;
        the actor sets the real next time when it runs."""
        now = self.clock()
        since = (
            self.settings.tracking.scheduler_interval if self._last_pass is None else now - self._last_pass
        )
        self._last_pass = now
        due: list[DueOrder] = []
        for provider in self.providers:
            pace = self.paces.get(provider)
            due += self._take(provider, now, DueKind.ANY if pace is None else DueKind.CREATES)
            if pace is not None:
                due += self._take_polls(provider, now, pace.allowance(since))
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

    def _take(
        self,
        provider: str,
        now: float,
        kind: DueKind,
        limit: int | None = None,
        deadline: float | None = None,
    ) -> list[DueOrder]:
        tracking = self.settings.tracking
        batch = tracking.scheduler_batch if limit is None else min(limit, tracking.scheduler_batch)
        if batch <= 0:
            return []
        return self.ledger.take_due(provider, now, batch, tracking.submit_stuck_seconds, kind, deadline)

    def _take_polls(self, provider: str, now: float, allowance: int) -> list[DueOrder]:
        """Up to ``allowance`` polls: orders near their deadline first, then the oldest due."""
        horizon = now + self.settings.tracking.deadline_horizon_seconds
        polls = self._take(provider, now, DueKind.NEAR_DEADLINE, allowance, horizon)
        return polls + self._take(provider, now, DueKind.POLLS, allowance - len(polls))

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
        self._sample_polling(counts)

    def _sample_polling(self, counts: Mapping[tuple[str, str], int]) -> None:
        """The poll cycle the budget allows, and the staleness polling actually reaches."""
        tracking = self.settings.tracking
        now = self.clock()
        for provider in self.providers:
            pace = self.paces.get(provider)
            # Orders polled at a cadence: open ones, not parked in_doubt, less the untrackable (counted
            # besides their status, and never polled).
            polled = sum(
                count
                for (name, status), count in counts.items()
                if name == provider
                and status not in NOT_POLLED
                and tracking.poll_interval(status) is not None
            )
            polled -= counts.get((provider, UNTRACKABLE), 0)
            rate = 0.0 if pace is None else pace.per_second_now()
            metrics.POLL_CYCLE.labels(provider).set(max(0, polled) / rate if rate > 0 else 0.0)
            oldest = self.ledger.oldest_due_poll(provider, now)
            staleness = 0.0
            if oldest is not None:
                status, due_at = oldest
                staleness = now - due_at + (tracking.poll_interval(status) or 0.0)
            metrics.POLL_STALENESS.labels(provider).set(max(0.0, staleness))

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
