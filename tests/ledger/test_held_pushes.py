"""Pushes held for orders the ledger does not know yet, on both engines: kept, bounded, expired, and
applied in the transaction that gives the order its partner order id, one event per transition."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from tests.ledger.helpers import ERR, T0, command, observed, ref
from worker.ledger.base import HeldPush, HoldOutcome, Ledger
from worker.messages import EventType, Source
from worker.status import Status

CID = "cmd-held-0001"
TTL = 900.0


def held(
    status: Status, updated_at: float, *, order_id: str = "po-1", signers: tuple[str, ...] = ("default",)
) -> HeldPush:
    observation = observed(status, order_id=order_id, updated_at=updated_at)
    return HeldPush(
        f"order:{order_id}:{observation.provider_status}", "0trace", order_id, signers, observation
    )


def hold(ledger: Ledger, push: HeldPush, now: float = T0, limit: int = 100) -> HoldOutcome:
    outcome, _expired = ledger.hold_push(push, now, limit, now - TTL)
    return outcome


def submitted(ledger: Ledger, command_id: str = CID) -> None:
    ledger.claim(command(command_id), ref(command_id), T0)
    assert ledger.begin_attempt(command_id, T0, 60) is not None


def test_held_pushes_are_applied_when_the_untrackable_create_commits(ledger: Ledger) -> None:
    submitted(ledger)
    # The partner moved the order on three times before its create's answer was recorded; the pushes
    # arrived out of order.
    assert hold(ledger, held(Status.COMPLETED, T0 + 3)) is HoldOutcome.HELD
    assert hold(ledger, held(Status.CONFIRMING, T0 + 1)) is HoldOutcome.HELD
    assert hold(ledger, held(Status.PROCESSING, T0 + 2)) is HoldOutcome.HELD
    assert hold(ledger, held(Status.PROCESSING, T0 + 2)) is HoldOutcome.DUPLICATE
    assert ledger.held_push_count() == 3

    events = ledger.record_created(
        CID, observed(Status.AWAITING_DEPOSIT, updated_at=T0), None, None, True, None, T0 + 5
    )

    assert [(e.type, e.source, e.status) for e in events] == [
        (EventType.UNTRACKABLE, Source.CREATE, Status.AWAITING_DEPOSIT),
        (EventType.STATUS_CHANGED, Source.WEBHOOK, Status.CONFIRMING),
        (EventType.STATUS_CHANGED, Source.WEBHOOK, Status.PROCESSING),
        (EventType.STATUS_CHANGED, Source.WEBHOOK, Status.COMPLETED),
    ]
    assert len({e.event_id for e in events}) == 4
    record = ledger.get(CID)
    assert record is not None and record.status == Status.COMPLETED and record.untrackable
    assert record.next_action_at is None and record.last_push_at == T0 + 5
    assert ledger.held_push_count() == 0
    assert not ledger.record_push("order:po-1:COMPLETED", T0 + 6)  # a redelivery is a duplicate now
    # Nothing is applied twice: the order is findable now, so a late push is not held but found.
    assert hold(ledger, held(Status.COMPLETED, T0 + 3)) is HoldOutcome.FOUND
    assert ledger.record_created(CID, observed(Status.AWAITING_DEPOSIT), None, None, True, None, T0 + 7) == []


def test_a_held_push_older_than_the_create_answer_changes_nothing(ledger: Ledger) -> None:
    submitted(ledger)
    hold(ledger, held(Status.AWAITING_DEPOSIT, T0))
    events = ledger.record_created(
        CID, observed(Status.CONFIRMING, updated_at=T0 + 2), None, None, True, None, T0 + 3
    )
    assert [e.type for e in events] == [EventType.UNTRACKABLE]
    record = ledger.get(CID)
    assert record is not None and record.status == Status.CONFIRMING
    assert ledger.held_push_count() == 0


def test_a_push_signed_by_another_account_is_not_applied(ledger: Ledger) -> None:
    submitted(ledger)
    hold(ledger, held(Status.COMPLETED, T0 + 3, signers=("eu",)))
    events = ledger.record_created(
        CID, observed(Status.AWAITING_DEPOSIT, updated_at=T0), None, None, True, None, T0 + 5
    )
    assert [e.type for e in events] == [EventType.UNTRACKABLE]
    record = ledger.get(CID)
    assert record is not None and record.status == Status.AWAITING_DEPOSIT


def test_pushes_for_other_orders_stay_held(ledger: Ledger) -> None:
    submitted(ledger)
    hold(ledger, held(Status.COMPLETED, T0 + 3, order_id="po-other"))
    ledger.record_created(CID, observed(Status.AWAITING_DEPOSIT, updated_at=T0), None, None, True, None, T0)
    assert ledger.held_push_count() == 1


def test_the_bound_refuses_new_pushes_and_expired_ones_make_room(ledger: Ledger) -> None:
    assert hold(ledger, held(Status.CONFIRMING, T0, order_id="po-a"), limit=2) is HoldOutcome.HELD
    assert hold(ledger, held(Status.CONFIRMING, T0, order_id="po-b"), T0 + 10, limit=2) is HoldOutcome.HELD
    assert hold(ledger, held(Status.CONFIRMING, T0, order_id="po-c"), T0 + 20, limit=2) is HoldOutcome.FULL
    # A redelivery of one held already is answered as held, full or not.
    assert (
        hold(ledger, held(Status.CONFIRMING, T0, order_id="po-a"), T0 + 20, limit=2) is HoldOutcome.DUPLICATE
    )
    # Once po-a's push is past the TTL it is dropped, and its place is free again.
    outcome, expired = ledger.hold_push(held(Status.CONFIRMING, T0, order_id="po-c"), T0 + TTL + 5, 2, T0 + 5)
    assert (outcome, expired) == (HoldOutcome.HELD, 1)
    assert ledger.held_push_count() == 2
    assert ledger.drop_expired_pushes(T0 + TTL + 6) == 2
    assert ledger.held_push_count() == 0


def test_a_held_push_is_applied_when_an_operator_resolves_the_in_doubt_order(ledger: Ledger) -> None:
    submitted(ledger)
    ledger.mark_in_doubt(CID, ERR, T0 + 1)
    hold(ledger, held(Status.COMPLETED, T0 + 9))
    events = ledger.resolve_in_doubt(CID, observed(Status.PROCESSING, updated_at=T0 + 5), "found it", T0 + 10)
    assert [(e.source, e.status) for e in events] == [
        (Source.RECONCILE, Status.PROCESSING),
        (Source.WEBHOOK, Status.COMPLETED),
    ]


def test_hold_and_create_racing_lose_no_push(ledger: Ledger) -> None:
    """Each round races a hold against the create that records the order: whichever commits first, the
    push is applied exactly once (held and released, or found)."""
    rounds = 30
    for index in range(rounds):
        command_id = f"cmd-race-{index:04d}"
        order_id = f"po-race-{index}"
        submitted(ledger, command_id)
        barrier = threading.Barrier(2)
        push = held(Status.COMPLETED, T0 + 3, order_id=order_id)

        def keep(push: HeldPush = push, barrier: threading.Barrier = barrier) -> HoldOutcome:
            barrier.wait()
            return hold(ledger, push)

        def create(
            command_id: str = command_id, order_id: str = order_id, barrier: threading.Barrier = barrier
        ) -> int:
            barrier.wait()
            result = observed(Status.AWAITING_DEPOSIT, order_id=order_id, updated_at=T0)
            return len(ledger.record_created(command_id, result, None, None, True, None, T0 + 1))

        with ThreadPoolExecutor(2) as pool:
            kept = pool.submit(keep)
            made = pool.submit(create)
            outcome, events = kept.result(), made.result()
        record = ledger.get(command_id)
        assert record is not None
        if outcome is HoldOutcome.HELD:
            assert events == 2 and record.status == Status.COMPLETED
        else:
            assert outcome is HoldOutcome.FOUND and events == 1
            assert record.status == Status.AWAITING_DEPOSIT  # the receiver applies it as usual
    assert ledger.held_push_count() == 0
