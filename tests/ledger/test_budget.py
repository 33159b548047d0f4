"""The shared weight budget of the Ledger contract (take_weight, budget_use, block_weight) on both
backends, and the policy's (worker/ratelimit.py) use of it."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest

from tests.ledger.helpers import T0
from worker.ledger import open_ledger
from worker.ledger import sql as sql_module
from worker.ledger.base import BudgetUse, Ledger
from worker.ledger.migrations import MIGRATIONS
from worker.ledger.sql import SqlLedger
from worker.ratelimit import BudgetSettings, Priority, WeightBudget

WINDOW = 10.0
LIMIT = 100


def take(ledger: Ledger, weight: int, now: float, name: str = "acct") -> float:
    return ledger.take_weight(name, weight, now, WINDOW, LIMIT)


def test_a_take_fits_until_the_window_is_spent(ledger: Ledger) -> None:
    assert ledger.shares_budget
    assert take(ledger, 50, T0) == 0
    assert take(ledger, 49, T0 + 1) == 0
    assert take(ledger, 1, T0 + 2) == 0  # exactly the limit
    # Full: the oldest charge (50 at T0) frees enough once it leaves the window at T0 + WINDOW.
    assert take(ledger, 1, T0 + 3) == pytest.approx(T0 + WINDOW - (T0 + 3))
    assert take(ledger, 50, T0 + 3) == pytest.approx(WINDOW - 3)  # the 50 at T0 frees just enough
    # 51 needs the two oldest charges to leave: the second one (49) leaves at T0 + 1 + WINDOW.
    assert take(ledger, 51, T0 + 3) == pytest.approx(1 + WINDOW - 3)


def test_a_refused_take_charges_nothing(ledger: Ledger) -> None:
    assert take(ledger, 100, T0) == 0
    for second in range(1, 5):
        assert take(ledger, 10, T0 + second) > 0
    assert take(ledger, 100, T0 + WINDOW) == 0  # only the first charge ever counted


def test_charges_leave_the_window_at_exactly_its_length(ledger: Ledger) -> None:
    assert take(ledger, 100, T0) == 0
    assert take(ledger, 1, T0 + WINDOW - 0.5) == pytest.approx(0.5)
    assert take(ledger, 100, T0 + WINDOW) == 0


def test_a_weight_above_the_limit_waits_a_whole_window(ledger: Ledger) -> None:
    assert take(ledger, 1, T0) == 0
    assert take(ledger, LIMIT + 1, T0 + 1) == WINDOW


def test_a_wait_is_never_below_ten_milliseconds(ledger: Ledger) -> None:
    assert take(ledger, 100, T0) == 0
    assert take(ledger, 1, T0 + WINDOW - 0.000_001) == pytest.approx(0.01)


def test_weightless_charges_never_shorten_the_wait(ledger: Ledger) -> None:
    assert take(ledger, 0, T0) == 0
    assert take(ledger, 60, T0 + 1) == 0
    assert take(ledger, 0, T0 + 2) == 0
    assert take(ledger, 40, T0 + 3) == 0
    assert take(ledger, 30, T0 + 4) == pytest.approx(1 + WINDOW - 4)


def test_budgets_are_kept_by_name(ledger: Ledger) -> None:
    assert take(ledger, 100, T0, name="a") == 0
    assert take(ledger, 100, T0, name="b") == 0
    assert take(ledger, 1, T0, name="a") > 0


def test_a_block_holds_every_taker_and_only_ever_grows(ledger: Ledger) -> None:
    ledger.block_weight("acct", T0 + 4)
    assert take(ledger, 1, T0) == pytest.approx(4)
    ledger.block_weight("acct", T0 + 2)  # an earlier end changes nothing
    assert take(ledger, 1, T0 + 1) == pytest.approx(3)
    ledger.block_weight("acct", T0 + 6)
    assert take(ledger, 1, T0 + 1) == pytest.approx(5)
    assert take(ledger, 1, T0 + 6) == 0
    assert take(ledger, 1, T0, name="other") == 0


def test_the_policy_charges_through_the_contract(ledger: Ledger) -> None:
    clock = [T0]
    settings = BudgetSettings(weight_budget=100, weight_window=9, weight_headroom=0.5, weight_max_wait=0)
    budget = WeightBudget(ledger, settings, name="acct", clock=lambda: clock[0])
    assert budget.enabled
    assert budget.take(50, Priority.FIRST) == 0
    assert take(ledger, 51, T0) == pytest.approx(WINDOW)  # what the policy charged is in the ledger
    budget.block(3.0)
    assert take(ledger, 1, T0) == pytest.approx(3.0)


def test_a_second_counts_until_the_window_has_passed_its_latest_charge(ledger: Ledger) -> None:
    assert take(ledger, 50, T0 + 0.1) == 0
    assert take(ledger, 50, T0 + 0.9) == 0
    # The partner no longer counts the charge at T0 + 0.1; its second does, until T0 + 0.9 has left too.
    assert ledger.budget_use("acct", T0 + WINDOW + 0.5, WINDOW).used == 100
    assert take(ledger, 1, T0 + WINDOW + 0.5) == pytest.approx(0.4)
    assert ledger.budget_use("acct", T0 + WINDOW + 0.9, WINDOW).used == 0
    assert take(ledger, 100, T0 + WINDOW + 0.9) == 0


def test_reads_leave_the_reserve_to_first_takes(ledger: Ledger) -> None:
    limit = 100
    assert ledger.take_weight("acct", 30, T0, WINDOW, limit) == 0  # a first take
    assert ledger.budget_use("acct", T0, WINDOW) == BudgetUse(30, 30, blocked_until=0.0, oldest_at=T0)
    # Reads leave 10 free: 60 fit beside the 30 charged, the 61st does not...
    assert ledger.take_weight("acct", 60, T0 + 1, WINDOW, limit, reserve=10) == 0
    wait = ledger.take_weight("acct", 1, T0 + 1, WINDOW, limit, reserve=10)
    assert wait == pytest.approx(WINDOW - 1)  # ...until the first take's 30 leave the window
    assert ledger.take_weight("acct", 10, T0 + 1, WINDOW, limit) == 0  # the reserve is the first takes'
    assert ledger.take_weight("acct", 1, T0 + 1, WINDOW, limit) > 0  # and then the budget is full
    assert ledger.budget_use("acct", T0 + 1, WINDOW) == BudgetUse(100, 40, blocked_until=0.0, oldest_at=T0)
    assert ledger.budget_use("acct", T0 + 2 + WINDOW, WINDOW) == BudgetUse(0, 0, 0.0, oldest_at=None)
    assert ledger.take_weight("acct", 91, T0, WINDOW, limit, reserve=10) == pytest.approx(WINDOW)  # never


def test_the_used_weight_is_what_takes_count(ledger: Ledger) -> None:
    assert ledger.budget_use("acct", T0, WINDOW).used == 0
    assert take(ledger, 30, T0) == 0
    assert take(ledger, 20, T0 + 3.5) == 0
    assert take(ledger, 80, T0 + 4) > 0  # refused: not counted
    assert ledger.budget_use("acct", T0 + 4, WINDOW).used == 50
    assert ledger.budget_use("other", T0 + 4, WINDOW).used == 0
    assert ledger.budget_use("acct", T0 + WINDOW, WINDOW).used == 20
    assert ledger.budget_use("acct", T0 + 3.5 + WINDOW, WINDOW).used == 0


class _Reference:
    """What the partner counts (every charge on its own, in the sliding window) and what a per-second
    count must answer, from the charges admitted so far."""

    def __init__(self, window: float, limit: int) -> None:
        self.window = window
        self.limit = limit
        self.charges: list[tuple[float, int]] = []

    def exact(self, now: float) -> int:
        return sum(w for t, w in self.charges if now - self.window < t <= now)

    def buckets(self, now: float) -> list[tuple[float, int]]:
        """(latest charge, weight) of each second still counted, oldest latest charge first."""
        seconds: dict[int, tuple[float, int]] = {}
        for t, w in self.charges:
            last, weight = seconds.get(math.floor(t), (t, 0))
            seconds[math.floor(t)] = (max(last, t), weight + w)
        return sorted((last, w) for last, w in seconds.values() if last > now - self.window)

    def counted(self, now: float) -> int:
        return sum(w for _, w in self.buckets(now))

    def wait(self, now: float, weight: int) -> float:
        need, freed = self.counted(now) + weight - self.limit, 0
        for last, w in self.buckets(now):
            freed += w
            if freed >= need:
                return max(0.01, last + self.window - now)
        raise AssertionError("a refused take's weight is within the limit")


def _bucket_rows(ledger: Ledger, name: str) -> int:
    assert isinstance(ledger, SqlLedger)
    with ledger.database.read() as s:
        row = s.one("SELECT COUNT(*) FROM rate_buckets WHERE name = ?", (name,))
    return int(row[0]) if row else 0


@pytest.mark.parametrize("seed", [7, 2026])
def test_random_charges_never_overspend_the_partners_window(ledger: Ledger, seed: int) -> None:
    rng = random.Random(seed)
    window, limit = 10.0, 100
    reference = _Reference(window, limit)
    now = T0 + rng.random()
    retry: int | None = None
    refused = retried = 0
    for period in range(24):  # light, busy and saturated stretches of about a window each
        gap = (1.0, 0.2, 0.05)[period % 3]
        end = now + window
        while now < end:
            weight = retry if retry is not None else rng.choice((0, 1, 1, 1, 2, 5, 10, 25, 50, 101))
            used = ledger.budget_use("acct", now, window).used
            assert used == reference.counted(now)
            overcount = sum(w for t, w in reference.charges if now - window - 1 < t <= now - window)
            assert reference.exact(now) <= used <= reference.exact(now) + overcount
            wait = ledger.take_weight("acct", weight, now, window, limit)
            assert (wait == 0) == (used + weight <= limit)
            if retry is not None:
                assert wait == 0, "retried at now + wait with nothing charged meanwhile, it must fit"
                retried += 1
            retry = None
            if wait == 0:
                if weight:
                    reference.charges.append((now, weight))
            elif weight > limit:
                assert wait == window
            else:
                refused += 1
                assert wait == pytest.approx(reference.wait(now, weight), abs=1e-6)
                if rng.random() < 0.5:
                    now += wait
                    retry = weight
                    continue
            assert _bucket_rows(ledger, "acct") <= window + 2
            now += rng.expovariate(1 / gap)
    assert refused > 30 and retried > 15 and len(reference.charges) > 150  # every path was taken
    for t, _ in reference.charges:
        assert reference.exact(t) <= limit, f"the partner would count {reference.exact(t)} at {t}"


def test_charges_in_the_window_survive_the_upgrade_to_buckets(
    backend: str, fresh_url: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = open_ledger(fresh_url(backend))
    assert isinstance(ledger, SqlLedger)
    try:
        monkeypatch.setattr(sql_module, "MIGRATIONS", tuple(m for m in MIGRATIONS if m.version < 7))
        ledger.migrate()
        monkeypatch.setattr(sql_module, "MIGRATIONS", MIGRATIONS)
        with ledger.database.write() as tx:
            for at, weight in ((T0 - 20, 90), (T0 + 1.1, 40), (T0 + 1.4, 10), (T0 + 4.5, 30)):
                tx.run("INSERT INTO rate_charges (name, at, weight) VALUES (?, ?, ?)", ("acct", at, weight))
        ledger.migrate()
        assert ledger.budget_use("acct", T0 + 5, WINDOW).used == 80
        assert take(ledger, 21, T0 + 5) == pytest.approx(1.4 + WINDOW - 5)  # one second, one bucket
        assert take(ledger, 20, T0 + 5) == 0
        with ledger.database.read() as s, pytest.raises(Exception, match="rate_charges"):
            s.one("SELECT COUNT(*) FROM rate_charges")
    finally:
        ledger.close()


class _PrivateBudget(SqlLedger):
    """A ledger that says it cannot share a budget (as an in-memory double would)."""

    @property
    def shares_budget(self) -> bool:
        return False

    def take_weight(self, name: str, weight: int, now: float, window: float, limit: int) -> float:
        raise AssertionError("a budget that is not shared must not be used")


def test_the_policy_is_off_for_a_ledger_that_keeps_no_shared_budget(ledger: Ledger) -> None:
    assert isinstance(ledger, SqlLedger)
    private = _PrivateBudget(ledger.database)
    budget = WeightBudget(private, BudgetSettings(weight_budget=100), "acct")
    assert not budget.enabled
    assert budget.call(50, lambda: "sent") == "sent"
