"""The transactional outbox: events wait here, written in the transaction of the change they describe,
until a relay has published them.

Relays in every replica share the rows through short leases (``SKIP LOCKED`` on PostgreSQL), so a relay
that dies only delays its rows until the lease ends. Published rows stay until :meth:`SqlLedger.prune`
removes them, which lets a late duplicate publish be recognised meanwhile.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from worker import tracing
from worker.ledger.base import OutboxRow
from worker.ledger.engine import Part, Session, delete_before
from worker.messages import OrderEvent

_INSERT = (
    "INSERT INTO outbox (event_id, routing_key, event_type, body, created_at, trace_context, command_id)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)


ROW_COLUMNS = "event_id, routing_key, event_type, body, created_at, trace_context, command_id"
"""The columns an :class:`OutboxRow` is read from, in :func:`outbox_row`'s order."""


def outbox_row(values: Sequence[Any]) -> OutboxRow:
    event_id, key, event_type, body, at, trace_context, command_id = values
    return OutboxRow(
        event_id=event_id,
        routing_key=key,
        event_type=event_type,
        body=bytes(body),
        created_at=at,
        trace_context=trace_context,
        command_id=command_id,
    )


def enqueue(tx: Session, event: OrderEvent, now: float) -> None:
    """Write ``event`` in the caller's transaction: it is published if and only if that commits.

    The trace context current now (the command's, or its span's) goes with it, so the relay, running
    later in another thread or replica, can still tell consumers which trace the event belongs to."""
    context = tracing.to_text(tracing.current())
    row = (event.event_id, event.routing_key, event.type.value, event.to_json(), now, context)
    tx.run(_INSERT, (*row, event.command_id))


class Outbox(Part):
    """The relay's side of the outbox, and its gauges."""

    def _prepare_outbox(self) -> None:
        dialect = self._db.dialect
        self._take_outbox = (
            f"SELECT {ROW_COLUMNS} FROM outbox"
            " WHERE published_at IS NULL AND (lease_until IS NULL OR lease_until <= ?)"
            f" ORDER BY created_at LIMIT ?{dialect.skip_locked}"
        )
        self._lease_outbox = f"UPDATE outbox SET lease_until = ? WHERE {dialect.any_of('event_id')}"
        self._publish_outbox = (
            "UPDATE outbox SET published_at = ?, lease_until = NULL"
            f" WHERE {dialect.any_of('event_id')} AND published_at IS NULL"
        )
        self._release_outbox = (
            "UPDATE outbox SET lease_until = NULL"
            f" WHERE {dialect.any_of('event_id')} AND published_at IS NULL"
        )

    def claim_outbox(self, now: float, limit: int, lease_seconds: float) -> list[OutboxRow]:
        now = float(now)
        rows = self._take(self._take_outbox, (now, limit), self._lease_outbox, now + lease_seconds)
        return [outbox_row(row) for row in rows]

    def mark_published(self, event_ids: list[str], now: float) -> None:
        if event_ids:
            with self._db.single() as s:
                s.run(self._publish_outbox, (float(now), self._db.dialect.list_param(event_ids)))

    def release_outbox(self, event_ids: list[str]) -> None:
        if event_ids:
            with self._db.single() as s:
                s.run(self._release_outbox, (self._db.dialect.list_param(event_ids),))

    @staticmethod
    def _prune_outbox(s: Session, before: float, limit: int) -> int:
        return delete_before(s, "outbox", "event_id", "published_at", before, limit)

    def outbox_backlog(self) -> int:
        with self._db.read() as s:
            row = s.one("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL")
        return int(row[0]) if row else 0

    def outbox_oldest_created_at(self) -> float | None:
        with self._db.read() as s:
            row = s.one("SELECT MIN(created_at) FROM outbox WHERE published_at IS NULL")
        return float(row[0]) if row and row[0] is not None else None
