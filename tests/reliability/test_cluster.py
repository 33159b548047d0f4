"""Scenario: a three-node RabbitMQ cluster loses one node under load, then has one fall silent.

Three throwaway nodes of our own (never the shared one on 5672) form one cluster; every client (two worker
replicas, the scheduler/relay, the test's producer and its event witness) is given all three URLs in
``ORDER_WORKER_BROKER_URL``, and the work queues are quorum queues with a member on each node. While the
commands are published:

1. the node that leads the create queue is killed with SIGKILL and stays down for ``DOWN_SECONDS``
   before it is started again (on its data dir: it rejoins the cluster and its queue members catch up);
2. once every queue has its three members online again, the node now leading the create queue is frozen
   with SIGSTOP for ``FROZEN_SECONDS`` (to its peers and clients it falls silent, as behind a partition;
   its sockets stay open, so only heartbeats tell), then SIGCONT.

Criteria: no lost command, no lost event (witness queue, deduplicated on event_id), no duplicate partner
order, no worker or scheduler restarted (the supervisor never had to, and every process of their trees
kept its pid), and the longest pause of the producer's confirmed publishes and of the events the witness
sees stays below the time the node was down or frozen: the clients moved to a surviving node instead of
waiting for theirs to come back. The URLs carry ``heartbeat=5&stack_timeout=5``, as the README advises
for a cluster: a frozen node is noticed by missed heartbeats only, and a connection attempt to it gives up
after ``stack_timeout`` for the next node.

``ORDER_WORKER_CLUSTER_ONE_URL=1`` gives every client the URL of the first node alone (where the queues are
declared, so it leads them and is the one killed), the way a deployment without several broker URLs is
configured: the pauses then last as long as the node's absence, and the scenario fails.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from tests.reliability.audit import await_settled_and_drained, full_audit
from tests.reliability.rig import RelStack, Sizes, Supervisor, Verdict, process_tree
from tests.support.events import create_bodies, publish_reliably, witness
from tests.support.partners import commands_mix
from tests.support.rabbit import RabbitCluster
from tests.support.stack import Sandbox, wait_until

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(1200)]

DOWN_SECONDS = 30.0
FROZEN_SECONDS = 30.0
NODE_OPTIONS = {"heartbeat": "5", "stack_timeout": "5"}  # as the README advises for a cluster


@pytest.fixture
def rabbit_cluster() -> Iterator[RabbitCluster]:
    cluster = RabbitCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


def longest_gap(times: list[float], start: float, end: float) -> float:
    """The longest stretch within [start, end] with none of ``times`` in it."""
    inside = sorted(t for t in times if start <= t <= end)
    edges = [start, *inside, end]
    return max(b - a for a, b in itertools.pairwise(edges))


@pytest.mark.scenario("rabbit_cluster")
@pytest.mark.parametrize("ledger_url", ["postgres"], indirect=True)
def test_cluster_node_killed_and_frozen_under_load(
    make_sandbox: Callable[..., Sandbox],
    make_stack: Callable[..., RelStack],
    rabbit_cluster: RabbitCluster,
    sizes: Sizes,
    seed: int,
    verdict: Verdict,
) -> None:
    cluster = rabbit_cluster
    one_url = os.environ.get("ORDER_WORKER_CLUSTER_ONE_URL") == "1"
    broker_url = cluster.url(**NODE_OPTIONS)
    if one_url:
        broker_url = broker_url.split(",")[0]
    verdict.count(broker_urls_given=1 if one_url else len(cluster.nodes))
    sandbox = make_sandbox()
    stack = make_stack(sandbox, broker_url=broker_url)
    commands = commands_mix(sizes.cluster_commands, seed, "cl")
    ids = [c["command_id"] for c in commands]
    bodies = create_bodies(stack.create_queue, commands)
    stack.declare_queues()
    stack.start_webhooks()
    with witness(stack.broker_url, stack.exchange) as events:
        work_queues = [stack.create_queue, stack.poll_queue, events.queue]
        replicated = cluster.replicated(work_queues)
        verdict.count(queues_on_three_nodes_at_start=replicated)
        workers = [Supervisor(stack, "worker", "--processes", "1", "--threads", "8") for _ in range(2)]
        scheduler = Supervisor(stack, "scheduler")
        supervised = [*workers, scheduler]
        for supervisor in supervised:
            supervisor.wait_ready(120)
        trees = {id(s): sorted(process_tree(s.process.popen.pid)) for s in supervised}

        published = [0]
        republished = [0]
        confirmed_at: list[float] = []
        publish_seconds = max(110.0, len(bodies) / 18)

        def produce() -> None:
            chunk = max(1, len(bodies) // 200)
            started = time.monotonic()
            for index in range(0, len(bodies), chunk):
                republished[0] += publish_reliably(
                    stack.broker_url, stack.create_queue, bodies[index : index + chunk], 600, confirmed_at
                )
                published[0] = min(len(bodies), index + chunk)
                lag = started + publish_seconds * published[0] / len(bodies) - time.monotonic()
                if lag > 0:
                    time.sleep(lag)

        def tend(seconds: float) -> None:
            """Let ``seconds`` pass while the supervisor watches every role."""
            until = time.monotonic() + seconds
            while time.monotonic() < until:
                for supervisor in supervised:
                    supervisor.ensure()
                time.sleep(0.2)

        def reach(share: float) -> None:
            while published[0] < len(bodies) * share:
                assert producer.is_alive() or published[0] >= len(bodies), "producer died"
                tend(0.2)

        load_started = time.monotonic()
        producer = threading.Thread(target=produce, name="producer", daemon=True)
        producer.start()

        reach(0.12)
        killed = cluster.leader_of(stack.create_queue)
        disrupted_at = time.monotonic()
        killed.kill9()
        tend(DOWN_SECONDS)
        boot = killed.start(240)
        wait_until(lambda: cluster.replicated(work_queues), 180, "every queue on three nodes again", 1.0)
        rejoined_s = time.monotonic() - disrupted_at

        reach(0.5)
        frozen = cluster.leader_of(stack.create_queue)
        frozen_at = time.monotonic()
        frozen.freeze()
        try:
            tend(FROZEN_SECONDS)
        finally:
            frozen.thaw()
        verdict.count(
            killed={"node": "leader of the create queue", "down_s": DOWN_SECONDS, "boot_s": round(boot, 1)},
            rejoined_with_all_members_after_s=round(rejoined_s, 1),
            frozen={"node": "leader of the create queue", "stopped_s": FROZEN_SECONDS},
            same_node_killed_and_frozen=frozen is killed,
        )

        producer.join(publish_seconds * 3)
        assert not producer.is_alive(), "the producer could not publish every command"
        load_ended = time.monotonic()

        budget = 240 + 0.05 * len(ids)
        deadline = time.monotonic() + budget

        await_settled_and_drained(stack, events, ids, deadline, tick=lambda: tend(0.5))
        recovered_s = time.monotonic() - load_ended

        phases = {"kill9": (disrupted_at, frozen_at), "sigstop": (frozen_at, load_ended)}
        publish_pauses = {k: round(longest_gap(confirmed_at, *span), 1) for k, span in phases.items()}
        event_pauses = {k: round(longest_gap(events.first_seen_at, *span), 1) for k, span in phases.items()}
        publish_pause, event_pause = max(publish_pauses.values()), max(event_pauses.values())
        pids_kept = all(sorted(process_tree(s.process.popen.pid)) == trees[id(s)] for s in supervised)
        restarts = sum(s.restarts for s in supervised)
        verdict.count(
            commands_published=len(bodies),
            publish_seconds=round(load_ended - load_started, 1),
            producer_republishes=republished[0],
            longest_publish_pause_s=publish_pauses,
            longest_event_pause_s=event_pauses,
            process_restarts_by_supervisor={
                "workers": sum(w.restarts for w in workers),
                "scheduler_relay": scheduler.restarts,
            },
            restarts_because_hung=sum(s.liveness_restarts for s in supervised),
            process_pids_unchanged=pids_kept,
            witness_reconnects=events.reconnects,
            settled_and_drained_after_load_s=round(recovered_s, 1),
        )
        counts = full_audit(verdict, stack, sandbox, events, ids)
    verdict.check("commands_at_least_2000", counts["commands"] >= min(2000, sizes.cluster_commands))
    verdict.check("queues_replicated_on_three_nodes", replicated)
    verdict.check("no_worker_restarts", restarts == 0 and pids_kept)
    verdict.check("publishing_moved_to_a_surviving_node", publish_pause < min(DOWN_SECONDS, FROZEN_SECONDS))
    verdict.check("consuming_moved_to_a_surviving_node", event_pause < min(DOWN_SECONDS, FROZEN_SECONDS))
    verdict.emit()
