"""What operators look at: orders by state, and stored events to send again.

Both read in pages with a keyset cursor (the last row's sort key), so a long list is never read in one
query and a page stays right while new orders and events arrive. Neither is on the hot path: the event
search by command id reads the command id out of each stored body from the order's creation onward rather
than keeping an indexed column that only this tool would use.
"""

from __future__ import annotations

from typing import Any

from worker.ledger.base import EventQuery, OrderQuery, OrderRecord, OutboxRow
from worker.ledger.engine import Part
from worker.ledger.outbox import ROW_COLUMNS, outbox_row
from worker.ledger.rows import GET_ORDER, SELECT_ORDER, record_of

UNTRACKABLE = "untrackable"


class Views(Part):
    def list_orders(self, query: OrderQuery) -> list[OrderRecord]:
        dialect = self._db.dialect
        conditions: list[str] = []
        params: list[Any] = []
        statuses = [status for status in query.statuses if status != UNTRACKABLE]
        either = []
        if statuses:
            either.append(dialect.any_of("status"))
            params.append(dialect.list_param(statuses))
        if UNTRACKABLE in query.statuses:
            either.append("untrackable")
        if either:
            conditions.append("(" + " OR ".join(either) + ")")
        if query.provider:
            conditions.append("provider = ?")
            params.append(query.provider)
        if query.changed_before is not None:
            conditions.append("updated_at < ?")
            params.append(float(query.changed_before))
        if query.after is not None:
            conditions.append(_after("updated_at", "command_id"))
            params += [query.after[0], query.after[0], query.after[1]]
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        with self._db.read() as s:
            rows = s.rows(
                f"{SELECT_ORDER}{where} ORDER BY updated_at, command_id LIMIT ?", (*params, query.limit)
            )
        return [record_of(row) for row in rows]

    def stored_events(self, query: EventQuery) -> list[OutboxRow]:
        conditions: list[str] = []
        params: list[Any] = []
        since = query.since
        if query.command_id is not None:
            with self._db.read() as s:
                order = s.one(GET_ORDER, (query.command_id,))
            if order is not None:  # no event of an order is older than the order itself
                created_at = record_of(order).created_at
                since = created_at if since is None else max(since, created_at)
            conditions.append(f"{self._db.dialect.json_text('body', 'command_id')} = ?")
            params.append(query.command_id)
        if since is not None:
            conditions.append("created_at >= ?")
            params.append(float(since))
        if query.until is not None:
            conditions.append("created_at < ?")
            params.append(float(query.until))
        if query.after is not None:
            conditions.append(_after("created_at", "event_id"))
            params += [query.after[0], query.after[0], query.after[1]]
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        with self._db.read() as s:
            rows = s.rows(
                f"SELECT {ROW_COLUMNS} FROM outbox{where} ORDER BY created_at, event_id LIMIT ?",
                (*params, query.limit),
            )
        return [outbox_row(row) for row in rows]


def _after(sort: str, key: str) -> str:
    """The keyset condition of the next page: rows after (sort value, key) in (sort, key) order."""
    return f"({sort} > ? OR ({sort} = ? AND {key} > ?))"
