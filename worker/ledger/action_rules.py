"""Operator actions under the state machine, as pure functions (the counterpart of :mod:`rules`).

An action is recorded before its partner call, so a worker that dies after the call leaves an open action
whose redelivery finds it, instead of a second decision nobody can tell from the first. These rules decide
what a command does to the stored action and its order; :mod:`worker.ledger.actions` only reads and writes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from worker.ledger.base import ActionRecord, ActionStart, ActionState, OrderRecord, Rejection
from worker.ledger.rows import replace as replace_record
from worker.ledger.rules import Change
from worker.messages import EventAction, EventError, EventType, ResolveOrderCommand, Source
from worker.status import Status

ACTIONABLE = Status.ACTION_REQUIRED.value
"""The one status an operator's choice answers: the partner holds the order for a decision."""


@dataclass(frozen=True)
class Decision:
    outcome: ActionStart
    write: ActionRecord | None = None
    """The action row to store (insert when new, update otherwise); None: nothing is written."""
    rejection: Rejection | None = None
    previous_unresolved: bool = False


def rejection_key(action_id: str) -> str:
    """An action is refused at most once, whichever step refused it."""
    return f"action:{action_id}"


def not_actionable(order: OrderRecord) -> EventError:
    return EventError(
        code="not_actionable",
        reason=f"the order is {order.status}; only an {ACTIONABLE} order takes an operator's choice",
    )


def begin(
    order: OrderRecord,
    stored: ActionRecord | None,
    command: ResolveOrderCommand,
    now: float,
    lease_seconds: float,
) -> Decision:
    """What a resolve command does, given the order and the action as read under the order's lock."""
    if stored is not None:
        if stored.fingerprint != command.fingerprint():
            return Decision(ActionStart.CONFLICT)
        if stored.state != ActionState.OPEN:
            return Decision(ActionStart.DONE)
        if stored.lease_until is not None and stored.lease_until > now:
            return Decision(ActionStart.BUSY)
        taken = replace(stored, attempts=stored.attempts + 1, lease_until=now + lease_seconds, updated_at=now)
        return Decision(ActionStart.BEGUN, taken, previous_unresolved=True)
    fresh = ActionRecord(
        action_id=command.action_id,
        command_id=command.command_id,
        fingerprint=command.fingerprint(),
        choice=command.choice,
        options=dict(command.options),
        note=command.note,
        state=ActionState.OPEN.value,
        attempts=1,
        lease_until=now + lease_seconds,
        last_error=None,
        created_at=now,
        updated_at=now,
    )
    if order.status != ACTIONABLE:
        error = not_actionable(order)
        refused = replace(
            fresh, state=ActionState.REJECTED.value, attempts=0, lease_until=None, last_error=error
        )
        return Decision(ActionStart.NOT_ACTIONABLE, refused, rejection(order, refused, error))
    return Decision(ActionStart.BEGUN, fresh)


def rejection(order: OrderRecord, action: ActionRecord, error: EventError) -> Rejection:
    return Rejection(
        key=rejection_key(action.action_id),
        command_id=order.command_id,
        provider=order.provider,
        error=error,
        metadata=order.metadata,
        detail={"action_id": action.action_id, "choice": action.choice},
        source=Source.OPERATOR,
        action=event_action(action),
    )


def event_action(action: ActionRecord) -> EventAction:
    return EventAction(action_id=action.action_id, choice=action.choice)


def finished(
    action: ActionRecord, state: ActionState, error: EventError | None, now: float
) -> ActionRecord | None:
    """Only an open action takes an outcome: the first outcome recorded stands."""
    if action.state != ActionState.OPEN or state is ActionState.OPEN:
        return None
    return replace(action, state=state.value, lease_until=None, last_error=error, updated_at=now)


def accepted(order: OrderRecord, now: float) -> Change:
    """The partner took the choice: a transition of the order (its own event, numbered in its sequence)
    even though the status moves only when the partner acts on it, which a later read observes."""
    return Change(replace_record(order, updated_at=now), EventType.ACTION_ACCEPTED)


def released(action: ActionRecord, error: EventError, now: float) -> ActionRecord | None:
    if action.state != ActionState.OPEN:
        return None
    return replace(action, lease_until=None, last_error=error, updated_at=now)
