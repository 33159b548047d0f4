"""Pushes held for orders the ledger does not know yet.

A partner may push an order's change before the create that made the order has committed its answer
(the answer is slow, or was lost and the replay is still to come). Such a push names a partner order id no
row carries yet. Answering it as an unknown order would lose it, and for an order created by a replay
without a token (untrackable, never polled) that push may be the only news of the order there will ever
be. So the verified push is kept here, and the transition that gives the order its partner order id
applies it in the same transaction: exactly as a push arriving later would be applied, one event per
transition, through the outbox.

The keep and the release are serialised on the partner order id (a transaction-scoped key lock on
PostgreSQL, the one writer on SQLite), and the keep looks for the order again under that lock: either the
release sees the held row, or the keep sees the order and keeps nothing.
"""

from __future__ import annotations

import json
from dataclasses import asdict

from worker.ledger import rules
from worker.ledger.base import HeldPush, HoldOutcome, OrderRecord
from worker.ledger.engine import Part, Session, delete_before
from worker.ledger.outbox import enqueue
from worker.ledger.rows import FIND_BY_ORDER_ID, UPDATE_ORDER, mutable_values
from worker.messages import DEFAULT_ACCOUNT, OrderEvent, Source
from worker.partners.base import PartnerOrder
from worker.status import Status

_SELECT = (
    "SELECT dedupe_key, signers, observation, held_at FROM held_pushes WHERE provider = ? AND order_id = ?"
)
_DELETE = "DELETE FROM held_pushes WHERE provider = ? AND order_id = ?"
_INSERT = (
    "INSERT INTO held_pushes (dedupe_key, provider, order_id, signers, observation, held_at)"
    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
)
_RECORD_PUSH = "INSERT INTO pushes (dedupe_key, seen_at) VALUES (?, ?) ON CONFLICT DO NOTHING"


def _key(provider: str, order_id: str) -> str:
    return f"held:{provider}:{order_id}"


def _dump(observation: PartnerOrder) -> str:
    return json.dumps(asdict(observation), separators=(",", ":"))


def _load(text: str) -> PartnerOrder:
    data = json.loads(text)
    status = data.get("status")
    return PartnerOrder(
        order_id=data["order_id"],
        provider_status=data["provider_status"],
        status=None if status is None else Status(status),
        order=data["order"],
        updated_at=data.get("updated_at"),
    )


def release(
    tx: Session, lock_key: str, before: OrderRecord, after: OrderRecord, now: float
) -> list[OrderEvent]:
    """In the caller's transaction, which just wrote ``after``: when that write gave the order its partner
    order id, apply the pushes held for it (oldest partner change first) and forget them, recording their
    dedupe keys as a push applied on arrival would. Returns the events they caused.

    The rules are those of ``apply_observation`` for a push; the next poll stays where the recording
    write put it (a poll then reads the order anyway), and a terminal status clears it as always."""
    if before.order_id is not None or after.order_id is None:
        return []
    if lock_key:
        tx.one(lock_key, (_key(after.provider, after.order_id),))
    rows = tx.rows(_SELECT, (after.provider, after.order_id))
    if not rows:
        return []
    tx.run(_DELETE, (after.provider, after.order_id))
    account = after.account or DEFAULT_ACCOUNT
    held = sorted(
        ((_load(observation), held_at, key, signers) for key, signers, observation, held_at in rows),
        key=lambda item: (item[0].updated_at or 0.0, item[1]),
    )
    events: list[OrderEvent] = []
    current = after
    for observation, _held_at, key, signers in held:
        if account not in signers.split(","):
            continue  # signed by another account at the partner: it must not move this order
        change = rules.observed(current, observation, now, current.next_action_at, push=True)
        tx.run(_RECORD_PUSH, (key, now))
        if change is None:
            continue
        if change.event_type is None:
            current = change.after
            tx.run(UPDATE_ORDER, mutable_values(current))
            continue
        current, event = rules.sequenced(current, change, Source.WEBHOOK, now)
        tx.run(UPDATE_ORDER, mutable_values(current))
        enqueue(tx, event, now)
        events.append(event)
    return events


class HeldPushes(Part):
    def hold_push(
        self, push: HeldPush, now: float, limit: int, expired_before: float
    ) -> tuple[HoldOutcome, int]:
        now = float(now)
        lock_key = self._db.dialect.lock_key
        with self._db.write() as tx:
            expired = delete_before(tx, "held_pushes", "dedupe_key", "held_at", float(expired_before), 1000)
            if lock_key:
                tx.one(lock_key, (_key(push.provider, push.order_id),))
            if tx.one(FIND_BY_ORDER_ID, (push.provider, push.order_id)) is not None:
                return HoldOutcome.FOUND, expired
            if tx.one("SELECT 1 FROM held_pushes WHERE dedupe_key = ?", (push.dedupe_key,)) is not None:
                return HoldOutcome.DUPLICATE, expired
            count = tx.one("SELECT COUNT(*) FROM held_pushes")
            if count is not None and int(count[0]) >= limit:
                return HoldOutcome.FULL, expired
            tx.run(
                _INSERT,
                (
                    push.dedupe_key,
                    push.provider,
                    push.order_id,
                    ",".join(push.signers),
                    _dump(push.observation),
                    now,
                ),
            )
        return HoldOutcome.HELD, expired

    def drop_expired_pushes(self, before: float, limit: int = 10_000) -> int:
        with self._db.single() as s:
            return delete_before(s, "held_pushes", "dedupe_key", "held_at", float(before), limit)

    def held_push_count(self) -> int:
        with self._db.read() as s:
            row = s.one("SELECT COUNT(*) FROM held_pushes")
        return int(row[0]) if row else 0
