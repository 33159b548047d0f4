"""End to end against real RabbitMQ, the sandbox and both ledgers: commands in, partner orders, events out."""

from __future__ import annotations

import json
from typing import Any

from tests.support.partners import itrx_command, zerotrace_command
from tests.support.stack import Stack, collect_events, terminal_for_all
from worker.messages import EventType, transition_event_id
from worker.pipeline import partner_ref


def _ref(command_id: str) -> str:
    return partner_ref("order-worker", command_id)


def _chain(events: list[dict[str, Any]], command_id: str) -> list[dict[str, Any]]:
    return [e for e in events if e["command_id"] == command_id]


def _assert_one_id_per_transition(chain: list[dict[str, Any]]) -> None:
    ids = [e["event_id"] for e in chain]
    assert len(ids) == len(set(ids))
    for sequence, event in enumerate(chain, start=1):
        assert event["event_id"] == transition_event_id(
            event["command_id"], sequence, EventType(event["type"]), event["status"]
        ), f"event {sequence} of {event['command_id']} does not carry its transition's id"
        if sequence > 1:
            assert event["previous_status"] == chain[sequence - 2]["status"]


def test_zerotrace_order_runs_to_completed_by_polling(stack: Stack) -> None:
    stack.start_worker()
    stack.start_scheduler()
    command = zerotrace_command(metadata={"shop": "42"})
    with stack.watcher() as watcher, stack.producer() as producer:
        producer.create_order(command)
        events = collect_events(watcher, terminal_for_all({command["command_id"]}), timeout=60)
    chain = _chain(events, command["command_id"])
    # Polling sees states, not changes: a status shorter than the poll interval may be skipped, but the
    # observed ones come in lifecycle order, start at creation and end completed.
    path = ["awaiting_deposit", "confirming", "processing", "completed"]
    statuses = [e["status"] for e in chain]
    assert statuses[0] == "awaiting_deposit" and statuses[-1] == "completed"
    assert statuses == sorted(statuses, key=path.index) and len(set(statuses)) == len(statuses)
    assert [e["type"] for e in chain] == ["created"] + ["status_changed"] * (len(chain) - 1)
    assert {e["source"] for e in chain[1:]} == {"poll"}
    assert all(e["metadata"] == {"shop": "42"} for e in chain)
    raw = {"awaiting_deposit": "NEW", "confirming": "PENDING", "processing": "EXCHANGE", "completed": "DONE"}
    assert [e["provider_status"] for e in chain] == [raw[s] for s in statuses]
    _assert_one_id_per_transition(chain)
    assert len(stack.sandbox.orders_for(_ref(command["command_id"]))) == 1
    record = stack.ledger().get(command["command_id"])
    assert record is not None and record.sealed_token is not None
    token = stack.sandbox.orders_for(_ref(command["command_id"]))[0].get("token")
    assert token is None or token.encode() not in record.sealed_token
    assert all("token" not in json.dumps(e["order"]) for e in chain)


def test_itrx_order_runs_to_completed_by_polling(stack: Stack) -> None:
    stack.start_worker()
    stack.start_scheduler()
    command = itrx_command()
    with stack.watcher() as watcher, stack.producer() as producer:
        producer.create_order(command)
        events = collect_events(watcher, terminal_for_all({command["command_id"]}), timeout=60)
    chain = _chain(events, command["command_id"])
    assert chain[0]["type"] == "created" and chain[-1]["status"] == "completed"
    assert chain[-1]["provider_status"] == "40"
    _assert_one_id_per_transition(chain)
    orders = stack.sandbox.orders_for(_ref(command["command_id"]))
    assert len(orders) == 1
    assert chain[-1]["order_id"] == orders[0]["serial"]
    assert chain[-1]["order"]["cost_sun"].isdigit()


def test_same_command_three_times_makes_one_partner_order(stack: Stack) -> None:
    stack.declare_queues()
    zt, ix = zerotrace_command(), itrx_command()
    with stack.producer() as producer:
        for _ in range(3):
            producer.create_order(zt)
            producer.create_order(ix)
    with stack.watcher() as watcher:
        stack.start_worker(threads=8)
        stack.start_scheduler()
        events = collect_events(watcher, terminal_for_all({zt["command_id"], ix["command_id"]}), timeout=60)
    for command in (zt, ix):
        assert len(stack.sandbox.orders_for(_ref(command["command_id"]))) == 1
        created = [e for e in _chain(events, command["command_id"]) if e["type"] == "created"]
        assert len(created) == 1


def test_command_id_reused_with_other_params_is_rejected(stack: Stack) -> None:
    stack.start_worker()
    stack.start_scheduler()
    first = zerotrace_command()
    second = {**first, "params": {**first["params"], "amount": "0.02"}}
    with stack.watcher() as watcher, stack.producer() as producer:
        producer.create_order(first)
        collect_events(watcher, lambda ev: any(e["type"] == "created" for e in ev), timeout=30)
        producer.create_order(second)
        events = collect_events(watcher, lambda ev: any(e["type"] == "rejected" for e in ev), timeout=30)
    rejected = [e for e in events if e["type"] == "rejected"]
    assert rejected[0]["error"]["code"] == "command_id_conflict"
    assert len(stack.sandbox.orders_for(_ref(first["command_id"]))) == 1


def test_lost_create_response_makes_one_order_tracked_by_webhooks(stack: Stack) -> None:
    """0trace commits the order but the answer never arrives: the retry (same Idempotency-Key) gets the
    same order with token null, so the order is untrackable by polling and completes through webhooks."""
    stack.start_webhooks()
    stack.sandbox.control(
        "webhooks", {"zerotrace_webhook_url": f"http://127.0.0.1:{stack.webhooks_port}/webhooks/0trace"}
    )
    stack.sandbox.control("faults", {"endpoint": "0trace.create", "kind": "lose_response", "times": 1})
    try:
        stack.start_worker()
        stack.start_scheduler()
        command = zerotrace_command()
        with stack.watcher() as watcher, stack.producer() as producer:
            producer.create_order(command)
            events = collect_events(watcher, terminal_for_all({command["command_id"]}), timeout=90)
    finally:
        stack.sandbox.control("webhooks", {"zerotrace_webhook_url": None})
    chain = _chain(events, command["command_id"])
    assert chain[0]["type"] == "untrackable"
    assert chain[-1]["status"] == "completed"
    assert {e["source"] for e in chain[1:]} == {"webhook"}
    _assert_one_id_per_transition(chain)
    assert len(stack.sandbox.orders_for(_ref(command["command_id"]))) == 1
    record = stack.ledger().get(command["command_id"])
    assert record is not None and record.untrackable and record.sealed_token is None


def test_itrx_lost_response_is_in_doubt_until_its_callback_resolves_it(stack: Stack) -> None:
    """itrx has no idempotency: a create whose answer was lost is never sent again. The order's own
    signed callback (carrying our out_trade_no and its serial) resolves it."""
    stack.start_webhooks()
    stack.sandbox.control("faults", {"endpoint": "itrx.order", "kind": "lose_response", "times": 1})
    stack.start_worker()
    stack.start_scheduler()
    command = itrx_command()
    with stack.watcher() as watcher, stack.producer() as producer:
        producer.create_order(command)
        events = collect_events(
            watcher,
            lambda ev: any(
                e["status"] == "completed" for e in ev if e["command_id"] == command["command_id"]
            ),
            90,
        )
    chain = _chain(events, command["command_id"])
    assert chain[0]["type"] == "in_doubt" and chain[0]["status"] == "in_doubt"
    assert chain[-1]["status"] == "completed" and chain[-1]["source"] == "webhook"
    _assert_one_id_per_transition(chain)
    orders = stack.sandbox.orders_for(_ref(command["command_id"]))
    assert len(orders) == 1, "the in-doubt create must never be sent twice"
    assert chain[-1]["order_id"] == orders[0]["serial"]
    assert "order_worker_in_doubt_total" in stack.metrics(stack.processes[1])
