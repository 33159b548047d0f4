"""The outbox keeps the trace context an event was written in (its own migration), on both engines."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.ledger.helpers import T0, created
from worker import tracing
from worker.ledger import open_ledger
from worker.ledger import sql as sql_module
from worker.ledger.base import Ledger
from worker.ledger.migrations import MIGRATIONS, latest_version
from worker.ledger.sql import SqlLedger

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_an_event_keeps_the_trace_context_it_was_written_in(ledger: Ledger) -> None:
    context = {"traceparent": TRACEPARENT, "tracestate": "a=1,b=2"}
    with tracing.continued("test", context, {}):
        created(ledger, "cmd-00000001")
    created(ledger, "cmd-00000002")
    rows = ledger.claim_outbox(T0 + 100, 10, 30)
    assert len(rows) == 2
    traced = [row for row in rows if row.trace_context is not None]
    assert len(traced) == 1 and tracing.from_text(traced[0].trace_context) == context


def test_the_column_is_added_to_an_outbox_of_the_previous_release(
    backend: str, fresh_url: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = fresh_url(backend)
    ledger = open_ledger(url)
    assert isinstance(ledger, SqlLedger)
    try:
        monkeypatch.setattr(sql_module, "MIGRATIONS", MIGRATIONS[:-1])
        ledger.migrate()
        with ledger.database.write() as tx:
            tx.run(
                "INSERT INTO outbox (event_id, routing_key, event_type, body, created_at) VALUES (?, ?, ?, ?, ?)",
                ("e-1", "order.0trace.created", "created", b"{}", T0),
            )
        monkeypatch.setattr(sql_module, "MIGRATIONS", MIGRATIONS)
        ledger.migrate()
        assert ledger.schema_version() == latest_version() == MIGRATIONS[-1].version
        (row,) = ledger.claim_outbox(T0 + 1, 10, 30)
        assert (row.event_id, row.trace_context) == ("e-1", None)
    finally:
        ledger.close()
