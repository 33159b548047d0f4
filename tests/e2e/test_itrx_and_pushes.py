"""itrx's money rules (balance, in_doubt, operator resolution) and push-driven tracking, end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.partners import itrx_command, zerotrace_command
from tests.support.stack import Sandbox, Stack, collect_events, spawn_sandbox, terminal_for_all, wait_until
from worker.pipeline import partner_ref

SQLITE = pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)


def _ref(command: dict[str, Any]) -> str:
    return partner_ref("order-worker", command["command_id"])


def _chain(events: list[dict[str, Any]], command: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in events if e["command_id"] == command["command_id"]]


def _reached(command: dict[str, Any], status: str) -> Any:
    return lambda events: any(e["status"] == status for e in _chain(events, command))


@pytest.fixture
def poor_sandbox(log_dir: Path) -> Iterator[Sandbox]:
    """An itrx account holding 1,000 sun: not enough for any energy order."""
    box = spawn_sandbox(log_dir, extra=["--set", "itrx_balance_sun=1000"])
    yield box
    box.process.stop()


@SQLITE
def test_itrx_order_the_balance_cannot_cover_fails_without_a_create_call(
    poor_sandbox: Sandbox, ledger_url: str, log_dir: Path
) -> None:
    stack = Stack(poor_sandbox, ledger_url, log_dir)
    try:
        worker = stack.start_worker()
        stack.start_scheduler()
        command = itrx_command()
        with stack.watcher() as watcher, stack.producer() as producer:
            producer.create_order(command)
            events = collect_events(watcher, terminal_for_all({command["command_id"]}), timeout=60)
        (failed,) = _chain(events, command)
        assert failed["type"] == "failed" and failed["error"]["code"] == "insufficient_balance"
        assert "1000 sun" in failed["error"]["reason"]
        assert poor_sandbox.stats()["requests"].get("itrx.order", 0) == 0
        assert "order_worker_itrx_balance_sun 1000.0" in stack.metrics(worker)
    finally:
        stack.stop()


@SQLITE
def test_itrx_create_timeout_is_in_doubt_and_its_callback_resolves_it(stack: Stack) -> None:
    """The order is held at status 20 (manual scenario) so its callback cannot beat the timeout."""
    stack.start_webhooks()
    stack.sandbox.control("config", {"itrx_scenario": "manual"})
    stack.sandbox.control(
        "faults", {"endpoint": "itrx.order", "kind": "latency_after", "latency_ms": 2500, "times": 1}
    )
    try:
        stack.start_worker(ORDER_WORKER_HTTP_READ_TIMEOUT="1")
        stack.start_scheduler()
        command = itrx_command()
        with stack.watcher() as watcher, stack.producer() as producer:
            producer.create_order(command)
            events = collect_events(watcher, _reached(command, "in_doubt"), timeout=60)
            (partner_order,) = stack.sandbox.orders_for(_ref(command))
            stack.sandbox.control(
                "drive", {"provider": "itrx", "serial": partner_order["serial"], "status": 40}
            )
            events += collect_events(watcher, _reached(command, "completed"), timeout=60)
    finally:
        stack.sandbox.control("config", {"itrx_scenario": "auto"})
    chain = _chain(events, command)
    assert chain[0]["type"] == "in_doubt", chain[0]
    assert chain[0]["error"]["code"] == "timeout"
    assert chain[-1]["source"] == "webhook"
    assert len(stack.sandbox.orders_for(_ref(command))) == 1


def _resolve(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", "resolve", *args],
        env=stack.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@SQLITE
def test_operator_resolves_in_doubt_orders_by_serial_or_by_abandoning(stack: Stack) -> None:
    """Without a callback nothing automatic may touch an in_doubt order; the operator's decision is
    recorded as an event with source reconcile, and a found order is tracked to the end again."""
    stack.sandbox.control("faults", {"endpoint": "itrx.order", "kind": "lose_response", "times": 1})
    stack.start_worker()
    stack.start_scheduler()
    reached_partner = itrx_command()
    with stack.watcher() as watcher, stack.producer() as producer:
        producer.create_order(reached_partner)
        events = collect_events(watcher, _reached(reached_partner, "in_doubt"), timeout=60)
        stack.sandbox.control("faults", {"endpoint": "itrx.order", "kind": "reset", "times": 1})
        never_arrived = itrx_command()
        producer.create_order(never_arrived)
        events += collect_events(watcher, _reached(never_arrived, "in_doubt"), timeout=60)

        refused = _resolve(stack, reached_partner["command_id"])
        assert refused.returncode != 0 and "--serial" in refused.stderr
        (partner_order,) = stack.sandbox.orders_for(_ref(reached_partner))
        found = _resolve(stack, reached_partner["command_id"], "--serial", partner_order["serial"])
        assert found.returncode == 0, found.stderr
        abandoned = _resolve(stack, never_arrived["command_id"], "--abandon", "--note", "ticket OPS-7")
        assert abandoned.returncode == 0, abandoned.stderr
        events += collect_events(
            watcher,
            lambda ev: _reached(reached_partner, "completed")(ev) and _reached(never_arrived, "failed")(ev),
            timeout=60,
        )
    resolved = [e for e in _chain(events, reached_partner) if e["source"] == "reconcile"]
    assert resolved and resolved[0]["previous_status"] == "in_doubt"
    assert resolved[0]["order_id"] == partner_order["serial"]
    (doubt, gave_up) = _chain(events, never_arrived)
    assert doubt["type"] == "in_doubt" and doubt["error"]["code"] == "connection_reset"
    assert (gave_up["type"], gave_up["source"], gave_up["error"]["code"]) == (
        "failed",
        "reconcile",
        "abandoned",
    )
    assert gave_up["error"]["reason"] == "ticket OPS-7"
    assert stack.sandbox.orders_for(_ref(never_arrived)) == []
    again = _resolve(stack, never_arrived["command_id"], "--abandon")
    assert again.returncode == 1 and "not in_doubt" in again.stderr


@pytest.mark.parametrize("ledger_url", ["sqlite", "postgres"], indirect=True)
def test_pushes_alone_drive_orders_to_completed_with_polling_disabled(stack: Stack) -> None:
    webhook_url = f"http://127.0.0.1:{stack.webhooks_port}/webhooks/0trace"
    stack.settings["ORDER_WORKER_POLLING_ENABLED"] = "false"
    stack.start_webhooks()
    stack.sandbox.control("webhooks", {"zerotrace_webhook_url": webhook_url})
    try:
        polls_before = stack.sandbox.stats()["requests"].get("0trace.order", 0)
        stack.start_worker()
        stack.start_scheduler()
        commands = [zerotrace_command(), itrx_command()]
        with stack.watcher() as watcher, stack.producer() as producer:
            for command in commands:
                producer.create_order(command)
            events = collect_events(
                watcher, terminal_for_all({c["command_id"] for c in commands}), timeout=90
            )
    finally:
        stack.sandbox.control("webhooks", {"zerotrace_webhook_url": None})
    for command in commands:
        chain = _chain(events, command)
        assert chain[-1]["status"] == "completed"
        assert {e["source"] for e in chain[1:]} == {"webhook"}
    assert stack.sandbox.stats()["requests"].get("0trace.order", 0) == polls_before
    record = stack.ledger().get(commands[0]["command_id"])
    assert record is not None and record.next_action_at is None


def test_push_and_polling_together_publish_each_transition_once(stack: Stack) -> None:
    """Webhooks and 0.5 s polls race for every transition; consumers must see each exactly once."""
    webhook_url = f"http://127.0.0.1:{stack.webhooks_port}/webhooks/0trace"
    stack.start_webhooks()
    stack.sandbox.control("webhooks", {"zerotrace_webhook_url": webhook_url})
    try:
        stack.start_worker()
        stack.start_scheduler()
        commands = [zerotrace_command() for _ in range(6)]
        with stack.watcher() as watcher, stack.producer() as producer:
            for command in commands:
                producer.create_order(command)
            events = collect_events(
                watcher, terminal_for_all({c["command_id"] for c in commands}), timeout=90
            )
    finally:
        stack.sandbox.control("webhooks", {"zerotrace_webhook_url": None})
    for command in commands:
        statuses = [e["status"] for e in _chain(events, command)]
        assert statuses == ["awaiting_deposit", "confirming", "processing", "completed"], statuses
    deliveries = wait_until(lambda: stack.sandbox.stats()["webhooks"]["delivered"], 10, "webhook deliveries")
    print(
        json.dumps({"test": "push_and_poll_race", "orders": len(commands), "webhooks_delivered": deliveries})
    )
