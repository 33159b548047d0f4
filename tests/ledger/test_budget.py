"""The shared weight budget of the Ledger contract (take_weight, block_weight) on both backends, and the
policy's (worker/ratelimit.py) use of it."""

from __future__ import annotations

import pytest

from tests.ledger.helpers import T0
from worker.ledger.base import Ledger
from worker.ledger.sql import SqlLedger
from worker.ratelimit import BudgetSettings, WeightBudget, Priority

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
