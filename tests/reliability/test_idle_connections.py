"""Scenario: the partner closes idle keep-alive connections at random; no itrx order turns in doubt.

An itrx create is not idempotent, so a create whose request was lost with a connection the partner closed
as it arrived can only end ``in_doubt`` (the worker must not guess whether the order exists). Partners
close idle keep-alive connections on their own timers, and a request sent on such a connection at that
moment meets a closed socket: a spurious in-doubt order. The sandbox's ``idle_close`` fault is that race
made frequent: a request arriving on a kept-alive connection (never a new one) is closed unread.

Every itrx endpoint gets the fault, so the worker's reads (the pre-create price and balance checks, the
polls) meet it on their pooled connections and retry, while each create goes on a connection opened for
it. Counted from the sources: ledger statuses (0 ``in_doubt``, all ``completed``), the sandbox's own
orders (one per command) and fault counters (closes fired on reads, none on a create), events from the
witness queue.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.reliability.audit import await_settled_and_drained, full_audit, settled_as
from tests.reliability.rig import RelStack, Sizes, Verdict, add_fault, clear_faults
from tests.support.events import create_bodies, publish_reliably, witness
from tests.support.partners import itrx_command
from tests.support.stack import Sandbox

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(900)]

CLOSE_SHARE = 0.3
"""Share of requests on kept-alive connections that the partner closes unread."""


@pytest.mark.scenario("idle_connections")
@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_partner_closing_idle_connections_makes_no_itrx_order_in_doubt(
    make_sandbox: Callable[..., Sandbox],
    make_stack: Callable[..., RelStack],
    sizes: Sizes,
    seed: int,
    verdict: Verdict,
) -> None:
    sandbox = make_sandbox()
    stack = make_stack(
        sandbox,
        settings={
            "ORDER_WORKER_RETRY_BASE_SECONDS": "0.2",
            "ORDER_WORKER_RETRY_MAX_SECONDS": "2",
            "ORDER_WORKER_POLL_SAFETY_INTERVAL": "1",
        },
    )
    sandbox.control("webhooks", {"itrx_callback_schedule": [1, 2, 5, 10, 30]})
    add_fault(sandbox, endpoint="itrx.*", kind="idle_close", probability=CLOSE_SHARE)
    ids = [f"idle-ix-{seed}-{i:06d}" for i in range(sizes.idle_connection_creates)]
    commands = [itrx_command(command_id) for command_id in ids]
    stack.declare_queues()
    with witness(stack.broker_url, stack.exchange) as events:
        stack.start_webhooks()
        stack.start_worker(threads=8)
        stack.start_scheduler()
        publish_reliably(stack.broker_url, stack.create_queue, create_bodies(stack.create_queue, commands))
        deadline = time.monotonic() + 120 + 0.3 * len(ids)

        settled = settled_as("completed", "in_doubt", "failed")
        await_settled_and_drained(stack, events, ids, deadline, settled=settled)
        stats = sandbox.stats()
        clear_faults(sandbox)
        counts = full_audit(verdict, stack, sandbox, events, ids)
    closes = {
        key.split(":")[0]: n for key, n in stats["faults_triggered"].items() if key.endswith(":idle_close")
    }
    verdict.count(
        idle_close_share=CLOSE_SHARE,
        idle_closes_by_endpoint=closes,
        partner_requests=sum(stats["requests"].values()),
    )
    verdict.check("creates_at_least_500", counts["commands"] >= 500)
    verdict.check("no_order_in_doubt", counts["in_doubt"] == 0)
    verdict.check("all_complete", counts["statuses"] == {"completed": len(ids)})
    verdict.check("the_partner_closed_kept_alive_connections", sum(closes.values()) > 0)
    verdict.check("no_create_met_a_kept_alive_connection", closes.get("itrx.order", 0) == 0)
    verdict.emit()
