"""Scenario 6: several worker replicas share one 0trace weight budget and never exceed it.

The sandbox enforces a small budget (``BUDGET`` weight in any ``WINDOW`` real seconds; create costs 50,
order 1), three worker replicas and a scheduler share one PostgreSQL ledger, and far more creates than one
window allows arrive at once. Every partner request passes through a recording proxy, so the weight spent
in any sliding window is measured on the wire. Mid-run one create is answered 429 with ``Retry-After``
(injected), and no 0trace call may follow it before that time has passed (a grace of 0.5 s covers calls
already on their way when the answer arrived).

Criteria: no 429 from the partner's own budget, the wire never carries more than the budget in any
window, the injected Retry-After honoured by every replica, all orders complete.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable

import pytest

from tests.reliability.audit import event_audit, judge_core, partner_audit, security_audit, settlement
from tests.reliability.rig import RelStack, Sizes, Supervisor, Verdict, add_fault
from tests.support.events import create_bodies, publish_reliably, witness
from tests.support.faults import HttpRequestSeen, TcpFaultProxy
from tests.support.ledger_views import order_rows, outbox_ids
from tests.support.partners import zerotrace_command
from tests.support.stack import Sandbox

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(1800)]

BUDGET = 500
WINDOW = 10.0
WEIGHTS = {"/api/v1/create": 50, "/api/v1/order": 1, "/api/v1/emergency": 1}
RETRY_AFTER = 4
GRACE = 0.5


def max_window_weight(calls: list[tuple[float, int]], window: float) -> int:
    times = [t for t, _ in calls]
    weights = [w for _, w in calls]
    prefix = [0]
    for weight in weights:
        prefix.append(prefix[-1] + weight)
    best = 0
    for index, at in enumerate(times):
        end = bisect.bisect_right(times, at + window - 1e-6)
        best = max(best, prefix[end] - prefix[index])
    return best


@pytest.mark.scenario("rate_limit_shared_budget")
@pytest.mark.parametrize("ledger_url", ["postgres"], indirect=True)
def test_replicas_share_one_zerotrace_budget(
    make_sandbox: Callable[..., Sandbox],
    make_stack: Callable[..., RelStack],
    sizes: Sizes,
    seed: int,
    verdict: Verdict,
) -> None:
    sandbox = make_sandbox(
        rate_limit_weight=BUDGET, extra={"ORDER_WORKER_SANDBOX_ZEROTRACE_RATE_LIMIT_WINDOW": str(WINDOW)}
    )
    calls: list[tuple[float, int]] = []
    creates: list[tuple[float, str]] = []
    lock = threading.Lock()

    def on_request(request: HttpRequestSeen) -> None:
        weight = WEIGHTS.get(request.path)
        if weight is None:
            return
        with lock:
            calls.append((request.at, weight))
            if request.path == "/api/v1/create":
                creates.append((request.at, request.headers.get("idempotency-key", "")))

    proxy = TcpFaultProxy(sandbox.port, http_sink=on_request)
    partner_url = f"http://127.0.0.1:{proxy.port}"
    polls = "5"
    stack = make_stack(
        sandbox,
        settings={
            "ORDER_WORKER_ZEROTRACE_BASE_URL": partner_url,
            "ORDER_WORKER_ZEROTRACE_WEIGHT_BUDGET": str(BUDGET),
            "ORDER_WORKER_ZEROTRACE_WEIGHT_WINDOW": str(WINDOW),
            "ORDER_WORKER_POLL_AWAITING_DEPOSIT": polls,
            "ORDER_WORKER_POLL_CONFIRMING": polls,
            "ORDER_WORKER_POLL_PROCESSING": polls,
            "ORDER_WORKER_POLL_ACTION_REQUIRED": polls,
            "ORDER_WORKER_RETRY_BASE_SECONDS": "1",
            "ORDER_WORKER_RETRY_MAX_SECONDS": "10",
        },
    )
    commands = [zerotrace_command(f"rl-{seed}-{i:05d}") for i in range(sizes.ratelimit_commands)]
    ids = [c["command_id"] for c in commands]
    stack.declare_queues()
    try:
        with witness(stack.broker_url, stack.exchange) as events:
            workers = [
                Supervisor(stack, "worker", "--processes", "1", "--threads", "8")
                for _ in range(sizes.ratelimit_replicas)
            ]
            scheduler = Supervisor(stack, "scheduler")
            for supervisor in (*workers, scheduler):
                supervisor.wait_ready()
            started = time.monotonic()
            publish_reliably(
                stack.broker_url, stack.create_queue, create_bodies(stack.create_queue, commands)
            )
            while time.monotonic() < started + 2 * WINDOW:
                time.sleep(0.2)
            add_fault(sandbox, endpoint="0trace.create", kind="http_429", retry_after=RETRY_AFTER, times=1)
            injected_after = len(creates)
            # the budget allows ~BUDGET * 0.9 weight per WINDOW + 1 s; creates cost 50
            deadline = time.monotonic() + 120 + 2 * len(ids) * 50 / (BUDGET * 0.9 / (WINDOW + 1))

            def complete() -> bool:
                rows = order_rows(stack.ledger_url)
                return all(rows.get(c, {}).get("status") == "completed" for c in ids)

            while not complete() and time.monotonic() < deadline:
                time.sleep(0.5)
            finished = time.monotonic() - started
            while not all(outbox_ids(stack.ledger_url).values()) and time.monotonic() < deadline:
                time.sleep(0.25)
            stats = sandbox.stats()
            counts = {
                **settlement(stack, ids),
                **partner_audit(sandbox, ids),
                **event_audit(stack, events, ids),
                **security_audit(stack, events, ids),
            }
    finally:
        proxy.close()
    with lock:
        ordered = sorted(calls)
        injected = creates[injected_after] if len(creates) > injected_after else None
    budget_429 = int(stats["rate_limited"].get("total", 0))
    window_max = max_window_weight(ordered, WINDOW)
    honoured = None
    early_calls = []
    if injected is not None:
        at = injected[0]
        early_calls = [t - at for t, _ in ordered if at + GRACE < t < at + RETRY_AFTER]
        honoured = not early_calls
    verdict.count(
        replicas=sizes.ratelimit_replicas,
        budget_weight=BUDGET,
        window_s=WINDOW,
        zerotrace_calls_on_wire=len(ordered),
        weight_on_wire=sum(w for _, w in ordered),
        max_weight_in_any_window=window_max,
        partner_429_budget=budget_429,
        injected_429_retry_after_s=RETRY_AFTER,
        calls_inside_retry_after=len(early_calls),
        first_call_after_injected_429_s=round(
            min((t - injected[0] for t, _ in ordered if t > injected[0] + GRACE), default=-1), 2
        )
        if injected
        else None,
        seconds_to_complete=round(finished, 1),
        worker_restarts=sum(w.restarts for w in workers),
        **counts,
    )
    judge_core(verdict, counts)
    verdict.check("no_429_from_the_budget", budget_429 == 0)
    verdict.check("wire_within_budget_every_window", window_max <= BUDGET)
    verdict.check("retry_after_honoured", honoured is True)
    verdict.check("all_complete", counts["statuses"] == {"completed": len(ids)})
    verdict.emit()
