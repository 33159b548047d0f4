"""Rejections: messages the worker refused (bad JSON, a failed validation, an unknown partner) and why.

A dead-letter record and its ``rejected`` event are written in one transaction and keyed by the refused
message, so a redelivery of the same bad message records nothing new. The record keeps what identifies
the message (queue, actor, id, body size and hash), never the body itself, which may hold secrets.
Dead letters are never pruned: they are the record of what was refused.
"""

from __future__ import annotations

import json
from typing import Any

from worker.ledger.base import Rejection
from worker.ledger.engine import Part, Session
from worker.ledger.outbox import enqueue
from worker.ledger.rows import dump
from worker.messages import EventType, OrderEvent, rejection_event_id, utc_moment


def write_rejection(tx: Session, rejection: Rejection, now: float) -> list[OrderEvent]:
    """The dead-letter record and its event in the caller's transaction; [] when the key was seen."""
    event = OrderEvent(
        event_id=rejection_event_id(rejection.key),
        type=EventType.REJECTED,
        occurred_at=utc_moment(now),
        command_id=rejection.command_id,
        provider=rejection.provider,
        source=rejection.source,
        error=rejection.error,
        metadata=rejection.metadata,
        action=rejection.action,
    )
    inserted = tx.run(
        "INSERT INTO dead_letters (rejection_key, event_id, command_id, provider, code, reason,"
        " metadata, detail, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (
            rejection.key,
            event.event_id,
            rejection.command_id,
            rejection.provider,
            rejection.error.code,
            rejection.error.reason,
            dump(rejection.metadata),
            dump(rejection.detail),
            now,
        ),
    )
    if inserted != 1:
        return []
    enqueue(tx, event, now)
    return [event]


class Rejections(Part):
    def record_rejection(self, rejection: Rejection, now: float) -> list[OrderEvent]:
        now = float(now)
        with self._db.write() as tx:
            return write_rejection(tx, rejection, now)

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._db.read() as s:
            rows = s.rows(
                "SELECT rejection_key, event_id, command_id, provider, code, reason, metadata, detail,"
                " created_at FROM dead_letters ORDER BY created_at DESC, rejection_key DESC LIMIT ?",
                (limit,),
            )
        return [
            {
                "rejection_key": key,
                "event_id": event_id,
                "command_id": command_id,
                "provider": provider,
                "code": code,
                "reason": reason,
                "metadata": json.loads(metadata),
                "detail": json.loads(detail),
                "created_at": created_at,
            }
            for key, event_id, command_id, provider, code, reason, metadata, detail, created_at in rows
        ]
