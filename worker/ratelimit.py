"""A partner account's weight budget, shared by every replica through the ledger.

Some partners limit each account to a weight budget over a sliding window (0trace: 2,500 units per
60 s; a create costs 50, a read 1; a partner declares its weights in its capabilities) and answer 429
beyond it. The budget belongs to the account, not to a process,
so a limiter in worker memory would let N replicas spend N budgets. This one keeps the account's recent
charges in the ledger (``Ledger.take_weight``), where takers in every replica serialise: a call is sent
only once its weight fits in what the window has left, counted as the partner counts (a sliding window,
not a token bucket, so the whole budget is usable without ever exceeding it). This module is the policy
around it: how long a call may wait, when it is deferred instead, and how a 429 is honoured.

Margins, because the partner counts arrivals on its clock and we count departures on ours: a share of the
budget is left unused (the headroom, default 10%, also room for other clients of the account), and
charges are remembered one second longer than the window. A 429 that still happens (another
client, a smaller budget than configured) is honoured by everyone: its ``Retry-After`` blocks the budget
for all replicas until then.

Priorities, because the budget is worth most where someone waits: a create (and an operator's action)
may use the whole budget, while reads (polls, quotes, reads a push asks for) stop short of it by the
create reserve (``WEIGHT_CREATE_RESERVE``, a share of the usable budget). However hard polls press, the
reserve is free for creates, and once creates dip into it every weight that leaves the window is theirs
until they are back above it: creates never race reads for room, and reads get everything creates do
not use. The scheduler reads the reads' room (:meth:`WeightBudget.standing`) to hand out no more polls than
can be sent.

Settings come from the partner's group (``ORDER_WORKER_<PARTNER>_WEIGHT_BUDGET``, ``_WINDOW``,
``_HEADROOM``, ``_MAX_WAIT``, ``_CREATE_RESERVE``); a budget of 0 disables the limiter, e.g. against a
sandbox whose budget was raised for a benchmark.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field

from worker import metrics
from worker.ledger.base import Ledger
from worker.ledger.outage import LedgerUnavailable, LedgerWaiter
from worker.logs import get_logger
from worker.partners.base import Fate, PartnerError

log = get_logger(__name__)

T = TypeVar("T")
WINDOW_MARGIN_SECONDS = 1.0


class Priority(StrEnum):
    FIRST = "first"
    """Creates and operator actions: someone waits on them; they may use the whole budget."""
    READ = "read"
    """Polls, quotes and reads a push asks for: everything but the create reserve."""

    @classmethod
    def of(cls, operation: str) -> Priority:
        """The priority of a partner operation (a key of ``Capabilities.weights``): a customer's create
        and an operator's choice come first, every read after them."""
        return cls.FIRST if operation in ("create", "action") else cls.READ


class BudgetSettings(BaseModel):
    """The budget's numbers, taken from the partner's settings group."""

    model_config = ConfigDict(frozen=True)

    weight_budget: int = Field(2500, ge=0, description="Weight per window for the account (0: off).")
    weight_window: float = Field(60.0, gt=0, description="The partner's sliding window, seconds.")
    weight_headroom: float = Field(0.1, ge=0, lt=1, description="Share of the budget never used.")
    weight_max_wait: float = Field(5.0, ge=0, description="Seconds a call waits for budget before deferral.")
    weight_create_reserve: float = Field(
        0.1, ge=0, lt=1, description="Share of the usable budget reads always leave to creates."
    )


@dataclass(frozen=True)
class BudgetStanding:
    """A shared budget at one moment (:meth:`WeightBudget.standing`)."""

    first_room: int
    """Weight creates could charge now (0 while a 429 blocks the budget)."""
    read_room: int
    """Weight reads could charge now: the room less the create reserve."""
    read_share: int
    """Weight per window reads can expect beside the creates' recent pace."""

    def room(self, priority: Priority) -> int:
        return self.first_room if priority == Priority.FIRST else self.read_room


class WeightBudget:
    """``call(weight, fn)``: run ``fn`` once ``weight`` fits in the shared budget, else raise a NOT_SENT,
    retryable :class:`PartnerError` whose ``retry_after`` says when it will fit."""

    def __init__(
        self,
        ledger: Ledger | None,
        settings: BudgetSettings,
        name: str,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = name
        self.clock = clock
        self.sleep = sleep
        self.waiter = LedgerWaiter()
        self.window = settings.weight_window + WINDOW_MARGIN_SECONDS
        self.limit = math.floor(settings.weight_budget * (1.0 - settings.weight_headroom))
        self.reserve = math.floor(self.limit * settings.weight_create_reserve)
        self.max_wait = settings.weight_max_wait
        # A budget kept where other replicas cannot see it would multiply the account's budget: off.
        shared = ledger is not None and ledger.shares_budget and self.limit > 0
        self._ledger = ledger if shared else None

    @property
    def enabled(self) -> bool:
        return self._ledger is not None

    def call(
        self,
        weight: int,
        fn: Callable[[], T],
        max_wait: float | None = None,
        hold_until: float | None = None,
        priority: Priority = Priority.READ,
    ) -> T:
        """``max_wait`` replaces the settings' wait for room in the budget for this call (a quote waits no
        longer than its requester does). ``hold_until`` (``time.monotonic()``): while the ledger that keeps
        the budget is out, wait for it until then, and past it give up with a NOT_SENT error (the partner
        was not called). Without it, the ledger's error is raised as it is."""
        if self._ledger is None:
            return fn()
        if hold_until is None:
            self.acquire(weight, max_wait, priority)
        else:
            try:
                self.waiter.hold(
                    lambda: self.acquire(weight, max_wait, priority), "the shared weight budget", hold_until
                )
            except LedgerUnavailable as error:
                raise PartnerError(
                    fate=Fate.NOT_SENT,
                    code="ledger_unavailable",
                    reason=f"the weight budget could not be charged: {error.reason}",
                    retryable=True,
                ) from None
        try:
            return fn()
        except PartnerError as error:
            if error.rate_limited:
                self.block(error.retry_after if error.retry_after is not None else 1.0)
            raise

    def acquire(self, weight: int, max_wait: float | None = None, priority: Priority = Priority.READ) -> None:
        started = time.monotonic()
        deadline = started + (self.max_wait if max_wait is None else max_wait)
        while True:
            wait = self.take(weight, priority)
            if wait <= 0:
                metrics.BUDGET_WAIT.labels(self.name, priority.value).observe(time.monotonic() - started)
                return
            if time.monotonic() + wait > deadline:
                metrics.BUDGET_DEFERRED.labels(self.name, priority.value).inc()
                raise PartnerError(
                    fate=Fate.NOT_SENT,
                    code="local_rate_limit",
                    reason=f"the shared {self.name} weight budget is in use; next slot in {wait:.1f}s",
                    retryable=True,
                    retry_after=wait,
                )
            self.sleep(wait + random.random() * 0.05)

    def take(self, weight: int, priority: Priority = Priority.READ) -> float:
        """Charge ``weight`` now and return 0, or charge nothing and return the seconds until it fits."""
        assert self._ledger is not None
        reserve = None if priority == Priority.FIRST else self.reserve
        return self._ledger.take_weight(self.name, weight, self.clock(), self.window, self.limit, reserve)

    def standing(self) -> BudgetStanding:
        """The room and the reads' share now, from one read of the budget and without charging: what the
        scheduler may hand out.

        The reads' share is the weight per window reads can expect beside creates at their recent pace:
        the usable budget less the reserve and the creates' weight over a whole window. While the window is
        young (a budget used for the first time, or after a quiet spell) the creates' weight so far is
        scaled up to a whole window, so reads do not fill a window that creates will need before any of it
        frees."""
        if self._ledger is None:
            return BudgetStanding(0, 0, 0)
        now = self.clock()
        use = self._ledger.budget_use(self.name, now, self.window)
        counted = self.window if use.oldest_at is None else now - use.oldest_at
        creates = use.first * self.window / min(self.window, max(counted, self.window / 4))
        share = max(0, math.floor(self.limit - self.reserve - creates))
        if use.blocked_until > now:
            return BudgetStanding(0, 0, share)
        free = self.limit - use.used
        return BudgetStanding(max(0, free), max(0, free - self.reserve), share)

    def block(self, seconds: float) -> None:
        """The partner said 429: nobody calls it again for ``seconds``."""
        if self._ledger is None or seconds <= 0:
            return
        self._ledger.block_weight(self.name, self.clock() + seconds)
        log.warning("rate_limited", budget=self.name, hold_seconds=round(seconds, 1))
