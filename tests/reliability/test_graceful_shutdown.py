"""Scenario 8: SIGTERM with work in flight: everything in flight finishes, is acked and published, the
process exits cleanly, and nothing runs twice.

Partner creates are slowed to ``LATENCY_MS`` so that a full set of worker threads is inside a partner call
when the worker's main process gets SIGTERM (what Kubernetes sends to PID 1); then the scheduler/relay gets
SIGTERM too. Every partner request goes through a recording proxy, so a re-executed create would show as a
second request with the same Idempotency-Key / out_trade_no. A fresh worker and scheduler then finish the
commands that were still queued.

Criteria: exit code 0 for both, every create that was in flight at SIGTERM committed before the exit, the
outbox drained by the relay before it exited, exactly one create request per command, all complete.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest

from tests.reliability.audit import full_audit
from tests.reliability.rig import RelStack, Sizes, Verdict, add_fault, clear_faults
from tests.support.events import create_bodies, publish_reliably, witness
from tests.support.faults import HttpRequestSeen, TcpFaultProxy
from tests.support.ledger_views import order_rows, outbox_ids
from tests.support.partners import commands_mix
from tests.support.stack import Sandbox, wait_until

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(300)]

LATENCY_MS = 3000
# A traceback or a critical line, in either log format (JSON lines carry "level": "critical").
ERROR_MARKS = ("Traceback", "CRITICAL", '"level": "critical"')
THREADS = 8


@pytest.mark.scenario("graceful_shutdown")
@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_sigterm_finishes_in_flight_work_and_exits_cleanly(
    make_sandbox: Callable[..., Sandbox],
    make_stack: Callable[..., RelStack],
    sizes: Sizes,
    seed: int,
    verdict: Verdict,
) -> None:
    sandbox = make_sandbox()
    creates: Counter[str] = Counter()
    lock = threading.Lock()

    def on_request(request: HttpRequestSeen) -> None:
        key = None
        if request.path == "/api/v1/create":
            key = request.headers.get("idempotency-key")
        elif request.method == "POST" and request.path == "/api/v1/frontend/order":
            key = json.loads(request.body).get("out_trade_no")
        if key:
            with lock:
                creates[key] += 1

    proxy = TcpFaultProxy(sandbox.port, http_sink=on_request)
    partner_url = f"http://127.0.0.1:{proxy.port}"
    stack = make_stack(
        sandbox,
        settings={"ORDER_WORKER_ZEROTRACE_BASE_URL": partner_url, "ORDER_WORKER_ITRX_BASE_URL": partner_url},
    )
    for endpoint in ("0trace.create", "itrx.order"):
        add_fault(sandbox, endpoint=endpoint, kind="latency", latency_ms=LATENCY_MS, probability=1.0)
    commands = commands_mix(sizes.shutdown_commands, seed, "gs")
    ids = [c["command_id"] for c in commands]
    stack.declare_queues()
    try:
        with witness(stack.broker_url, stack.exchange) as events:
            stack.start_webhooks()
            scheduler = stack.start_scheduler()
            worker = stack.start_worker(threads=THREADS)
            publish_reliably(
                stack.broker_url, stack.create_queue, create_bodies(stack.create_queue, commands)
            )
            wait_until(lambda: sum(creates.values()) >= THREADS, 30, "a full set of creates in flight")
            with lock:
                in_flight = set(creates)
            terminated = time.monotonic()
            os.kill(worker.popen.pid, signal.SIGTERM)  # the main process only, as Kubernetes does
            worker_rc = worker.popen.wait(60)
            worker_exit_s = time.monotonic() - terminated
            rows = order_rows(stack.ledger_url)
            by_ref = {row["partner_ref"]: row for row in rows.values()}
            committed = sum(1 for key in in_flight if by_ref.get(key, {}).get("order_id"))
            # the relay: everything committed so far must be published before it exits
            os.kill(scheduler.popen.pid, signal.SIGTERM)
            scheduler_rc = scheduler.popen.wait(60)
            unpublished_at_exit = sum(
                1 for published in outbox_ids(stack.ledger_url).values() if not published
            )
            worker_log, scheduler_log = worker.output(), scheduler.output()
            # a new generation finishes what was still queued
            clear_faults(sandbox)
            stack.start_worker(threads=THREADS)
            stack.start_scheduler()
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                current = order_rows(stack.ledger_url)
                if all(current.get(c, {}).get("status") == "completed" for c in ids):
                    break
                time.sleep(0.25)
            wait_until(
                lambda: set(outbox_ids(stack.ledger_url)) <= {e["event_id"] for e in events.snapshot()},
                30,
                "witness saw every event",
            )
            counts = full_audit(verdict, stack, sandbox, events, ids)
    finally:
        proxy.close()
    repeated = sum(n - 1 for n in creates.values() if n > 1)
    verdict.count(
        threads=THREADS,
        partner_latency_ms=LATENCY_MS,
        in_flight_at_sigterm=len(in_flight),
        in_flight_committed_before_exit=committed,
        worker_exit_code=worker_rc,
        worker_exit_s=round(worker_exit_s, 1),
        scheduler_exit_code=scheduler_rc,
        unpublished_when_relay_exited=unpublished_at_exit,
        create_requests=sum(creates.values()),
        repeated_create_requests=repeated,
        worker_log_errors=sum(worker_log.count(w) for w in (*ERROR_MARKS, "exited unexpectedly")),
        scheduler_log_errors=sum(scheduler_log.count(w) for w in ERROR_MARKS),
    )
    verdict.check("worker_clean_exit", worker_rc == 0)
    verdict.check("scheduler_clean_exit", scheduler_rc == 0)
    verdict.check("in_flight_finished_before_exit", committed == len(in_flight) and len(in_flight) >= THREADS)
    verdict.check("published_before_exit", unpublished_at_exit == 0)
    verdict.check("no_re_execution", repeated == 0 and counts["untrackable"] == 0 and counts["in_doubt"] == 0)
    verdict.check("all_complete", counts["statuses"] == {"completed": len(ids)})
    verdict.emit()
