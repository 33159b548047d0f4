"""Scenario: every 0trace push arrives before the create's answer is committed, and no order can be polled.

The sandbox answers every create as an idempotent replay does (``token: null``), so each order is
``untrackable``: nothing will ever poll it, and its pushes are all there is. The sandbox moves each order
NEW -> PENDING -> EXCHANGE -> DONE within milliseconds of its create and pushes each change at once, while
the worker's ``after_partner`` fault point holds every create's answer two seconds before it is recorded.
So every push names an order the ledger does not know yet. The receiver holds them, and the transaction
that records the create applies them.

Criteria: every order completed, each one untrackable, zero polls at the sandbox, pushes arrived before
their order was recorded (answered 202: the race really happened), nothing left held, no lost or duplicate event, no duplicate partner order, no
canary anywhere. With holding off (``ORDER_WORKER_HELD_PUSHES_MAX=0``) the same run leaves every order
awaiting_deposit forever: the early pushes are answered ``unknown_order`` and lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.reliability.audit import await_settled_and_drained, completed, full_audit
from tests.reliability.rig import RelStack, Sizes, Verdict, sandbox_requests
from tests.support.events import create_bodies, publish_reliably, witness
from tests.support.ledger_views import held_push_count, order_rows
from tests.support.partners import zerotrace_command
from tests.support.stack import Sandbox

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(900)]

COMMIT_DELAY = 2.0
"""Seconds the worker holds each create's answer before recording it (the ``after_partner`` point)."""


@pytest.mark.scenario("early_pushes")
@pytest.mark.parametrize("ledger_url", ["sqlite", "postgres"], indirect=True)
def test_pushes_before_the_create_commits_complete_untrackable_orders(
    make_sandbox: Callable[..., Sandbox],
    make_stack: Callable[..., RelStack],
    sizes: Sizes,
    seed: int,
    verdict: Verdict,
) -> None:
    sandbox = make_sandbox(
        extra={
            "ORDER_WORKER_SANDBOX_ZEROTRACE_TOKEN_WITHHELD": "true",
            # 0.5 sandbox seconds per step at speed 100: the whole order lives ~15 ms after its create
            "ORDER_WORKER_SANDBOX_ZEROTRACE_DEPOSIT_AFTER": "0.5",
            "ORDER_WORKER_SANDBOX_ZEROTRACE_EXCHANGE_AFTER": "0.5",
            "ORDER_WORKER_SANDBOX_ZEROTRACE_DONE_AFTER": "0.5",
        }
    )
    stack = make_stack(sandbox)
    sandbox.control(
        "webhooks",
        {
            "zerotrace_webhook_url": f"http://127.0.0.1:{stack.webhooks_port}/webhooks/0trace",
            "zerotrace_webhook_schedule": [1, 2, 5, 10, 30],
        },
    )
    commands = [zerotrace_command(f"ep-{seed}-{i:05d}") for i in range(sizes.early_push_commands)]
    ids = [c["command_id"] for c in commands]
    stack.declare_queues()
    stack.start_webhooks()
    before = sandbox_requests(sandbox)
    with witness(stack.broker_url, stack.exchange) as events:
        publish_reliably(stack.broker_url, stack.create_queue, create_bodies(stack.create_queue, commands))
        stack.start(
            "worker",
            "--processes",
            "1",
            "--threads",
            "8",
            ORDER_WORKER_FAILPOINTS=f"after_partner=sleep:{COMMIT_DELAY}",
        )
        stack.start("scheduler")
        # 8 threads, 2 s per create: about 25 s for 100 orders; generous for a loaded machine.
        deadline = time.monotonic() + 120 + COMMIT_DELAY * len(commands) / 8 * 3

        # the audit below judges the outcome
        await_settled_and_drained(
            stack, events, ids, deadline, settled=completed, tick=lambda: time.sleep(0.5)
        )
        requests = sandbox_requests(sandbox) - before
        rows = order_rows(stack.ledger_url)
        answers = [
            attempt.get("http_status")
            for delivery in sandbox.control("deliveries?provider=0trace", None) or []
            for attempt in delivery.get("attempts", [])
        ]
        held_left = held_push_count(stack.ledger_url)
        verdict.count(
            commit_delay_seconds=COMMIT_DELAY,
            completed=sum(1 for c in ids if rows.get(c, {}).get("status") == "completed"),
            polls=requests.get("0trace.order", 0),
            creates=requests.get("0trace.create", 0),
            pushes_sent=len(answers),
            pushes_answered={str(code): answers.count(code) for code in sorted(set(answers), key=str)},
            held_left=held_left,
        )
        counts = full_audit(verdict, stack, sandbox, events, ids)
    verdict.check("every_order_completed", all(rows.get(c, {}).get("status") == "completed" for c in ids))
    verdict.check("every_order_untrackable", counts["untrackable"] == len(ids))
    verdict.check("no_polls", requests.get("0trace.order", 0) == 0)
    # 202: held (or, with holding off, unknown_order); an applied push is answered 200
    verdict.check("pushes_arrived_before_their_order", answers.count(202) > 0)
    verdict.check("nothing_left_held", held_left == 0)
    verdict.check("commands_at_least_100", len(ids) >= 100)
    verdict.emit()
