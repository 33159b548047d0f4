"""The operator's read commands against a real deployment: orders listed by state, one order shown, stored
events sent again with their original ids, and one clear line where the ledger or broker is not there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pika

from tests.support.partners import itrx_command, zerotrace_command
from tests.support.stack import Stack, collect_events
from worker.pipeline import partner_ref

CLI = [sys.executable, "-m", "worker.cli"]


def cli(stack: Stack | None, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``order-worker ARGS`` as an operator runs it: the stack's settings, or only ``env`` without one."""
    if stack is not None:
        chosen = stack.env(**env)
    else:
        chosen = {k: v for k, v in os.environ.items() if not k.startswith("ORDER_WORKER_")} | env
    return subprocess.run([*CLI, *args], env=chosen, capture_output=True, text=True, timeout=60, check=False)


def _created(stack: Stack, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Submit and wait for each order's ``created``; the scheduler runs only its outbox relay, so nothing
    polls the orders any further."""
    stack.start_worker()
    stack.start_scheduler("--no-scheduler")
    ids = {c["command_id"] for c in commands}
    with stack.watcher() as watcher, stack.producer() as producer:
        for command in commands:
            producer.create_order(command)
        return collect_events(
            watcher, lambda seen: ids <= {e["command_id"] for e in seen if e["type"] == "created"}, 60
        )


def test_orders_lists_by_state_and_status_never_shows_a_token(stack: Stack) -> None:
    zerotrace, itrx = zerotrace_command(), itrx_command()
    _created(stack, [zerotrace, itrx])

    listed = cli(stack, "orders", "--status", "awaiting_deposit", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [row["command_id"] for row in rows] == [zerotrace["command_id"]]
    assert rows[0]["token_stored"] is True and "sealed_token" not in rows[0]

    by_partner = cli(stack, "orders", "--provider", "itrx", "--json")
    assert [json.loads(line)["command_id"] for line in by_partner.stdout.splitlines()] == [itrx["command_id"]]
    assert cli(stack, "orders", "--status", "in_doubt", "--json").stdout == ""
    assert cli(stack, "orders", "--older-than", "1h", "--json").stdout == ""

    paged = cli(stack, "orders", "--limit", "1")
    assert paged.returncode == 0 and "more: --after " in paged.stderr
    cursor = paged.stderr.split("--after ", 1)[1].strip()
    rest = cli(stack, "orders", "--after", cursor, "--json")
    assert len(rest.stdout.splitlines()) == 1 and rest.stdout.splitlines()[0] not in paged.stdout

    shown = cli(stack, "status", zerotrace["command_id"])
    assert shown.returncode == 0 and "awaiting_deposit" in shown.stdout
    [partner_order] = stack.sandbox.orders_for(partner_ref("order-worker", zerotrace["command_id"]))
    token = partner_order.get("token")
    assert token is None or token not in shown.stdout + listed.stdout


def test_republish_sends_stored_events_again_with_their_ids(stack: Stack) -> None:
    command = zerotrace_command()
    events = _created(stack, [command])
    original = [e for e in events if e["command_id"] == command["command_id"]]
    queue = f"{stack.exchange}.replay"
    with pika.BlockingConnection(pika.URLParameters(stack.broker_url)) as connection:
        channel = connection.channel()
        channel.queue_declare(queue, auto_delete=False)
        try:
            dry = cli(
                stack, "republish", "--command-id", command["command_id"], "--to-queue", queue, "--dry-run"
            )
            assert json.loads(dry.stdout)["events"] == len(original) and json.loads(dry.stdout)["sent"] == 0

            sent = cli(stack, "republish", "--command-id", command["command_id"], "--to-queue", queue)
            assert sent.returncode == 0, sent.stderr
            assert json.loads(sent.stdout) == {
                "events": len(original),
                "to": f"queue {queue}",
                "sent": len(original),
                "refused": 0,
            }
            replayed = []
            while (message := channel.basic_get(queue, auto_ack=True))[0] is not None:
                _method, properties, body = message
                replayed.append((properties.message_id, json.loads(body)))
            assert [(e["event_id"], e) for e in original] == replayed

            missing = cli(stack, "republish", "--since", "1h", "--to-queue", f"{queue}.absent")
            assert missing.returncode == 1 and "does queue" in missing.stderr
        finally:
            channel.queue_delete(queue)
    nothing = cli(stack, "republish")
    assert nothing.returncode == 2 and "--command-id, --since or --status" in nothing.stderr


def test_read_commands_refuse_an_unmigrated_ledger_without_creating_it(tmp_path: Path) -> None:
    path = tmp_path / "typo.db"
    for command in (["status", "cmd-x"], ["orders"], ["dead-letters"], ["republish", "--since", "1h"]):
        done = cli(None, *command, ORDER_WORKER_LEDGER_URL=f"sqlite:///{path}")
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and "order-worker migrate" in done.stderr
        assert not path.exists()
    unreachable = cli(None, "events", ORDER_WORKER_BROKER_URL="amqp://guest:guest@127.0.0.1:1/%2F")
    assert unreachable.returncode == 2 and unreachable.stderr.count("\n") == 1
    assert "cannot reach RabbitMQ at 127.0.0.1:1" in unreachable.stderr
    version = cli(None, "--version")
    assert version.returncode == 0 and version.stdout.startswith("order-worker ")
