"""Operator actions in the ledger (begin_action, finish_action, release_action), on both backends."""

from __future__ import annotations

from tests.ledger.helpers import T0, created
from worker.ledger.base import ActionStart, ActionState, Ledger
from worker.messages import (
    EventError,
    EventType,
    OrderEvent,
    ResolveOrderCommand,
    Source,
    transition_event_id,
)
from worker.status import Status

CID = "cmd-00000001"
AID = "act-00000001"


def _action(action_id: str = AID, command_id: str = CID, choice: str = "EXCHANGE") -> ResolveOrderCommand:
    return ResolveOrderCommand(action_id=action_id, command_id=command_id, choice=choice)


def _outbox(ledger: Ledger) -> list[OrderEvent]:
    rows = ledger.claim_outbox(T0 + 10**6, 10_000, 1)
    ledger.release_outbox([row.event_id for row in rows])
    return [OrderEvent.model_validate_json(row.body) for row in rows]


def test_the_intent_is_committed_before_the_call_and_an_acceptance_is_one_transition(ledger: Ledger) -> None:
    created(ledger, CID, status=Status.ACTION_REQUIRED)
    before = ledger.get(CID)
    assert before is not None
    claim = ledger.begin_action(_action(), T0 + 1, 60)
    assert claim.outcome is ActionStart.BEGUN and not claim.previous_unresolved
    stored = ledger.get_action(AID)
    assert stored is not None and stored.state == ActionState.OPEN and stored.attempts == 1
    assert stored.lease_until == T0 + 61 and stored.command_id == CID

    events = ledger.finish_action(AID, ActionState.ACCEPTED, None, T0 + 2)
    assert len(events) == 1
    event = events[0]
    assert event.type is EventType.ACTION_ACCEPTED and event.source is Source.OPERATOR
    assert event.status is Status.ACTION_REQUIRED and event.previous_status is Status.ACTION_REQUIRED
    assert event.action is not None and (event.action.action_id, event.action.choice) == (AID, "EXCHANGE")
    seq = before.event_seq + 1
    assert event.event_id == transition_event_id(CID, seq, EventType.ACTION_ACCEPTED, "action_required")
    after = ledger.get(CID)
    assert after is not None and after.event_seq == seq and after.status == Status.ACTION_REQUIRED
    assert event in _outbox(ledger)

    # A redelivery (or a second outcome) changes nothing: the first outcome stands.
    assert ledger.finish_action(AID, ActionState.REJECTED, EventError(code="x", reason="y"), T0 + 3) == []
    assert ledger.begin_action(_action(), T0 + 4, 60).outcome is ActionStart.DONE
    done = ledger.get_action(AID)
    assert done is not None and done.state == ActionState.ACCEPTED and done.lease_until is None


def test_an_order_that_is_not_action_required_rejects_the_action_once(ledger: Ledger) -> None:
    created(ledger, CID, status=Status.AWAITING_DEPOSIT)
    claim = ledger.begin_action(_action(), T0 + 1, 60)
    assert claim.outcome is ActionStart.NOT_ACTIONABLE
    assert [e.type for e in claim.events] == [EventType.REJECTED]
    rejected = claim.events[0]
    assert rejected.error is not None and rejected.error.code == "not_actionable"
    assert "awaiting_deposit" in rejected.error.reason
    assert rejected.command_id == CID and rejected.provider == "0trace" and rejected.source is Source.OPERATOR
    assert rejected.action is not None and rejected.action.action_id == AID
    again = ledger.begin_action(_action(), T0 + 2, 60)
    assert again.outcome is ActionStart.DONE and again.events == []
    assert [e.event_id for e in _outbox(ledger) if e.type is EventType.REJECTED] == [rejected.event_id]
    assert ledger.dead_letters()[0]["code"] == "not_actionable"
    order = ledger.get(CID)
    assert order is not None and order.status == Status.AWAITING_DEPOSIT


def test_an_action_id_names_one_decision(ledger: Ledger) -> None:
    created(ledger, CID, status=Status.ACTION_REQUIRED)
    created(ledger, "cmd-other-01", status=Status.ACTION_REQUIRED)
    assert ledger.begin_action(_action(), T0 + 1, 60).outcome is ActionStart.BEGUN
    assert ledger.begin_action(_action(choice="REFUND"), T0 + 2, 60).outcome is ActionStart.CONFLICT
    assert ledger.begin_action(_action(command_id="cmd-other-01"), T0 + 2, 60).outcome is ActionStart.CONFLICT


def test_an_open_action_is_busy_while_leased_then_taken_over(ledger: Ledger) -> None:
    created(ledger, CID, status=Status.ACTION_REQUIRED)
    assert ledger.begin_action(_action(), T0, 60).outcome is ActionStart.BEGUN
    assert ledger.begin_action(_action(), T0 + 59, 60).outcome is ActionStart.BUSY
    taken = ledger.begin_action(_action(), T0 + 60, 60)
    assert taken.outcome is ActionStart.BEGUN and taken.previous_unresolved
    assert taken.action is not None and taken.action.attempts == 2

    # A call that may be sent again frees the lease at once, keeping the error.
    ledger.release_action(AID, EventError(code="http_503", reason="upstream"))
    released = ledger.get_action(AID)
    assert released is not None and released.state == ActionState.OPEN and released.lease_until is None
    assert released.last_error == EventError(code="http_503", reason="upstream")
    assert ledger.begin_action(_action(), T0 + 61, 60).outcome is ActionStart.BEGUN


def test_a_refused_action_is_rejected_with_the_partners_reason(ledger: Ledger) -> None:
    created(ledger, CID, status=Status.ACTION_REQUIRED)
    ledger.begin_action(_action(), T0, 60)
    error = EventError(code="partner_refused", reason="0trace: emergency: INVALID_REQUEST (HTTP 400)")
    events = ledger.finish_action(AID, ActionState.REJECTED, error, T0 + 1)
    assert [(e.type, e.error) for e in events] == [(EventType.REJECTED, error)]
    assert ledger.finish_action(AID, ActionState.REJECTED, error, T0 + 2) == []
    order = ledger.get(CID)
    assert order is not None and order.status == Status.ACTION_REQUIRED


def test_a_moot_action_closes_without_an_event(ledger: Ledger) -> None:
    created(ledger, CID, status=Status.ACTION_REQUIRED)
    ledger.begin_action(_action(), T0, 60)
    assert ledger.finish_action(AID, ActionState.MOOT, None, T0 + 1) == []
    moot = ledger.get_action(AID)
    assert moot is not None and moot.state == ActionState.MOOT


def test_an_action_on_an_unknown_order_writes_nothing(ledger: Ledger) -> None:
    assert ledger.begin_action(_action(), T0, 60).outcome is ActionStart.UNKNOWN_ORDER
    assert ledger.get_action(AID) is None
    assert ledger.finish_action(AID, ActionState.ACCEPTED, None, T0) == []
