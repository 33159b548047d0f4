"""Scenario 3: the relay's connection to the broker is reset again and again while it publishes.

The outbox relay runs alone (``scheduler --no-scheduler``) and reaches RabbitMQ only through a TCP fault
proxy of ours, which cuts every live connection with a TCP RST on command; the scheduler, the workers and
the witness talk to the broker directly. Orders are submitted over ~25 s so events keep flowing while at
least five resets land. Criterion: every event committed to the outbox reaches the witness (0 lost), with
the resets counted only when they actually cut a live relay connection.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest

from tests.reliability.audit import (
    await_settled_and_drained,
    event_audit,
    judge_core,
    partner_audit,
    security_audit,
    settlement,
)
from tests.reliability.rig import RelStack, Sizes, Verdict
from tests.support.events import create_bodies, publish_reliably, witness
from tests.support.faults import TcpFaultProxy
from tests.support.partners import commands_mix
from tests.support.stack import Sandbox

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(900)]


@pytest.mark.scenario("relay_connection_resets")
@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_events_survive_connection_resets_between_relay_and_broker(
    make_sandbox: Callable[..., Sandbox],
    make_stack: Callable[..., RelStack],
    sizes: Sizes,
    seed: int,
    verdict: Verdict,
) -> None:
    sandbox = make_sandbox()
    stack = make_stack(sandbox)
    broker = urlsplit(stack.broker_url)
    proxy = TcpFaultProxy(broker.port or 5672)
    proxied_url = stack.broker_url.replace(f":{broker.port}/", f":{proxy.port}/")
    commands = commands_mix(sizes.relay_orders, seed, "rr")
    ids = [c["command_id"] for c in commands]
    bodies = create_bodies(stack.create_queue, commands)
    stack.declare_queues()
    try:
        with witness(stack.broker_url, stack.exchange) as events:
            stack.start_worker(threads=8)
            stack.start_scheduler("--no-relay")
            relay = stack.start_scheduler("--no-scheduler", ORDER_WORKER_BROKER_URL=proxied_url)
            spread = 25.0

            def produce() -> None:
                for index, body in enumerate(bodies):
                    publish_reliably(stack.broker_url, stack.create_queue, [body])
                    time.sleep(max(0.0, spread * (index + 1) / len(bodies) - (time.monotonic() - started)))

            started = time.monotonic()
            producer = threading.Thread(target=produce, daemon=True)
            producer.start()
            cuts: list[int] = []
            interval = spread / (sizes.relay_resets + 1)
            for number in range(1, sizes.relay_resets + 1):
                time.sleep(max(0.0, started + interval * number - time.monotonic()))
                # only a reset that cuts a live relay connection counts
                wait_for_live = time.monotonic() + 10
                while proxy.live == 0 and time.monotonic() < wait_for_live:
                    time.sleep(0.05)
                cuts.append(proxy.reset_all())
            producer.join(120)

            deadline = time.monotonic() + 120 + 0.5 * len(ids)
            await_settled_and_drained(stack, events, ids, deadline)
            counts = {
                **settlement(stack, ids),
                **partner_audit(sandbox, ids),
                **event_audit(stack, events, ids),
                **security_audit(stack, events, ids),
            }
            verdict.count(
                resets=len(cuts),
                resets_that_cut_a_live_connection=sum(1 for n in cuts if n > 0),
                connections_cut=sum(cuts),
                relay_connections_opened=proxy.accepted,
                relay_alive=relay.alive,
                relay_log_interruptions=relay.output().count("event_publishing_interrupted"),
                **counts,
            )
            judge_core(verdict, counts)
            verdict.check("five_or_more_effective_resets", sum(1 for n in cuts if n > 0) >= 5)
            verdict.check("relay_recovered_without_exiting", relay.alive)
    finally:
        proxy.close()
    verdict.emit()
