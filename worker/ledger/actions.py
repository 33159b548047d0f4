"""Operator actions on orders (``order_actions``): the intent before the partner call, then its outcome.

Every unit locks the order's row first, the same lock a poll, a push or a create takes, so an action and
an observation of the same order serialise and each transition still gets exactly one event. The action's
row is only ever written under that lock, so it needs none of its own.
"""

from __future__ import annotations

import json
from typing import Any

from worker.ledger import action_rules
from worker.ledger.base import ActionClaim, ActionRecord, ActionStart, ActionState, OrderRecord
from worker.ledger.engine import Part, Session
from worker.ledger.outbox import enqueue
from worker.ledger.rejections import write_rejection
from worker.ledger.rows import SELECT_ORDER, UPDATE_ORDER, dump, mutable_values, record_of
from worker.ledger.rules import sequenced
from worker.messages import EventError, OrderEvent, ResolveOrderCommand, Source

_COLUMNS = (
    "action_id, command_id, fingerprint, choice, options, note, state, attempts, lease_until, last_error,"
    " created_at, updated_at"
)
_SELECT = f"SELECT {_COLUMNS} FROM order_actions WHERE action_id = ?"
_INSERT = f"INSERT INTO order_actions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_UPDATE = (
    "UPDATE order_actions SET state = ?, attempts = ?, lease_until = ?, last_error = ?, updated_at = ?"
    " WHERE action_id = ?"
)


def _action_of(row: tuple[Any, ...]) -> ActionRecord:
    (action_id, command_id, fingerprint, choice, options, note, state, attempts, lease, error, at, upd) = row
    return ActionRecord(
        action_id=action_id,
        command_id=command_id,
        fingerprint=fingerprint,
        choice=choice,
        options=json.loads(options),
        note=note,
        state=state,
        attempts=int(attempts),
        lease_until=lease,
        last_error=None if error is None else EventError.model_validate_json(error),
        created_at=at,
        updated_at=upd,
    )


def _error_text(error: EventError | None) -> str | None:
    return None if error is None else error.model_dump_json()


class Actions(Part):
    def _lock_order_row(self, tx: Session, command_id: str) -> OrderRecord | None:
        row = tx.one(f"{SELECT_ORDER} WHERE command_id = ?{self._db.dialect.lock_row}", (command_id,))
        return None if row is None else record_of(row)

    @staticmethod
    def _read_action(tx: Session, action_id: str) -> ActionRecord | None:
        row = tx.one(_SELECT, (action_id,))
        return None if row is None else _action_of(row)

    @staticmethod
    def _write_action(tx: Session, action: ActionRecord, new: bool) -> None:
        if new:
            tx.run(
                _INSERT,
                (
                    action.action_id,
                    action.command_id,
                    action.fingerprint,
                    action.choice,
                    dump(action.options),
                    action.note,
                    action.state,
                    action.attempts,
                    action.lease_until,
                    _error_text(action.last_error),
                    action.created_at,
                    action.updated_at,
                ),
            )
            return
        tx.run(
            _UPDATE,
            (
                action.state,
                action.attempts,
                action.lease_until,
                _error_text(action.last_error),
                action.updated_at,
                action.action_id,
            ),
        )

    def begin_action(self, command: ResolveOrderCommand, now: float, lease_seconds: float) -> ActionClaim:
        now = float(now)
        with self._db.write() as tx:
            order = self._lock_order_row(tx, command.command_id)
            if order is None:
                return ActionClaim(ActionStart.UNKNOWN_ORDER)
            stored = self._read_action(tx, command.action_id)
            decision = action_rules.begin(order, stored, command, now, lease_seconds)
            if decision.write is not None:
                self._write_action(tx, decision.write, new=stored is None)
            events = [] if decision.rejection is None else write_rejection(tx, decision.rejection, now)
        return ActionClaim(
            decision.outcome,
            decision.write or stored,
            order,
            previous_unresolved=decision.previous_unresolved,
            events=events,
        )

    def finish_action(
        self, action_id: str, state: ActionState, error: EventError | None, now: float
    ) -> list[OrderEvent]:
        now = float(now)
        with self._db.write() as tx:
            action = self._action_under_lock(tx, action_id)
            if action is None:
                return []
            order, stored = action
            after = action_rules.finished(stored, state, error, now)
            if after is None:
                return []
            self._write_action(tx, after, new=False)
            if state is ActionState.REJECTED:
                assert error is not None, "a rejected action says why"
                return write_rejection(tx, action_rules.rejection(order, after, error), now)
            if state is not ActionState.ACCEPTED:
                return []
            change = action_rules.accepted(order, now)
            row, event = sequenced(order, change, Source.OPERATOR, now)
            event = event.model_copy(update={"action": action_rules.event_action(after)})
            tx.run(UPDATE_ORDER, mutable_values(row))
            enqueue(tx, event, now)
            return [event]

    def release_action(self, action_id: str, error: EventError) -> None:
        with self._db.write() as tx:
            action = self._action_under_lock(tx, action_id)
            if action is None:
                return
            after = action_rules.released(action[1], error, action[1].updated_at)
            if after is not None:
                self._write_action(tx, after, new=False)

    def _action_under_lock(self, tx: Session, action_id: str) -> tuple[OrderRecord, ActionRecord] | None:
        """The action and its order, the order's row locked (the lock every writer of an action takes)."""
        found = self._read_action(tx, action_id)
        if found is None:
            return None
        order = self._lock_order_row(tx, found.command_id)
        stored = self._read_action(tx, action_id)  # again under the lock: the first read raced
        if order is None or stored is None:
            return None
        return order, stored

    def get_action(self, action_id: str) -> ActionRecord | None:
        with self._db.read() as s:
            row = s.one(_SELECT, (action_id,))
        return None if row is None else _action_of(row)
