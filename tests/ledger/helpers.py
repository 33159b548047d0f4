"""Builders shared by the ledger tests (and importable by spawned processes)."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from worker.ledger import open_ledger
from worker.ledger.base import ClaimOutcome, Ledger
from worker.messages import CreateOrderCommand, EventError
from worker.partners.base import PartnerOrder
from worker.status import Status

PG_URL = os.environ.get("ORDER_WORKER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
T0 = 1_760_000_000.0
ERR = EventError(code="http_503", reason="upstream unavailable")


def pg_url_for_schema(schema: str) -> str:
    """The test server's URL with search_path pinned to ``schema`` via libpq's own ``options``."""
    parts = urlsplit(PG_URL)
    query = [*parse_qsl(parts.query), ("options", f"-csearch_path={schema}")]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def command(
    command_id: str = "cmd-00000001",
    *,
    provider: str = "0trace",
    amount: str = "0.01",
    metadata: dict[str, str] | None = None,
) -> CreateOrderCommand:
    params: dict[str, Any]
    if provider == "0trace":
        params = {
            "fromCcy": "btc",
            "toCcy": "usdt_trc20",
            "direction": "from",
            "amount": amount,
            "toAddress": "TXyzExampleRecipientAddress0001",
            "refundAddress": "bc1qexamplerefundaddress0000001",
        }
    else:
        params = {
            "energy_amount": 65_000,
            "period": "1H",
            "receive_address": "TXyzExampleRecipientAddress0001",
        }
    return CreateOrderCommand(
        command_id=command_id,
        provider=provider,
        params=params,
        metadata=metadata if metadata is not None else {"pipeline": "test"},
    )


def ref(command_id: str) -> str:
    return f"ref-{command_id}"


def observed(
    status: Status | None,
    provider_status: str | None = None,
    *,
    order_id: str = "po-1",
    updated_at: float | None = None,
    deadline: float | None = None,
    **order: Any,
) -> PartnerOrder:
    return PartnerOrder(
        order_id=order_id,
        provider_status=provider_status or (status.value.upper() if status else "MYSTERY"),
        status=status,
        order={"id": order_id, "status": provider_status or str(status), **order},
        updated_at=updated_at,
        deadline=deadline,
    )


def created(
    ledger: Ledger, command_id: str, *, now: float = T0, status: Status = Status.AWAITING_DEPOSIT
) -> None:
    """Claim, attempt and record a created order (the usual starting point of tracking tests)."""
    ledger.claim(command(command_id), ref(command_id), now)
    assert ledger.begin_attempt(command_id, now, 60) is not None
    ledger.record_created(command_id, observed(status, updated_at=now), b"sealed", "k1", False, now + 30, now)


def claim_many_in_process(url: str, command_ids: list[str], barrier_path: str) -> list[str]:
    """Run in a spawned process: claim every id, return the ids this process won (NEW)."""
    import time

    ledger = open_ledger(url)
    try:
        while not os.path.exists(barrier_path):  # start together, so the claims really race
            time.sleep(0.001)
        won = []
        for command_id in command_ids:
            if ledger.claim(command(command_id), ref(command_id), T0).outcome is ClaimOutcome.NEW:
                won.append(command_id)
        return won
    finally:
        ledger.close()


def migrate_in_process(url: str) -> int:
    from worker.ledger.sql import SqlLedger

    ledger = open_ledger(url)
    try:
        ledger.migrate()
        assert isinstance(ledger, SqlLedger)
        return ledger.schema_version()
    finally:
        ledger.close()


def hold_sqlite_writer_lock(path: str, ready_path: str) -> None:
    """Runs in a process of its own: forks a child that lives on, then takes the file's writer lock and
    waits to be killed. Writes the child's pid to ``ready_path`` once the lock is held."""
    import time
    from pathlib import Path

    from worker.ledger.sqlite import SqliteDatabase

    database = SqliteDatabase(path)
    child = os.fork()
    if child == 0:
        time.sleep(120)
        os._exit(0)
    database._gate.lock_file()
    written = Path(ready_path + ".part")
    written.write_text(str(child))
    written.rename(ready_path)  # whole or absent: the waiting test polls for the file and reads it at once
    time.sleep(120)
