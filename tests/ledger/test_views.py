"""Operators' views on both engines: orders by state and stored events, in pages that stay right while
new rows arrive, and a readiness check that creates nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tests.ledger.helpers import T0, command, created, observed, ref
from worker.ledger import open_ledger
from worker.ledger.base import EventQuery, Ledger, OrderQuery, OrderRecord
from worker.messages import EventError
from worker.status import Status


def _ids(records: list[OrderRecord]) -> list[str]:
    return [record.command_id for record in records]


def test_orders_by_status_provider_and_age_in_pages(ledger: Ledger) -> None:
    for n in range(5):
        created(ledger, f"cmd-list-{n}", now=T0 + n)
    ledger.claim(command("cmd-list-itrx", provider="itrx"), ref("cmd-list-itrx"), T0 + 10)
    assert ledger.begin_attempt("cmd-list-itrx", T0 + 10, 60) is not None
    ledger.mark_in_doubt("cmd-list-itrx", EventError(code="timeout", reason="no answer"), T0 + 11)

    waiting = OrderQuery(statuses=(Status.AWAITING_DEPOSIT.value,), limit=2)
    first = ledger.list_orders(waiting)
    assert _ids(first) == ["cmd-list-0", "cmd-list-1"]  # oldest change first
    last = first[-1]
    second = ledger.list_orders(
        OrderQuery(statuses=waiting.statuses, limit=2, after=(last.updated_at, last.command_id))
    )
    assert _ids(second) == ["cmd-list-2", "cmd-list-3"]

    assert _ids(ledger.list_orders(OrderQuery(statuses=("in_doubt",)))) == ["cmd-list-itrx"]
    assert _ids(ledger.list_orders(OrderQuery(provider="itrx"))) == ["cmd-list-itrx"]
    older = ledger.list_orders(OrderQuery(statuses=(Status.AWAITING_DEPOSIT.value,), changed_before=T0 + 2))
    assert _ids(older) == ["cmd-list-0", "cmd-list-1"]
    assert ledger.list_orders(OrderQuery(statuses=("untrackable",))) == []


def test_untrackable_orders_are_listed_whatever_their_status(ledger: Ledger) -> None:
    created(ledger, "cmd-known", now=T0)
    ledger.claim(command("cmd-lost"), ref("cmd-lost"), T0)
    assert ledger.begin_attempt("cmd-lost", T0, 60) is not None
    ledger.record_created("cmd-lost", observed(Status.AWAITING_DEPOSIT), None, None, True, T0 + 45, T0)
    found = ledger.list_orders(OrderQuery(statuses=("untrackable",)))
    assert _ids(found) == ["cmd-lost"] and found[0].untrackable


def test_stored_events_by_command_and_time_unchanged(ledger: Ledger) -> None:
    created(ledger, "cmd-ev-a", now=T0)
    created(ledger, "cmd-ev_b", now=T0 + 100)  # an underscore is a LIKE wildcard: matched exactly here
    every = ledger.stored_events(EventQuery())
    assert [json.loads(row.body)["command_id"] for row in every] == ["cmd-ev-a", "cmd-ev_b"]
    [only] = ledger.stored_events(EventQuery(command_id="cmd-ev_b"))
    assert only == every[1]
    assert ledger.stored_events(EventQuery(command_id="cmd-ev-b")) == []
    assert ledger.stored_events(EventQuery(since=T0 + 50)) == [every[1]]
    assert ledger.stored_events(EventQuery(until=T0 + 50)) == [every[0]]
    first = every[0]
    assert ledger.stored_events(EventQuery(after=(first.created_at, first.event_id))) == [every[1]]
    published = [row.event_id for row in ledger.claim_outbox(T0 + 200, 10, 30)]
    ledger.mark_published(published, T0 + 201)
    assert ledger.stored_events(EventQuery()) == every  # published events are still there to replay


def test_readiness_creates_nothing(tmp_path: Path, fresh_url: Callable[[str], str]) -> None:
    path = tmp_path / "absent.db"
    absent = open_ledger(f"sqlite:///{path}")
    assert absent.pending_migrations() > 0 and not path.exists()
    absent.close()
    for backend in ("sqlite", "postgres"):
        ledger = open_ledger(fresh_url(backend))
        assert ledger.pending_migrations() > 0
        ledger.migrate()
        assert ledger.pending_migrations() == 0
        ledger.close()
