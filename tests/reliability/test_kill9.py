"""Scenario 1: workers (and the relay) die by SIGKILL at named crash points, over and over.

Seven crash points exist (``worker/failpoints.py``); six fire at random here: four on the create path
(after the intent commit, after the partner answered, after the result commit, before the ack), one on the
poll path (after the observation commit, before the ack) and one in the relay (after the broker confirmed
a batch, before the ledger was told). The test is the supervisor: whatever died is started again, as
Kubernetes would. Criteria: no duplicate partner order, every issued token stored (and accepted by the
partner) or the order flagged untrackable, one event id per transition, no lost event, every command final
or flagged (``in_doubt`` only where a create may have reached the partner: itrx, or 0trace once every
attempt died), at least five of the six crash points fired, no canary anywhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.reliability.audit import await_settled_and_drained, failpoints_fired, full_audit
from tests.reliability.rig import RelStack, Sizes, Supervisor, Verdict, sandbox_requests
from tests.support.events import create_bodies, publish_reliably, witness
from tests.support.partners import commands_mix
from tests.support.stack import Sandbox

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(1800)]

CRASH_POINTS = {
    "after_intent": 0.02,
    "after_partner": 0.02,
    "after_commit": 0.02,
    "before_ack": 0.02,
    "after_poll": 0.01,  # polls run a few hundred times a run (see the sandbox speed below)
    "relay_after_publish": 0.04,
}


@pytest.mark.scenario("kill9_crash_points")
def test_kill_9_at_six_crash_points(
    make_sandbox: Callable[..., Sandbox],
    make_stack: Callable[..., RelStack],
    sizes: Sizes,
    seed: int,
    verdict: Verdict,
) -> None:
    # A 0trace order lives 120 sandbox seconds in three steps. At the usual speed of 100 each push came
    # before the order's next poll was due (a push moves the poll 0.5 s on): a run made 0-23 polls, the
    # poll point rarely fired, and the run failed whenever one more point missed. At 25 an order stays
    # open for 4.8 s: six runs made 96-264 0trace polls and the poll point fired 3-10 times in each.
    sandbox = make_sandbox(speed=25)
    # pushes arrive for every change; keep polling as well, so the poll path is exercised (and killed)
    stack = make_stack(sandbox, settings={"ORDER_WORKER_POLL_SAFETY_INTERVAL": "0.5"})
    sandbox.control(
        "webhooks",
        {
            "zerotrace_webhook_url": f"http://127.0.0.1:{stack.webhooks_port}/webhooks/0trace",
            "zerotrace_webhook_schedule": [1, 2, 5, 10, 30],
            "itrx_callback_schedule": [1, 2, 5, 10, 30],
        },
    )
    crashy = {
        "ORDER_WORKER_FAILPOINTS": ",".join(f"{name}={p}" for name, p in CRASH_POINTS.items()),
        "ORDER_WORKER_CREATE_LEASE_SECONDS": "3",
    }
    commands = commands_mix(sizes.kill9_commands, seed, "k9")
    ids = [c["command_id"] for c in commands]
    stack.declare_queues()
    stack.start_webhooks()
    with witness(stack.broker_url, stack.exchange) as events:
        publish_reliably(stack.broker_url, stack.create_queue, create_bodies(stack.create_queue, commands))
        workers = [Supervisor(stack, "worker", "--processes", "1", "--threads", "8", **crashy)]
        scheduler = Supervisor(stack, "scheduler", **crashy)
        supervised = [*workers, scheduler]
        deadline = time.monotonic() + 180 + 1.0 * len(commands)
        before = sandbox_requests(sandbox)

        def supervise() -> None:
            for supervisor in supervised:
                supervisor.ensure()
            time.sleep(0.2)

        await_settled_and_drained(stack, events, ids, deadline, tick=supervise)  # the audit judges it
        fired = failpoints_fired(p.log_path for p in stack.processes)
        requests = sandbox_requests(sandbox) - before
        verdict.count(
            crash_points=sorted(CRASH_POINTS),
            kills_by_point=fired,
            worker_restarts=sum(w.restarts for w in workers),
            scheduler_relay_restarts=scheduler.restarts,
            restarts_because_hung=sum(s.liveness_restarts for s in supervised),
            supervised_by="test (as Kubernetes would restart a dead pod)",
            partner_requests=dict(sorted(requests.items())),
        )
        counts = full_audit(verdict, stack, sandbox, events, ids)
        unexplained = in_doubt_without_cause(stack, ids)
        verdict.count(in_doubt_without_cause=unexplained)
    verdict.check("five_or_more_points_fired", sum(1 for n in fired.values() if n) >= 5)
    verdict.check("in_doubt_only_where_a_create_may_have_reached_the_partner", unexplained == 0)
    verdict.check("commands_at_least_250", counts["commands"] >= 250)
    verdict.check("no_process_hung", sum(s.liveness_restarts for s in supervised) == 0)
    verdict.emit()


def in_doubt_without_cause(stack: RelStack, command_ids: list[str]) -> int:
    """Orders parked ``in_doubt`` for no reason the rules give: an itrx create cut off after it may have
    reached the partner, or a 0trace create whose every attempt (all with one Idempotency-Key) died."""
    ledger = stack.ledger()
    unexplained = 0
    for command_id in command_ids:
        record = ledger.get(command_id)
        if record is None or record.status != "in_doubt":
            continue
        code = record.last_error.code if record.last_error is not None else None
        unexplained += not (record.provider == "itrx" or code == "retries_exhausted")
    return unexplained
