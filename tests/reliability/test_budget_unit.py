"""In-process checks of the pieces the scenarios rely on: the shared weight budget (worker/ratelimit.py)
and the subject-filtered crash points (worker/failpoints.py). Fast; the scenarios prove them end to end."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest

from worker import failpoints
from worker.ledger import open_ledger
from worker.partners.base import Fate, PartnerError
from worker.ratelimit import WINDOW_MARGIN_SECONDS, BudgetSettings, WeightBudget

pytestmark = pytest.mark.reliability


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def budget(tmp_path: Path) -> tuple[WeightBudget, Clock]:
    ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.migrate()
    clock = Clock()
    settings = BudgetSettings(
        weight_budget=1000, weight_window=10, weight_headroom=0.1, weight_max_wait=0, weight_create_reserve=0
    )
    return WeightBudget(ledger, settings, "0trace", clock=clock, sleep=clock.sleep), clock


def test_no_window_ever_holds_more_than_the_budget(budget: tuple[WeightBudget, Clock]) -> None:
    limiter, clock = budget
    rng = random.Random(7)
    charged: list[tuple[float, int]] = []
    for _ in range(3000):
        weight = rng.choice((1, 1, 1, 50))
        if limiter.take(weight) == 0:
            charged.append((clock.now, weight))
        clock.now += rng.random() * 0.05
    window = 10 + WINDOW_MARGIN_SECONDS
    worst = max(sum(w for t, w in charged if start <= t < start + window) for start, _ in charged)
    assert worst <= 900  # 1000 minus 10% headroom
    assert sum(w for _, w in charged) > 2 * 900  # and it did keep granting as the window slid


def test_the_wait_is_until_the_oldest_second_of_charges_leaves_the_window(
    budget: tuple[WeightBudget, Clock],
) -> None:
    limiter, clock = budget
    start = clock.now
    for tenth in range(18):
        clock.now = start + tenth / 10
        assert limiter.take(50) == 0
    clock.now = start + 1.8
    wait = limiter.take(50)
    # The first second's charges (the latest at 0.9 s) leave together, when the window has passed 0.9 s.
    assert wait == pytest.approx(10 + WINDOW_MARGIN_SECONDS + 0.9 - 1.8, abs=1e-3)
    clock.now += wait
    assert limiter.take(50) == 0


def test_a_429_blocks_everyone_and_deferral_is_not_sent(budget: tuple[WeightBudget, Clock]) -> None:
    limiter, clock = budget

    def rate_limited() -> None:
        raise PartnerError(
            Fate.REFUSED, "5", "RATE_LIMIT", True, retry_after=4.0, http_status=429, rate_limited=True
        )

    with pytest.raises(PartnerError):
        limiter.call(1, rate_limited)
    assert limiter.take(1) == pytest.approx(4.0)
    with pytest.raises(PartnerError) as raised:
        limiter.call(1, lambda: None)
    assert raised.value.fate is Fate.NOT_SENT and raised.value.retryable
    assert raised.value.retry_after == pytest.approx(4.0)
    clock.now += 4.0
    assert limiter.call(1, lambda: "sent") == "sent"


def test_concurrent_takers_share_one_budget(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    open_ledger(url).migrate()
    settings = BudgetSettings(
        weight_budget=500, weight_window=60, weight_headroom=0.0, weight_max_wait=0, weight_create_reserve=0
    )
    granted: list[int] = []

    def replica() -> None:
        limiter = WeightBudget(open_ledger(url), settings, "0trace")
        for _ in range(40):
            if limiter.take(10) == 0:
                granted.append(10)

    threads = [threading.Thread(target=replica) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(granted) == 500


def test_disabled_budget_touches_nothing() -> None:
    limiter = WeightBudget(None, BudgetSettings(weight_budget=0), "0trace")
    assert not limiter.enabled
    assert limiter.call(50, lambda: 1) == 1


def test_failpoint_subjects_and_names() -> None:
    rules = failpoints._parse("after_intent=0.5,on_message@poison=1")
    assert rules["after_intent"] == failpoints.Rule(0.5, None)
    assert rules["on_message"] == failpoints.Rule(1.0, "poison")
    with pytest.raises(ValueError, match="unknown failpoint"):
        failpoints._parse("nowhere=1")
    with pytest.raises(ValueError, match="needs the text"):
        failpoints._parse("on_message@=1")


def test_a_sleeping_failpoint_pauses_instead_of_killing(monkeypatch: pytest.MonkeyPatch) -> None:
    rules = failpoints._parse("after_partner=sleep:0.2,after_commit@early=sleep:1")
    assert rules["after_partner"] == failpoints.Rule(0.0, None, 0.2)
    assert rules["after_commit"] == failpoints.Rule(0.0, "early", 1.0)
    monkeypatch.setattr(failpoints, "_ACTIVE", rules)
    started = time.monotonic()
    failpoints.hit("after_partner")  # still alive afterwards: it slept
    assert time.monotonic() - started >= 0.2
    started = time.monotonic()
    failpoints.hit("after_commit", "another-command")  # not its subject: no pause
    assert time.monotonic() - started < 0.5
