"""Scenario 2: the broker dies (3 x SIGKILL) and is stopped (2 x ``rabbitmqctl stop``) under load.

A throwaway RabbitMQ node of our own (never the shared one on 5672) carries the whole deployment: two
worker replicas, the scheduler/relay and the webhook receiver, PostgreSQL ledger, partner answering 15% of
all calls with a 5xx. Commands are published over about a minute while the node is killed or stopped and
started again on the same data dir five times. Criteria: no lost command (every one has a ledger row and
ends final or flagged), no lost event (every outbox row reached the durable witness queue), no duplicate
partner order; the verdict says whether any process had to be restarted by the test (the supervisor).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from tests.reliability.audit import await_settled_and_drained, full_audit
from tests.reliability.rig import RelStack, Sizes, Supervisor, Verdict, add_fault, clear_faults
from tests.support.events import create_bodies, publish_reliably, witness
from tests.support.partners import commands_mix
from tests.support.rabbit import RabbitNode
from tests.support.stack import Sandbox

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(2400)]

DISRUPTIONS = ("kill9", "stop", "kill9", "stop", "kill9")


@pytest.fixture
def rabbit_node() -> Iterator[RabbitNode]:
    node = RabbitNode()
    try:
        node.start()
        yield node
    finally:
        node.destroy()


@pytest.mark.scenario("broker_crash_restart")
@pytest.mark.parametrize("ledger_url", ["postgres"], indirect=True)
def test_broker_killed_and_restarted_under_load(
    make_sandbox: Callable[..., Sandbox],
    make_stack: Callable[..., RelStack],
    rabbit_node: RabbitNode,
    sizes: Sizes,
    seed: int,
    verdict: Verdict,
) -> None:
    node = rabbit_node
    sandbox = make_sandbox()
    for kind, share in (("http_503", 0.075), ("http_500", 0.075 / 0.925)):
        add_fault(sandbox, endpoint="*", kind=kind, probability=share)
    stack = make_stack(sandbox, broker_url=node.url)
    commands = commands_mix(sizes.broker_commands, seed, "br")
    ids = [c["command_id"] for c in commands]
    bodies = create_bodies(stack.create_queue, commands)
    stack.declare_queues()
    stack.start_webhooks()
    with witness(stack.broker_url, stack.exchange) as events:
        workers = [Supervisor(stack, "worker", "--processes", "1", "--threads", "8") for _ in range(2)]
        scheduler = Supervisor(stack, "scheduler")
        supervised = [*workers, scheduler]
        for supervisor in supervised:
            supervisor.wait_ready()

        published = [0]
        republished = [0]
        publish_seconds = max(60.0, len(bodies) / 40)

        def produce() -> None:
            chunk = max(1, len(bodies) // 200)
            started = time.monotonic()
            for index in range(0, len(bodies), chunk):
                republished[0] += publish_reliably(
                    stack.broker_url, stack.create_queue, bodies[index : index + chunk]
                )
                published[0] = min(len(bodies), index + chunk)
                lag = started + publish_seconds * published[0] / len(bodies) - time.monotonic()
                if lag > 0:
                    time.sleep(lag)

        producer = threading.Thread(target=produce, name="producer", daemon=True)
        producer.start()
        outages: list[dict[str, object]] = []
        for number, kind in enumerate(DISRUPTIONS, start=1):
            target = len(bodies) * number / (len(DISRUPTIONS) + 1)
            while published[0] < target:
                assert producer.is_alive() or published[0] >= len(bodies), "producer died"
                for supervisor in supervised:
                    supervisor.ensure()
                time.sleep(0.1)
            down_at = time.monotonic()
            if kind == "kill9":
                node.kill9()
            else:
                node.stop()
            time.sleep(1.0)  # the node stays down a moment: clients must notice and wait
            up_seconds = node.start()
            outages.append(
                {
                    "kind": kind,
                    "at_published": published[0],
                    "down_s": round(time.monotonic() - down_at, 1),
                    "boot_s": round(up_seconds, 1),
                }
            )
            verdict.count(outages=outages)
        producer.join(publish_seconds * 3)
        assert not producer.is_alive(), "the producer could not publish every command"

        budget = 300 + 0.1 * len(ids)
        deadline = time.monotonic() + budget

        def supervise() -> None:
            for supervisor in supervised:
                supervisor.ensure()
            time.sleep(0.5)

        recovered_at = await_settled_and_drained(stack, events, ids, deadline, tick=supervise)
        verdict.count(
            broker_kill9=node.kills,
            broker_stop_start=node.stops,
            broker_starts=node.starts,
            commands_published=len(bodies),
            producer_republishes=republished[0],
            partner_5xx_share=0.15,
            process_restarts_by_supervisor={
                "workers": sum(w.restarts for w in workers),
                "scheduler_relay": scheduler.restarts,
            },
            worker_exit_codes=[code for w in workers for code in w.exit_codes],
            restarts_because_hung=sum(s.liveness_restarts for s in supervised),
            witness_reconnects=events.reconnects,
            settled_and_drained_after_load_s=round((recovered_at or 0) - (deadline - budget), 1),
        )
        restarts = sum(s.restarts for s in supervised)
        verdict.count(
            recovery="without exiting"
            if restarts == 0
            else f"{restarts} process exits, restarted by the test"
        )
        clear_faults(sandbox)
        counts = full_audit(verdict, stack, sandbox, events, ids)
    verdict.check("commands_at_least_2000", counts["commands"] >= 2000)
    verdict.check("three_kills_two_stops", node.kills >= 3 and node.stops >= 2)
    verdict.check("no_process_hung", sum(s.liveness_restarts for s in supervised) == 0)
    verdict.emit()
