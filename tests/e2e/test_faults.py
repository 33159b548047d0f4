"""Bad input: rejected with reasons, never sent to a partner, and the worker keeps going.

Crashes (SIGKILL at every step of a create and a poll) are the reliability tier's kill-9 scenario
(``tests/reliability/test_kill9.py``)."""

from __future__ import annotations

import json
import os
import random
from typing import Any

import pytest

from tests.support.partners import itrx_command, zerotrace_command
from tests.support.stack import Stack, collect_events
from worker.bus.envelope import envelope
from worker.pipeline import partner_ref
from worker.status import TERMINAL

SEED = int(os.environ.get("ORDER_WORKER_TEST_SEED", "0")) or random.randrange(1, 2**31)


def _malformed_bodies(queue: str, count: int) -> list[bytes]:
    """A spread of everything a producer can get wrong, each body distinct."""
    rng = random.Random(SEED)
    bodies: list[bytes] = []
    for index in range(count):
        good = zerotrace_command(f"bad-{index:06d}-{rng.randrange(10**9)}")
        kind = index % 10
        if kind == 0:
            bodies.append(b"not json at all %d" % index)
        elif kind == 1:
            bodies.append(b"\xff\xfe\x00" + index.to_bytes(4, "big"))
        elif kind == 2:
            bodies.append(json.dumps([index, "a list, not an envelope"]).encode())
        elif kind == 3:
            bodies.append(envelope(queue, "create_order", {**good, "provider": "binance"}))
        elif kind == 4:
            bodies.append(
                envelope(queue, "create_order", {**good, "params": {**good["params"], "amount": "-5"}})
            )
        elif kind == 5:
            bodies.append(
                envelope(queue, "create_order", {**good, "params": {**good["params"], "toAddress": "bad"}})
            )
        elif kind == 6:
            bodies.append(envelope(queue, "create_order", {**good, "command_id": "x"}))
        elif kind == 7:
            bodies.append(envelope(queue, "create_order", {**good, "padding": "z" * 20000}))
        elif kind == 8:
            bodies.append(envelope(queue, "drop_all_orders", {"command_id": good["command_id"]}))
        else:
            bodies.append(
                envelope(queue, "create_order", {**good, "params": {**good["params"], "amount": 1}})
            )
    return bodies


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_malformed_commands_are_rejected_once_and_valid_ones_complete(stack: Stack) -> None:
    print(json.dumps({"test": "malformed_flood", "seed": SEED}))
    bad = _malformed_bodies(stack.create_queue, 1000)
    good = [zerotrace_command() if i % 2 else itrx_command() for i in range(20)]
    creates_before = dict(stack.sandbox.stats()["requests"])
    stack.declare_queues()
    worker = stack.start_worker(threads=8)
    stack.start_scheduler()
    mixed: list[tuple[str, Any]] = [("bad", body) for body in bad] + [("good", command) for command in good]
    random.Random(SEED).shuffle(mixed)
    good_ids = {c["command_id"] for c in good}

    def done(events: list[dict[str, Any]]) -> bool:
        rejected = sum(1 for e in events if e["type"] == "rejected")
        finished = {e["command_id"] for e in events if e.get("status") in TERMINAL}
        return rejected >= len(bad) and good_ids <= finished

    with stack.watcher() as watcher, stack.producer() as producer:
        for kind, item in mixed:
            if kind == "bad":
                producer.publish_raw(stack.create_queue, item)
            else:
                producer.create_order(item)
        events = collect_events(watcher, done, timeout=180)

    rejected = [e for e in events if e["type"] == "rejected"]
    assert len(rejected) == len(bad)
    assert all(e["error"]["code"] and e["error"]["reason"] for e in rejected)
    codes = {e["error"]["code"] for e in rejected}
    assert {"not_json", "bad_envelope", "unknown_actor", "oversized", "invalid_command"} <= codes
    completed = {e["command_id"] for e in events if e.get("status") == "completed"}
    assert completed == good_ids
    # no partner call for any malformed command: creates seen by the sandbox = valid commands
    after = stack.sandbox.stats()["requests"]
    zt_creates = after.get("0trace.create", 0) - creates_before.get("0trace.create", 0)
    ix_creates = after.get("itrx.order", 0) - creates_before.get("itrx.order", 0)
    assert (zt_creates, ix_creates) == (10, 10)
    assert len(stack.ledger().dead_letters(2000)) == len(bad)
    assert worker.alive and "exited unexpectedly" not in worker.output()
    metrics = stack.metrics(worker)
    assert 'order_worker_rejections_total{reason="not_json"}' in metrics


@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_envelope_options_cannot_steer_the_worker(stack: Stack) -> None:
    """Dramatiq takes its policy from a message's options before the actor's. A producer's ``max_age`` would
    dead-letter the command unprocessed and without an event; ``time_limit`` would interrupt the create
    after the partner answered (the retry's replay carries no token: an untrackable order); a ``throws``
    that names no exception class would then make Dramatiq's error handling raise, ack the command and end
    the worker thread. The worker drops such options; a documented retry setting out of range is refused
    with a reason, under the command's id; every other command completes with one partner order and its
    token."""
    stack.sandbox.control(
        "faults", {"endpoint": "0trace.create", "kind": "latency", "latency_ms": 1500, "times": 2}
    )
    aged, timed, refused = zerotrace_command(), zerotrace_command(), zerotrace_command()
    hostile = {
        aged["command_id"]: {
            "max_age": 1,
            "notify_shutdown": True,
            "on_retry_exhausted": "poll_order",
            "broker_priority": "high",
            "on_success": "create_order",
        },
        timed["command_id"]: {"time_limit": 1, "throws": "ValueError", "max_retries": 2},
        refused["command_id"]: {"max_retries": "many"},
    }
    stack.declare_queues()
    worker = stack.start_worker(threads=2)
    stack.start_scheduler()
    created_ids = {aged["command_id"], timed["command_id"]}

    def done(events: list[dict[str, Any]]) -> bool:
        created = {e["command_id"] for e in events if e["type"] == "created"}
        return created_ids <= created and any(e["type"] == "rejected" for e in events)

    with stack.watcher() as watcher, stack.producer() as producer:
        for command in (aged, timed, refused):
            options = hostile[command["command_id"]]
            producer.publish_raw(
                stack.create_queue, envelope(stack.create_queue, "create_order", command, options=options)
            )
        events = collect_events(watcher, done, timeout=60)

    rejected = [e for e in events if e["type"] == "rejected"]
    assert [(e["command_id"], e["error"]["code"]) for e in rejected] == [
        (refused["command_id"], "bad_envelope")
    ]
    assert rejected[0]["error"]["reason"] == "options.max_retries must be an integer from 0 to 20"
    assert not stack.sandbox.orders_for(partner_ref("order-worker", refused["command_id"]))
    for command_id in created_ids:
        assert len(stack.sandbox.orders_for(partner_ref("order-worker", command_id))) == 1
        record = stack.ledger().get(command_id)
        assert record is not None and record.sealed_token is not None and not record.untrackable
    assert not [e for e in events if e["type"] == "untrackable"]
    assert worker.alive
    assert "Failed to process message" not in worker.output()
    assert "Unexpected failure" not in worker.output()
