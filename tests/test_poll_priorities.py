"""Where the partner's budget goes: creates before reads, polls paced to the budget with near-deadline
orders first and the least recently polled next, and the poll cadence near a deadline. Real SQLite ledger,
a clock the tests move; the benchmark (``bench.priorities``) measures the same against the sandbox."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.ledger.helpers import T0, command, observed, ref
from tests.test_metrics import sample
from tests.test_pipeline_decisions import Clock, ScriptedPartner, pipeline
from worker.ledger import open_ledger
from worker.ledger.base import Ledger
from worker.messages import Source
from worker.partners.base import PartnerOrder
from worker.ratelimit import BudgetSettings, Priority, WeightBudget
from worker.scheduler import PollPace, Scheduler
from worker.settings import Settings
from worker.status import Status

# 100 weight per 10 s window (11 s with the margin), no headroom; reads always leave creates 20.
SETTINGS = BudgetSettings(
    weight_budget=100, weight_window=10, weight_headroom=0.0, weight_max_wait=0, weight_create_reserve=0.2
)


@pytest.fixture
def sqlite(tmp_path: Path) -> Any:
    ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.migrate()
    yield ledger
    ledger.close()


def budget_at(ledger: Ledger, clock: list[float]) -> WeightBudget:
    return WeightBudget(ledger, SETTINGS, "0trace", clock=lambda: clock[0])


def test_reads_leave_the_create_reserve_free(sqlite: Ledger) -> None:
    clock = [T0]
    budget = budget_at(sqlite, clock)
    assert budget.standing().room(Priority.READ) == 80 and budget.standing().room(Priority.FIRST) == 100
    for _ in range(80):
        assert budget.take(1, Priority.READ) == 0
    assert budget.take(1, Priority.READ) > 0  # reads stop at their ceiling...
    assert budget.standing().room(Priority.READ) == 0 and budget.standing().room(Priority.FIRST) == 20
    assert budget.take(20, Priority.FIRST) == 0  # ...so a create finds its reserve however reads press
    assert budget.take(1, Priority.FIRST) > 0  # and nobody exceeds the budget
    clock[0] += budget.window + 0.01  # the window empties
    assert budget.standing().room(Priority.READ) == 80


def test_the_read_share_leaves_the_reserve_and_a_windows_worth_of_creates(sqlite: Ledger) -> None:
    clock = [T0]
    budget = budget_at(sqlite, clock)
    assert budget.standing().read_share == 80  # no creates lately: all but the reserve
    budget.acquire(10, priority=Priority.FIRST)
    # The window is young: 10 of creates in its first quarter (2.75 s counted at least) are 40 a window.
    assert budget.standing().read_share == 40
    clock[0] += 5.5  # half a window in: 20 a window
    assert budget.standing().read_share == 60
    budget.acquire(1, priority=Priority.READ)
    clock[0] += 5.0  # nearly a whole window counted: creates at this pace need about the 10 they spent
    assert budget.standing().read_share == 69  # 100 - 20 - 10 * 11 / 10.5
    assert budget.standing().room(Priority.READ) == 100 - 20 - 11
    clock[0] = T0 + budget.window + 0.01  # the creates' charge left the window
    assert budget.standing().read_share == 80


def test_a_429_leaves_no_room_to_hand_out(sqlite: Ledger) -> None:
    clock = [T0]
    budget = budget_at(sqlite, clock)
    budget.block(5.0)
    assert budget.standing().room(Priority.READ) == 0 and budget.standing().room(Priority.FIRST) == 0
    clock[0] += 5.01
    assert budget.standing().room(Priority.READ) == 80


def test_a_deferred_read_is_counted_by_priority(sqlite: Ledger) -> None:
    budget = budget_at(sqlite, [T0])
    budget.acquire(80, priority=Priority.READ)
    before = sample("order_worker_budget_deferred_total", budget="0trace", priority="read") or 0.0
    with pytest.raises(Exception, match="weight budget is in use"):
        budget.acquire(1, priority=Priority.READ)
    assert sample("order_worker_budget_deferred_total", budget="0trace", priority="read") == before + 1
    budget.acquire(20, priority=Priority.FIRST)  # the create's reserve was still there


def test_pace_hands_out_what_the_budget_has_room_for_and_no_faster_than_its_rate(sqlite: Ledger) -> None:
    clock = [T0]
    pace = PollPace(budget_at(sqlite, clock), weight=2)
    assert pace.per_second_now() == pytest.approx(80 / (10 + 1) / 2)  # the window has a 1 s margin
    assert pace.allowance(1.0) == 4  # rate-bound: 3.6 polls a second, rounded up
    assert pace.allowance(100.0) == 40  # room-bound: 80 weight / 2
    pace.budget.acquire(75, priority=Priority.READ)
    assert pace.allowance(100.0) == 2  # 80 - 75 = 5 weight of room left for reads: two polls
    pace.budget.acquire(5, priority=Priority.READ)
    assert pace.allowance(100.0) == 0
    clock[0] += pace.budget.window + 0.01
    pace.budget.acquire(10, priority=Priority.FIRST)  # creates at a pace of 40 a window (it is young)
    assert pace.per_second_now() == pytest.approx(40 / 11 / 2)
    assert pace.allowance(1.0) == 2 and pace.allowance(100.0) == 35  # rate-bound, then room-bound


def _open_order(ledger: Ledger, cid: str, due: float, deadline: float | None = None) -> None:
    ledger.claim(command(cid), ref(cid), T0)
    ledger.begin_attempt(cid, T0, 60)
    answer = observed(Status.AWAITING_DEPOSIT, order_id=f"po-{cid}", updated_at=T0, deadline=deadline)
    ledger.record_created(cid, answer, b"sealed", "k1", False, due, T0)


def test_the_scheduler_paces_polls_near_deadline_first_and_never_paces_creates(sqlite: Ledger) -> None:
    clock = [T0 + 100]
    budget = budget_at(sqlite, clock)
    for i in range(30):  # due long ago, oldest first by index
        _open_order(sqlite, f"cmd-poll-{i:04}", due=T0 + i)
    _open_order(sqlite, "cmd-deadline", due=T0 + 50, deadline=T0 + 250)  # due last, deadline near
    _open_order(sqlite, "cmd-far-away", due=T0 + 0.5, deadline=T0 + 5000)  # deadline far: an ordinary poll
    for i in range(3):  # creates to re-drive: never wait for the pace
        sqlite.claim(command(f"cmd-create-{i:02}"), ref(f"cmd-create-{i:02}"), T0)
    sent: list[tuple[str, dict[str, Any]]] = []

    def dispatch(commands: Any) -> list[bool]:
        sent.extend(commands)
        return [True] * len(commands)

    pace = PollPace(budget, weight=1)  # 80 / 11 s: 7.3 polls a second
    scheduler = Scheduler(Settings(), sqlite, dispatch, clock=lambda: clock[0], paces={"0trace": pace})
    assert scheduler.pass_once() == 3 + 8  # the first pass counts one scheduler interval (1 s)
    creates = [kwargs["command_id"] for actor, kwargs in sent if actor == "create_order"]
    polls = [kwargs["command_id"] for actor, kwargs in sent if actor == "poll_order"]
    assert sorted(creates) == [f"cmd-create-{i:02}" for i in range(3)]
    assert polls == [
        "cmd-deadline",
        "cmd-poll-0000",
        "cmd-far-away",
        *[f"cmd-poll-{i:04}" for i in range(1, 6)],
    ]

    sent.clear()
    for _ in polls:  # the polls ran: their weight is in the budget
        budget.take(1)
    clock[0] += 2.0
    scheduler.pass_once()
    polls = [kwargs["command_id"] for _, kwargs in sent]
    assert polls == [f"cmd-poll-{i:04}" for i in range(6, 21)]  # 2 s at 7.3/s: 15, oldest due next


def test_staleness_and_cycle_gauges(sqlite: Ledger) -> None:
    clock = [T0 + 1000]
    pace = PollPace(budget_at(sqlite, clock), weight=1)
    for i in range(8):
        _open_order(sqlite, f"cmd-poll-{i:04}", due=T0 + 900 + i)  # the oldest is 100 s late
    scheduler = Scheduler(
        Settings(), sqlite, lambda c: [True] * len(c), clock=lambda: clock[0], paces={"0trace": pace}
    )
    scheduler.sample_gauges()
    cadence = Settings().tracking.poll_awaiting_deposit
    assert sample("order_worker_poll_staleness_seconds", provider="0trace") == pytest.approx(100 + cadence)
    assert sample("order_worker_poll_cycle_seconds", provider="0trace") == pytest.approx(
        8 / pace.per_second_now()
    )
    assert sample("order_worker_poll_staleness_seconds", provider="itrx") == 0  # nothing due
    assert sample("order_worker_poll_cycle_seconds", provider="itrx") == 0  # not paced


def test_orders_near_their_deadline_are_polled_more_often_unless_pushes_arrive(sqlite: Ledger) -> None:
    clock = Clock()
    flow = pipeline(
        sqlite,
        ScriptedPartner([]),
        clock,
        poll_awaiting_deposit=45.0,
        deadline_horizon_seconds=300.0,
        deadline_poll_interval=20.0,
        poll_safety_interval=300.0,
    )
    _open_order(sqlite, "cmd-00000001", due=clock.now)

    def observe(deadline: float, push: bool = False) -> float:
        record = sqlite.get("cmd-00000001")
        assert record is not None
        sighting = PartnerOrder("po-1", "NEW", Status.AWAITING_DEPOSIT, {}, clock.now, deadline=deadline)
        flow.observe(record, sighting, Source.WEBHOOK if push else Source.POLL, push=push)
        after = sqlite.get("cmd-00000001")
        assert after is not None and after.next_action_at is not None and after.deadline_at == deadline
        return after.next_action_at - clock.now

    assert observe(clock.now + 1800) == 45.0  # far from the deadline: the status's cadence
    assert observe(clock.now + 299) == 20.0  # within the horizon
    assert observe(clock.now - 5) == 20.0  # past it, until the partner says the order expired
    assert observe(clock.now + 100, push=True) == 300.0  # pushes tell us anyway
