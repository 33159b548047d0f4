"""What a stack's ledger and its partner hold, read from outside the processes under test: the rows as
stored (a second reader, not the adapter under test) and the sandbox's partner orders."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import psycopg

from tests.support.stack import Sandbox
from worker.pipeline import partner_ref
from worker.status import TERMINAL

NAMESPACE = "order-worker"


def _sql_rows(ledger_url: str, sql: str) -> list[tuple[Any, ...]]:
    if ledger_url.startswith("sqlite:"):
        path = ledger_url.split("sqlite:///", 1)[1].split("?", 1)[0]
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            return list(connection.execute(sql).fetchall())
        finally:
            connection.close()
    with psycopg.connect(ledger_url) as connection:
        return list(connection.execute(sql).fetchall())  # type: ignore[arg-type]


def outbox_ids(ledger_url: str) -> dict[str, bool]:
    """Every event the ledger ever committed: {event_id: published}."""
    return {
        row[0]: row[1] is not None
        for row in _sql_rows(ledger_url, "SELECT event_id, published_at FROM outbox")
    }


def order_rows(ledger_url: str) -> dict[str, dict[str, Any]]:
    rows = _sql_rows(
        ledger_url,
        "SELECT command_id, provider, status, untrackable, attempts, event_seq, order_id, sealed_token,"
        " partner_ref FROM orders",
    )
    return {
        r[0]: {
            "provider": r[1],
            "status": r[2],
            "untrackable": bool(r[3]),
            "attempts": r[4],
            "event_seq": r[5],
            "order_id": r[6],
            "sealed": bytes(r[7]) if r[7] is not None else None,
            "partner_ref": r[8],
        }
        for r in rows
    }


def held_push_count(ledger_url: str) -> int:
    """Pushes still held for orders the ledger does not know."""
    return int(_sql_rows(ledger_url, "SELECT COUNT(*) FROM held_pushes")[0][0])


def ledger_bytes(ledger_url: str) -> dict[str, bytes]:
    """The raw stored bytes of the ledger (SQLite files incl. WAL, or every PostgreSQL row as text)."""
    if ledger_url.startswith("sqlite:"):
        path = Path(ledger_url.split("sqlite:///", 1)[1].split("?", 1)[0])
        return {p.name: p.read_bytes() for p in path.parent.glob(path.name + "*") if p.is_file()}
    blobs = {}
    for table in ("orders", "outbox", "dead_letters"):
        rows = _sql_rows(ledger_url, f"SELECT * FROM {table}")
        blobs[f"pg:{table}"] = "\n".join(repr(row) for row in rows).encode()
    return blobs


def is_settled(row: Mapping[str, Any] | None) -> bool:
    """Final, or flagged for a human or for webhooks: nothing automatic is still owed to it."""
    return row is not None and (row["status"] in TERMINAL or row["status"] == "in_doubt")


def partner_orders_by_ref(sandbox: Sandbox) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for order in sandbox.orders():
        key = order.get("idempotency_key") or order.get("out_trade_no")
        grouped.setdefault(str(key), []).append(order)
    return grouped


def duplicate_partner_orders(sandbox: Sandbox, command_ids: Iterable[str]) -> tuple[int, int]:
    """(duplicates, partner orders) over the given commands: orders beyond the first per command."""
    grouped = partner_orders_by_ref(sandbox)
    duplicates = total = 0
    for command_id in command_ids:
        orders = grouped.get(partner_ref(NAMESPACE, command_id), [])
        total += len(orders)
        duplicates += max(0, len(orders) - 1)
    return duplicates, total
