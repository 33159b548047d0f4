"""The client package against a real stack (sandbox, worker, scheduler with the outbox relay): commands
published with ``CommandProducer``, events consumed with ``EventConsumer`` in a process of its own.

The consumer's handler fails on some events, and the consumer is killed with SIGKILL twice while inside
its handler, with up to ``prefetch`` events unacknowledged. Counted from the ledger's outbox (every event
the service committed), each event must reach the handler at least once, and finish exactly once with the
consumer's deduplication on ``event_id`` (a store that survives the restarts).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pika
import pytest
from order_worker_client import CommandProducer, EventConsumer

from tests.support.ledger_views import is_settled, order_rows, outbox_ids
from tests.support.partners import commands_mix
from tests.support.stack import Stack, wait_until

ORDERS = 10
REPO = Path(__file__).resolve().parents[2]


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def _spawn(stack: Stack, queue: str, directory: Path, hang_at: int, log: Path) -> subprocess.Popen[bytes]:
    argv = [
        sys.executable,
        "-m",
        "tests.client.consumer_child",
        "--broker",
        stack.broker_url,
        "--exchange",
        stack.exchange,
        "--queue",
        queue,
        "--dir",
        str(directory),
        "--hang-at",
        str(hang_at),
    ]
    with log.open("ab") as output:
        return subprocess.Popen(argv, cwd=REPO, stdout=output, stderr=subprocess.STDOUT)


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(10)


@pytest.mark.rabbitmq
@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_no_event_is_lost_when_the_consumer_fails_and_is_killed_mid_handler(
    stack: Stack, tmp_path: Path, log_dir: Path
) -> None:
    started = time.monotonic()
    stack.start_worker()
    stack.start_scheduler()
    queue = f"{stack.exchange}.client-consumer"
    # Bound before any command is sent, so every event the relay publishes waits in the queue.
    binder = EventConsumer(
        stack.broker_url, queue, lambda event: None, exchange=stack.exchange, max_deliveries=10
    )
    connection = pika.BlockingConnection(pika.URLParameters(stack.broker_url))
    binder.declare(connection.channel())
    connection.close()

    seed = random.randrange(1_000_000)
    commands = commands_mix(ORDERS, seed, "cc")
    with CommandProducer(
        stack.broker_url, stack.create_queue, stack.poll_queue, stack.actions_queue
    ) as producer:
        for command in commands:
            producer.create_order(command)

    log = log_dir / f"client-consumer-{stack.uid}.log"
    children: list[subprocess.Popen[bytes]] = []
    hung: list[str] = []
    try:
        for hang_at in (4, 7):
            child = _spawn(stack, queue, tmp_path, hang_at, log)
            children.append(child)
            before = len(hung)
            wait_until(
                lambda child=child, before=before: (
                    len(_lines(tmp_path / "hung")) > before or child.poll() is not None
                ),
                180,
                f"the consumer inside its call #{hang_at}",
            )
            assert child.poll() is None, log.read_text()
            os.kill(child.pid, signal.SIGKILL)
            child.wait(10)
            hung = _lines(tmp_path / "hung")
        last = _spawn(stack, queue, tmp_path, 0, log)
        children.append(last)

        command_ids = {str(c["command_id"]) for c in commands}

        def service_done() -> bool:
            rows = order_rows(stack.ledger_url)
            return all(is_settled(rows.get(command_id)) for command_id in command_ids) and all(
                outbox_ids(stack.ledger_url).values()
            )

        wait_until(service_done, 240, "every order settled and its events published")
        # The service is done; the consumer gets a deadline to finish, and the verdict says what it did.
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and last.poll() is None:
            if set(outbox_ids(stack.ledger_url)) <= set(_lines(tmp_path / "done")):
                break
            time.sleep(0.2)
        assert last.poll() is None, log.read_text()
        last.send_signal(signal.SIGTERM)
        last.wait(30)
    finally:
        for child in children:
            _kill(child)
        with contextlib.suppress(Exception):
            connection = pika.BlockingConnection(pika.URLParameters(stack.broker_url))
            channel = connection.channel()
            channel.queue_delete(queue)
            channel.queue_delete(binder.dead_letter_queue)
            connection.close()

    outbox = outbox_ids(stack.ledger_url)
    calls, done = Counter(_lines(tmp_path / "calls")), Counter(_lines(tmp_path / "done"))
    verdict = {
        "orders": ORDERS,
        "seed": seed,
        "events_committed": len(outbox),
        "handler_calls": sum(calls.values()),
        "events_called_more_than_once": sum(1 for n in calls.values() if n > 1),
        "missing": len(set(outbox) - set(calls)),
        "finished_not_once": sum(1 for event_id in outbox if done[event_id] != 1),
        "unknown_finished": len(set(done) - set(outbox)),
        "killed_in_handler": len(hung),
        "seconds": round(time.monotonic() - started, 1),
    }
    print(json.dumps(verdict))
    assert outbox and all(outbox.values())
    assert (
        verdict["missing"] == 0 and verdict["finished_not_once"] == 0 and verdict["unknown_finished"] == 0
    ), verdict
    # the kills happened inside the handler, and those events came back and were finished
    assert len(hung) == 2 and all(calls[event_id] >= 2 and done[event_id] == 1 for event_id in hung), verdict
