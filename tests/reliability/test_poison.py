"""Scenario 7: a poison command kills the worker on every delivery; it is dead-lettered, the rest completes.

The poison is an ordinary-looking create command whose id contains ``poison``; the failpoint
``on_message@poison`` SIGKILLs whichever worker process receives it, before anything else happens (the
shape of a message that crashes a C extension or exhausts memory: no exception ever reaches Dramatiq, so
only the broker can stop it). It is published in the middle of a batch of normal commands, so it shares
prefetch windows with them and every crash hands their unacked deliveries back too. The test restarts the
worker whenever it dies, as Kubernetes would.

The broker's delivery limit stops the poison, but every crash also returns the deliveries the dying
worker had prefetched, so innocent commands reach the limit beside it (this scenario found that: 11 of
40 were dead-lettered, 6 of them lost without a trace). The scheduler's dead-letter rescuer now sends
every dead-lettered command again, alone; one that dies again is the poison and gets a durable answer.

Criteria: the poison crashed the worker at least the delivery limit times (so the broker, not luck,
stopped it) and at most twice that plus two (first round, rescue round); it ends with a dead-letter record
and a ``rejected`` event (code ``poison``); every other command completes and none is rejected; the
dead-letter queues end empty; the worker then stays up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.reliability.audit import (
    event_audit,
    failpoints_fired,
    judge_core,
    partner_audit,
    security_audit,
    settlement,
)
from tests.reliability.rig import RelStack, Sizes, Supervisor, Verdict
from tests.support.events import create_bodies, publish_reliably, witness
from tests.support.ledger_views import NAMESPACE, order_rows, partner_orders_by_ref
from tests.support.partners import commands_mix, zerotrace_command
from tests.support.stack import Sandbox
from worker.pipeline import partner_ref

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(900)]

DELIVERY_LIMIT = 5


@pytest.mark.scenario("poison_message")
@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_poison_command_is_dead_lettered_and_everything_else_completes(
    make_sandbox: Callable[..., Sandbox],
    make_stack: Callable[..., RelStack],
    sizes: Sizes,
    seed: int,
    verdict: Verdict,
) -> None:
    sandbox = make_sandbox()
    stack = make_stack(sandbox, settings={"ORDER_WORKER_DELIVERY_LIMIT": str(DELIVERY_LIMIT)})
    good = commands_mix(sizes.poison_commands, seed, "po")
    poison = zerotrace_command(f"poison-{seed}")
    batch = [*good[: len(good) // 2], poison, *good[len(good) // 2 :]]
    good_ids = [c["command_id"] for c in good]
    stack.declare_queues()
    with witness(stack.broker_url, stack.exchange) as events:
        publish_reliably(stack.broker_url, stack.create_queue, create_bodies(stack.create_queue, batch))
        crashy = {"ORDER_WORKER_FAILPOINTS": "on_message@poison=1"}
        worker = Supervisor(stack, "worker", "--processes", "1", "--threads", "8", **crashy)
        stack.start_scheduler()
        stack.start_webhooks()  # an itrx create cut short by a crash is in_doubt until its callback
        deadline = time.monotonic() + 240 + len(good)

        def poison_record() -> dict[str, Any] | None:
            records = [
                r for r in stack.ledger().dead_letters(1000) if r.get("command_id") == poison["command_id"]
            ]
            return records[0] if records else None

        def finished() -> bool:
            rows = order_rows(stack.ledger_url)
            done = all(rows.get(c, {}).get("status") in ("completed", "in_doubt") for c in good_ids)
            return done and poison_record() is not None

        while not finished() and time.monotonic() < deadline:
            worker.ensure()
            time.sleep(0.2)
        restarts_at_finish = worker.restarts
        # the worker must now stay up: nothing else is poisoned
        steady_until = time.monotonic() + 5
        while time.monotonic() < steady_until:
            worker.ensure()
            time.sleep(0.25)
        stayed_up = worker.process.alive and worker.restarts == restarts_at_finish
        depths = stack.queue_depths()
        record = poison_record()
        rejected = [e for e in events.snapshot() if e["type"] == "rejected"]
        fired = failpoints_fired(p.log_path for p in stack.processes)
        scheduler_log = "".join(p.output() for p in stack.processes if p.name == "scheduler")
        counts = {
            **settlement(stack, good_ids),
            **partner_audit(sandbox, good_ids),
            **event_audit(stack, events, good_ids),
            **security_audit(stack, events, good_ids),
        }
    verdict.count(
        delivery_limit=DELIVERY_LIMIT,
        poison_deliveries=fired.get("on_message", 0),
        worker_restarts=worker.restarts,
        restarts_because_hung=worker.liveness_restarts,
        rescued_sends=scheduler_log.count("dead_letter_sent_again_alone"),
        poison_record=None
        if record is None
        else {"code": record.get("code"), "detail": record.get("detail")},
        rejected_events={e.get("command_id"): e["error"]["code"] for e in rejected},
        dead_letter_queue_depth_at_end=sum(n for q, n in depths.items() if q.endswith(".XQ")),
        worker_stayed_up_after=stayed_up,
        **counts,
    )
    judge_core(verdict, counts)
    deliveries = fired.get("on_message", 0)
    verdict.check(
        "poison_stopped_by_delivery_limit", DELIVERY_LIMIT <= deliveries <= 2 * (DELIVERY_LIMIT + 1)
    )
    verdict.check("poison_has_durable_answer", record is not None and record.get("code") == "poison")
    verdict.check("poison_rejected_event", [e.get("command_id") for e in rejected] == [poison["command_id"]])
    at_partner = partner_orders_by_ref(sandbox)
    rows = order_rows(stack.ledger_url)
    not_done = [
        c
        for c in good_ids
        if rows.get(c, {}).get("status") != "completed"
        and not (
            rows.get(c, {}).get("status") == "in_doubt" and not at_partner.get(partner_ref(NAMESPACE, c))
        )
    ]
    verdict.count(
        in_doubt_never_sent=sum(1 for c in good_ids if rows.get(c, {}).get("status") == "in_doubt")
        - len([c for c in not_done if rows.get(c, {}).get("status") == "in_doubt"])
    )
    # completed, or (itrx cut short by a crash before the call) in_doubt with no partner order: never sent
    verdict.check("every_other_command_completed", not not_done)
    verdict.check("dead_letter_queues_empty", not any(n for q, n in depths.items() if q.endswith(".XQ")))
    verdict.check("worker_stays_up_afterwards", stayed_up)
    verdict.check("no_process_hung", worker.liveness_restarts == 0)
    verdict.emit()
