"""The 0trace weight budget, shared by every replica through the ledger.

0trace limits each partner account to a weight budget over a sliding window (spec: 2,500 units per 60 s;
create costs 50, a read 1) and answers 429 beyond it. The budget belongs to the account, not to a process,
so a limiter in worker memory would let N replicas spend N budgets. This one keeps the account's recent
charges in the ledger (``rate_charges``) and serialises takers on one row (``rate_budgets``, a row lock on
PostgreSQL, the write lock on SQLite): a call is sent only once its weight fits in what the window has
left, measured exactly as the partner does (a sliding log, not a token bucket, so the whole budget is
usable without ever exceeding it).

Margins, because the partner counts arrivals on its clock and we count departures on ours: a share of the
budget is left unused (``ZEROTRACE_WEIGHT_HEADROOM``, default 10%, also room for other clients of the
account), and charges are remembered one second longer than the window. A 429 that still happens (another
client, a smaller budget than configured) is honoured by everyone: its ``Retry-After`` blocks the budget
for all replicas until then.

Settings (environment, prefix ``ORDER_WORKER_ZEROTRACE_``): ``WEIGHT_BUDGET`` (default 2500; 0 disables
the limiter, e.g. against a sandbox whose budget was raised for a benchmark), ``WEIGHT_WINDOW`` (60 s),
``WEIGHT_HEADROOM`` (0.1), ``WEIGHT_MAX_WAIT`` (5 s a call may wait in its thread before it is deferred).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from typing import TypeVar

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.ledger.base import Ledger
from worker.partners.base import Fate, PartnerError

log = logging.getLogger(__name__)

T = TypeVar("T")
WINDOW_MARGIN_SECONDS = 1.0
RATE_LIMIT_CODE = "5"
"""0trace's RATE_LIMIT code, as the client reports it (``PartnerError.code``)."""


class BudgetSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ORDER_WORKER_ZEROTRACE_", extra="ignore", frozen=True)

    weight_budget: int = Field(2500, ge=0, description="0trace weight per window for the account (0: off).")
    weight_window: float = Field(60.0, gt=0, description="The partner's sliding window, seconds.")
    weight_headroom: float = Field(0.1, ge=0, lt=1, description="Share of the budget never used.")
    weight_max_wait: float = Field(5.0, ge=0, description="Seconds a call waits for budget before deferral.")


class WeightBudget:
    """``call(weight, fn)``: run ``fn`` once ``weight`` fits in the shared budget, else raise a NOT_SENT,
    retryable :class:`PartnerError` whose ``retry_after`` says when it will fit."""

    def __init__(
        self,
        ledger: Ledger | None,
        settings: BudgetSettings,
        name: str = "0trace",
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        from worker.ledger.sql import SqlLedger

        self.name = name
        self.clock = clock
        self.sleep = sleep
        self.window = settings.weight_window + WINDOW_MARGIN_SECONDS
        self.limit = math.floor(settings.weight_budget * (1.0 - settings.weight_headroom))
        self.max_wait = settings.weight_max_wait
        self._db = ledger.database if isinstance(ledger, SqlLedger) and self.limit > 0 else None
        if self._db is not None:
            lock_row = self._db.dialect.lock_row
            self._select = f"SELECT blocked_until FROM rate_budgets WHERE name = ?{lock_row}"

    @property
    def enabled(self) -> bool:
        return self._db is not None

    def call(self, weight: int, fn: Callable[[], T]) -> T:
        if self._db is None:
            return fn()
        self.acquire(weight)
        try:
            return fn()
        except PartnerError as error:
            if error.code == RATE_LIMIT_CODE:
                self.block(error.retry_after if error.retry_after is not None else 1.0)
            raise

    def acquire(self, weight: int) -> None:
        deadline = time.monotonic() + self.max_wait
        while True:
            wait = self.take(weight)
            if wait <= 0:
                return
            if time.monotonic() + wait > deadline:
                raise PartnerError(
                    fate=Fate.NOT_SENT,
                    code="local_rate_limit",
                    reason=f"the shared 0trace weight budget is in use; next slot in {wait:.1f}s",
                    retryable=True,
                    retry_after=wait,
                )
            self.sleep(wait + random.random() * 0.05)

    def take(self, weight: int) -> float:
        """Charge ``weight`` now and return 0, or charge nothing and return the seconds until it fits."""
        assert self._db is not None
        now = self.clock()
        with self._db.write(durable=False) as session:
            row = session.one(self._select, (self.name,))
            if row is None:
                session.run(
                    "INSERT INTO rate_budgets (name, blocked_until) VALUES (?, 0) ON CONFLICT DO NOTHING",
                    (self.name,),
                )
                row = session.one(self._select, (self.name,))
                assert row is not None
            blocked_until = float(row[0])
            if blocked_until > now:
                return blocked_until - now
            session.run("DELETE FROM rate_charges WHERE name = ? AND at <= ?", (self.name, now - self.window))
            charges = session.rows(
                "SELECT at, weight FROM rate_charges WHERE name = ? ORDER BY at", (self.name,)
            )
            used = sum(int(w) for _, w in charges)
            if used + weight <= self.limit:
                session.run(
                    "INSERT INTO rate_charges (name, at, weight) VALUES (?, ?, ?)", (self.name, now, weight)
                )
                return 0.0
        if weight > self.limit:
            return self.window
        need, freed = used + weight - self.limit, 0
        for at, charged in charges:
            freed += int(charged)
            if freed >= need:
                return max(0.01, float(at) + self.window - now)
        return self.window  # pragma: no cover - unreachable: the charges sum to ``used``

    def block(self, seconds: float) -> None:
        """The partner said 429: nobody calls it again for ``seconds``."""
        if self._db is None or seconds <= 0:
            return
        until = self.clock() + seconds
        with self._db.write(durable=False) as session:
            session.run(
                "INSERT INTO rate_budgets (name, blocked_until) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (self.name, until),
            )
            session.run(
                "UPDATE rate_budgets SET blocked_until = ? WHERE name = ? AND blocked_until < ?",
                (until, self.name, until),
            )
        log.warning("0trace answered 429; every replica holds its calls for %.1fs", seconds)


def zerotrace_budget(ledger: Ledger) -> WeightBudget:
    """The budget for this process's ledger, from ``ORDER_WORKER_ZEROTRACE_WEIGHT_*`` (off for in-memory
    ledgers and when the budget is 0)."""
    return WeightBudget(ledger, BudgetSettings())
