"""How an order row is stored: the ``orders`` columns, their statements, and row <-> :class:`OrderRecord`.

Every unit of work reads a row and most write one back, so the mapping avoids the frozen dataclass's
``__init__`` and ``dataclasses.replace`` (an ``object.__setattr__`` per field): records are built by filling
the instance dictionary, which is safe because ``OrderRecord`` has no validation to skip.
"""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any

from worker.ledger.base import OrderRecord
from worker.messages import EventError

COLUMNS = (
    "command_id",
    "provider",
    "fingerprint",
    "command",
    "partner_ref",
    "status",
    "provider_status",
    "order_id",
    "snapshot",
    "sealed_token",
    "token_key_id",
    "untrackable",
    "attempts",
    "attempt_open",
    "lease_until",
    "next_action_at",
    "partner_updated_at",
    "last_push_at",
    "deadline_at",
    "last_error",
    "event_seq",
    "created_at",
    "updated_at",
)
# Everything but the identity columns; a transition rewrites them all with one statement text.
_IDENTITY = frozenset({"command_id", "provider", "fingerprint", "command", "partner_ref", "created_at"})
_MUTABLE = tuple(column for column in COLUMNS if column not in _IDENTITY)
COLUMN_LIST = ", ".join(COLUMNS)

SELECT_ORDER = f"SELECT {COLUMN_LIST} FROM orders"
GET_ORDER = f"{SELECT_ORDER} WHERE command_id = ? LIMIT 1"
FIND_BY_ORDER_ID = f"{SELECT_ORDER} WHERE provider = ? AND order_id = ? LIMIT 1"
FIND_BY_PARTNER_REF = f"{SELECT_ORDER} WHERE provider = ? AND partner_ref = ? LIMIT 1"
INSERT_ORDER = (
    f"INSERT INTO orders ({COLUMN_LIST}) VALUES ({', '.join('?' for _ in COLUMNS)}) ON CONFLICT DO NOTHING"
)
UPDATE_ORDER = "UPDATE orders SET " + ", ".join(f"{c} = ?" for c in _MUTABLE) + " WHERE command_id = ?"


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def dump(value: Any) -> str:
    """``json.dumps(value, separators=(",", ":"), ensure_ascii=False)`` without an encoder per call."""
    return _ENCODER.encode(value)


RECORD_FIELD_ORDER = tuple(field.name for field in fields(OrderRecord))
_RECORD_FIELDS = frozenset(RECORD_FIELD_ORDER)


def replace(record: OrderRecord, **changes: Any) -> OrderRecord:
    """``dataclasses.replace`` for the frozen, validator-free ``OrderRecord``, at a fraction of its cost:
    a shallow copy of the instance dictionary with the changed fields (unknown names still raise)."""
    if not _RECORD_FIELDS.issuperset(changes):
        raise TypeError(f"OrderRecord has no field(s) {sorted(changes.keys() - _RECORD_FIELDS)}")
    new: OrderRecord = object.__new__(OrderRecord)
    state = new.__dict__
    state.update(record.__dict__)
    state.update(changes)
    return new


def record_of(row: tuple[Any, ...]) -> OrderRecord:
    """The row as a record, built as ``replace`` builds one: a frozen dataclass's ``__init__`` pays an
    ``object.__setattr__`` per field, and every unit of work reads a row. The values are the row's own,
    so there is nothing for ``__init__`` to check."""
    (
        command_id,
        provider,
        fingerprint,
        command,
        partner_ref,
        status,
        provider_status,
        order_id,
        snapshot,
        sealed_token,
        token_key_id,
        untrackable,
        attempts,
        attempt_open,
        lease_until,
        next_action_at,
        partner_updated_at,
        last_push_at,
        deadline_at,
        last_error,
        event_seq,
        created_at,
        updated_at,
    ) = row
    return new_record(
        dict(
            command_id=command_id,
            provider=provider,
            fingerprint=fingerprint,
            command=json.loads(command),
            partner_ref=partner_ref,
            status=status,
            provider_status=provider_status,
            order_id=order_id,
            order=None if snapshot is None else json.loads(snapshot),
            sealed_token=None if sealed_token is None else bytes(sealed_token),
            token_key_id=token_key_id,
            untrackable=bool(untrackable),
            attempts=attempts,
            attempt_open=bool(attempt_open),
            lease_until=lease_until,
            next_action_at=next_action_at,
            partner_updated_at=partner_updated_at,
            last_push_at=last_push_at,
            deadline_at=deadline_at,
            last_error=None if last_error is None else EventError.model_validate_json(last_error),
            event_seq=event_seq,
            created_at=created_at,
            updated_at=updated_at,
        )
    )


def new_record(values: dict[str, Any]) -> OrderRecord:
    """An ``OrderRecord`` of ``values`` (one per field), built as ``replace`` builds one."""
    record: OrderRecord = object.__new__(OrderRecord)
    record.__dict__.update(values)
    return record


def mutable_values(record: OrderRecord) -> tuple[Any, ...]:
    return (
        record.status,
        record.provider_status,
        record.order_id,
        None if record.order is None else dump(record.order),
        record.sealed_token,
        record.token_key_id,
        record.untrackable,
        record.attempts,
        record.attempt_open,
        record.lease_until,
        record.next_action_at,
        record.partner_updated_at,
        record.last_push_at,
        record.deadline_at,
        None if record.last_error is None else record.last_error.model_dump_json(),
        record.event_seq,
        record.updated_at,
        record.command_id,
    )


def insert_values(record: OrderRecord) -> tuple[Any, ...]:
    """A new order's whole row, in :data:`COLUMNS` order, for :data:`INSERT_ORDER`."""
    mutable = mutable_values(record)
    return (
        record.command_id,
        record.provider,
        record.fingerprint,
        dump(record.command),
        record.partner_ref,
        *mutable[:-2],
        record.created_at,
        record.updated_at,
    )
