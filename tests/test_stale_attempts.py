"""A worker paused past its lease comes back after another worker took its order over: whatever its
partner call answered, it closes nothing, says so (log line, metric) and calls the partner no more.

The takeover happens inside the paused worker's partner call: the scripted partner runs it before it
answers, exactly as a second worker would while the first one is stopped."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from structlog.testing import capture_logs

from tests.test_pipeline_decisions import (
    Clock,
    ScriptedPartner,
    created_result,
    error,
    kwargs,
    pipeline,
)
from worker import metrics
from worker.ledger.base import Ledger
from worker.partners.base import CreateResult, Fate
from worker.pipeline import OrderPipeline
from worker.status import Status

CID = "cmd-00000001"
LEASE = 90.0


class PausedPartner(ScriptedPartner):
    """The first create call runs ``takeover`` (the other worker's turn) before it answers."""

    def __init__(self, answers: list[Any], takeover: Callable[[], None]) -> None:
        super().__init__(answers)
        self.takeover: Callable[[], None] | None = takeover

    def create(self, *args: Any) -> CreateResult:
        takeover, self.takeover = self.takeover, None
        if takeover is not None:
            takeover()
        return super().create(*args)


def stale_count(provider: str) -> float:
    return metrics.STALE_ATTEMPTS.labels(provider)._value.get()


def two_workers(ledger: Ledger, answers: list[Any], then: Callable[[OrderPipeline, Clock], None]) -> tuple:
    """The paused worker's pipeline and partner; ``then`` is what the other worker does after the lease."""
    clock = Clock()
    holder: dict[str, OrderPipeline] = {}

    def takeover() -> None:
        clock.now += LEASE + 1  # the paused worker's lease ends; the scheduler re-drives the order
        then(holder["other"], clock)

    partner = PausedPartner(answers, takeover)
    paused = pipeline(ledger, partner, clock, create_lease_seconds=LEASE)
    holder["other"] = pipeline(ledger, partner, clock, create_lease_seconds=LEASE)
    return paused, partner, clock


def test_a_late_result_does_not_replace_the_result_of_the_newer_attempt(ledger: Ledger) -> None:
    def other_worker_completes(other: OrderPipeline, clock: Clock) -> None:
        assert other.handle_create(kwargs(), "redriven").name == "created"

    paused, partner, _ = two_workers(
        ledger, [created_result("po-newer"), created_result("po-late")], other_worker_completes
    )
    before = stale_count("0trace")
    with capture_logs() as logs:
        outcome = paused.handle_create(kwargs(), "first")
    kept = ledger.get(CID)
    assert outcome.name == "stale" and outcome.events == []
    assert kept is not None and kept.order_id == "po-newer" and kept.status == Status.AWAITING_DEPOSIT
    assert partner.calls == 2  # the paused worker's call and the takeover's, nothing after
    assert stale_count("0trace") == before + 1
    [line] = [entry for entry in logs if entry["event"] == "attempt_stale"]
    assert (line["command_id"], line["attempt"], line["current_attempt"]) == (CID, 1, 2)
    assert all("t" * 43 not in str(entry) for entry in logs)  # the late answer's token is never logged


@pytest.mark.parametrize(
    "failure",
    [
        error(Fate.UNKNOWN, "timeout", True),  # schedule_retry
        error(Fate.NOT_SENT, "connection_refused", True),  # end_attempt_unsent
        error(Fate.REFUSED, "1", False),  # record_failed
    ],
    ids=["retry", "unsent", "failed"],
)
def test_a_late_failure_leaves_the_newer_attempt_in_flight(ledger: Ledger, failure: Exception) -> None:
    """The newer attempt is still out (its intent committed, its call not answered yet): the late
    failure must not clear its lease, count it back, or end the order."""
    in_flight: dict[str, Any] = {}

    def other_worker_begins(other: OrderPipeline, clock: Clock) -> None:
        in_flight["attempt"] = other.ledger.begin_attempt(CID, clock.now, LEASE)

    paused, partner, _ = two_workers(ledger, [failure], other_worker_begins)
    outcome = paused.handle_create(kwargs(), "first")
    assert outcome.name == "stale" and partner.calls == 1
    assert in_flight["attempt"] is not None
    assert ledger.get(CID) == in_flight["attempt"].record  # lease, count and open flag untouched
    record = ledger.get(CID)
    assert record is not None and record.attempt_open and record.status == "submitting"


def test_itrx_late_answer_leaves_the_order_parked_by_the_takeover(ledger: Ledger) -> None:
    """itrx: the takeover finds the paused attempt unresolved and parks the order in_doubt without a
    call. The paused worker's late answer neither rewrites that nor calls again; the partner's callback
    (naming our out_trade_no) is what settles the order."""

    def other_worker_parks(other: OrderPipeline, clock: Clock) -> None:
        assert other.handle_create(kwargs("itrx"), "redriven").name == "in_doubt"

    paused, partner, _ = two_workers(ledger, [created_result("serial-1", token=None)], other_worker_parks)
    outcome = paused.handle_create(kwargs("itrx"), "first")
    assert outcome.name == "stale" and partner.calls == 1
    record = ledger.get(CID)
    assert record is not None and record.status == Status.IN_DOUBT and record.order_id is None


def test_a_precheck_answer_after_a_takeover_is_stale(ledger: Ledger) -> None:
    """itrx checks the balance before its first attempt; a worker paused there comes back to an order
    another worker already began an attempt on."""
    clock = Clock()

    class SlowBalance(ScriptedPartner):
        def balance(self) -> int:
            ledger.begin_attempt(CID, clock.now, LEASE)  # the other worker's attempt 1 begins meanwhile
            return 0  # far too little: the precheck refuses the order

    partner = SlowBalance([])
    flow = pipeline(ledger, partner, clock, create_lease_seconds=LEASE)
    outcome = flow.handle_create(kwargs("itrx"), "first")
    record = ledger.get(CID)
    assert outcome.name == "stale" and partner.calls == 0
    assert record is not None and record.status == "submitting" and record.attempt_open
