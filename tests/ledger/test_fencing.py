"""Attempts are fenced by number, on both backends: a worker paused past its lease that comes back after
another worker began a newer attempt of the same order closes nothing, and learns that it is stale."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.ledger.helpers import ERR, T0, command, observed, ref
from worker.ledger import rules
from worker.ledger.base import Ledger, OrderRecord
from worker.messages import EventType, Source
from worker.status import Status

CID = "cmd-fence-0001"
LEASE = 30.0


def taken_over(ledger: Ledger) -> tuple[int, OrderRecord]:
    """Attempt 1 begins and is left open (its worker paused); after its lease, attempt 2 begins."""
    ledger.claim(command(CID), ref(CID), T0)
    first = ledger.begin_attempt(CID, T0, LEASE)
    assert first is not None and first.record.attempts == 1
    second = ledger.begin_attempt(CID, T0 + LEASE, LEASE)
    assert second is not None and second.record.attempts == 2 and second.previous_unresolved
    return first.record.attempts, second.record


STALE_CLOSES: dict[str, Callable[[Ledger, int], Any]] = {
    "record_created": lambda ledger, n: ledger.record_created(
        CID,
        observed(Status.AWAITING_DEPOSIT, order_id="stale-order"),
        b"t",
        "k",
        False,
        T0 + 90,
        T0 + 40,
        attempt=n,
    ),
    "record_failed": lambda ledger, n: ledger.record_failed(CID, ERR, Source.CREATE, T0 + 40, attempt=n),
    "mark_in_doubt": lambda ledger, n: ledger.mark_in_doubt(CID, ERR, T0 + 40, attempt=n),
    "schedule_retry": lambda ledger, n: ledger.schedule_retry(CID, T0 + 90, ERR, attempt=n),
    "end_attempt_unsent": lambda ledger, n: ledger.end_attempt_unsent(CID, T0 + 90, ERR, attempt=n),
}
STALE_ANSWER = {
    "record_created": None,
    "record_failed": None,
    "mark_in_doubt": None,
    "schedule_retry": False,
    "end_attempt_unsent": False,
}


def event_ids(ledger: Ledger) -> list[str]:
    rows = ledger.claim_outbox(T0 + 10**6, 10_000, 1)
    ledger.release_outbox([row.event_id for row in rows])
    return [row.event_id for row in rows]


@pytest.mark.parametrize("operation", sorted(STALE_CLOSES))
def test_a_stale_attempt_closes_nothing(ledger: Ledger, operation: str) -> None:
    stale, current = taken_over(ledger)
    assert STALE_CLOSES[operation](ledger, stale) is STALE_ANSWER[operation]
    assert ledger.get(CID) == current  # the newer attempt's lease, count and open flag are untouched
    assert event_ids(ledger) == []


@pytest.mark.parametrize("operation", sorted(STALE_CLOSES))
def test_the_current_attempt_closes_its_order(ledger: Ledger, operation: str) -> None:
    _, current = taken_over(ledger)
    answer = STALE_CLOSES[operation](ledger, current.attempts)
    assert answer is not None and answer is not False
    after = ledger.get(CID)
    assert after is not None and not after.attempt_open and after.lease_until is None
    expected = {"record_created": 1, "record_failed": 1, "mark_in_doubt": 1}.get(operation, 0)
    assert len(event_ids(ledger)) == expected


def test_the_newer_attempts_result_stays_the_recorded_one(ledger: Ledger) -> None:
    stale, current = taken_over(ledger)
    first = observed(Status.AWAITING_DEPOSIT, order_id="order-of-attempt-2")
    events = ledger.record_created(
        CID, first, b"sealed-2", "k", False, T0 + 90, T0 + 35, attempt=current.attempts
    )
    assert events is not None and [event.type for event in events] == [EventType.CREATED]
    kept = ledger.get(CID)
    late = observed(Status.AWAITING_DEPOSIT, order_id="order-of-attempt-1")
    assert ledger.record_created(CID, late, b"sealed-1", "k", False, T0 + 90, T0 + 40, attempt=stale) is None
    assert ledger.get(CID) == kept
    assert kept is not None and kept.order_id == "order-of-attempt-2" and kept.sealed_token == b"sealed-2"


def test_the_precheck_is_attempt_zero(ledger: Ledger) -> None:
    """A create refused or deferred by its precheck closes nothing once another worker began attempt 1."""
    ledger.claim(command(CID), ref(CID), T0)
    begun = ledger.begin_attempt(CID, T0, LEASE)
    assert begun is not None
    assert ledger.schedule_retry(CID, T0 + 5, ERR, attempt=0) is False
    assert ledger.record_failed(CID, ERR, Source.CREATE, T0 + 5, attempt=0) is None
    assert ledger.get(CID) == begun.record
    ledger.claim(command("cmd-fence-0002"), ref("cmd-fence-0002"), T0)
    assert ledger.schedule_retry("cmd-fence-0002", T0 + 5, ERR, attempt=0) is True
    assert ledger.record_failed("cmd-fence-0002", ERR, Source.CREATE, T0 + 6, attempt=0)


def test_an_attempt_settled_by_the_partners_signal_is_not_stale(ledger: Ledger) -> None:
    """An itrx callback can settle the create while its call is still out: the attempt's own answer then
    finds nothing to do ([]), which is not staleness (None)."""
    ledger.claim(command(CID), ref(CID), T0)
    begun = ledger.begin_attempt(CID, T0, LEASE)
    assert begun is not None
    assert ledger.apply_observation(CID, observed(Status.PROCESSING), Source.WEBHOOK, T0 + 1, T0 + 60)
    answer = observed(Status.AWAITING_DEPOSIT)
    assert ledger.record_created(CID, answer, None, None, False, T0 + 60, T0 + 2, attempt=1) == []


def test_the_fence_rule() -> None:
    row = rules.claimed(command(CID), ref(CID), T0)
    begun = rules.begin(row, T0, LEASE)
    assert begun is not None
    assert rules.current(row, 0) and rules.current(row, None)
    assert rules.current(begun, 1) and not rules.current(begun, 0) and not rules.current(begun, 2)
