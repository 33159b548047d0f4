"""Budget: several replicas sharing one 0trace account against its 2,500 weight / 60 s limit, with a backlog.

The sandbox's own limiter is set to the partner's real budget (2,500 weight in any 60 s; create costs 50,
order 1). REPLICAS replicas (each an ``order-worker worker`` and an ``order-worker scheduler``, sharing one
PostgreSQL ledger and the command queues, as a multi-node deployment does) are given a backlog of BACKLOG
0trace creates at once, far more than a minute's budget, and their orders are polled every POLL seconds.

Per minute from the first request: weight the partner accepted (from the sandbox's counters: create and
order answers that were not 429), its share of the 2,500 budget, and the 429 answers. The first minute
starts with an empty window; the later minutes are the steady state. If ``worker/ratelimit.py`` exists the
run says so (a client-side limiter is then expected to keep 429s at zero); otherwise the figures are those
of the service with no client-side limiter.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any

from bench.common import ZT_PARAMS, Broker, ledger_url, log, uid
from bench.contenders import SandboxProc, Stack
from worker.bus.envelope import envelope

BUDGET = 2500
WINDOW = 60.0
WEIGHTS = {"0trace.create": 50, "0trace.order": 1}


def _accepted_weight(stats: dict[str, Any]) -> tuple[int, int]:
    """(weight charged for answers that were not 429, number of 429 answers) from the sandbox's counters."""
    weight = 0
    for endpoint, per_status in stats["responses"].items():
        if endpoint in WEIGHTS:
            ok = sum(count for status, count in per_status.items() if str(status) != "429")
            weight += ok * WEIGHTS[endpoint]
    counters = stats.get("rate_limited", {})
    limited = int(counters["total"]) if "total" in counters else sum(counters.values())
    return weight, limited


def run(
    sandbox: SandboxProc,
    log_dir: Path,
    tmp: Path,
    *,
    replicas: int = 3,
    threads: int = 4,
    backlog: int = 400,
    minutes: int = 2,
    poll_seconds: float = 10.0,
) -> dict[str, Any]:
    sandbox.reset()
    sandbox.control("config", {"zerotrace_rate_limit_weight": BUDGET, "zerotrace_rate_limit_window": WINDOW})
    limiter = importlib.util.find_spec("worker.ratelimit") is not None
    result: dict[str, Any] = {
        "replicas": replicas,
        "threads_per_replica": threads,
        "backlog_creates": backlog,
        "budget_weight_per_min": BUDGET,
        "client_side_limiter_present": limiter,
    }
    settings = {
        "ORDER_WORKER_POLL_AWAITING_DEPOSIT": str(poll_seconds),
        "ORDER_WORKER_POLL_CONFIRMING": str(poll_seconds),
        "ORDER_WORKER_POLL_PROCESSING": str(poll_seconds),
        "ORDER_WORKER_POLL_ACTION_REQUIRED": str(poll_seconds),
        "ORDER_WORKER_SCHEDULER_INTERVAL": "1.0",
    }
    try:
        with ledger_url("postgres", tmp, pool_size=threads + 2) as url:
            stack = Stack(sandbox, url, log_dir, settings)
            broker = Broker()
            try:
                stack.declare_queues()
                for r in range(replicas):
                    stack.start("scheduler", name=f"budget-scheduler-{r}")
                    stack.start(
                        "worker", "--processes", "1", "--threads", str(threads), name=f"budget-worker-{r}"
                    )
                sandbox.control("reset", {})  # counters and the weight window start empty...
                sandbox.control(
                    "config", {"zerotrace_rate_limit_weight": BUDGET, "zerotrace_rate_limit_window": WINDOW}
                )  # ...with the real budget
                tag = uid()
                log(f"budget: {replicas} replicas, backlog of {backlog} creates, {minutes} min")
                broker.publish(
                    stack.create_queue,
                    (
                        envelope(
                            stack.create_queue,
                            "create_order",
                            {
                                "command_id": f"budget-{tag}-{i:05d}",
                                "provider": "0trace",
                                "params": ZT_PARAMS,
                            },
                        )
                        for i in range(backlog)
                    ),
                )
                started = time.monotonic()
                last = (0, 0)
                per_minute = []
                for minute in range(1, minutes + 1):
                    time.sleep(max(0.0, started + minute * WINDOW - time.monotonic()))
                    weight, limited = _accepted_weight(sandbox.stats())
                    used, refused = weight - last[0], limited - last[1]
                    per_minute.append(
                        {
                            "minute": minute,
                            "weight_accepted": used,
                            "budget_share": round(used / BUDGET, 3),
                            "http_429": refused,
                        }
                    )
                    last = (weight, limited)
                result["per_minute"] = per_minute
                steady = per_minute[1:] or per_minute
                result["steady_budget_share"] = round(sum(m["budget_share"] for m in steady) / len(steady), 3)
                result["steady_http_429"] = sum(m["http_429"] for m in steady)
                from worker.ledger import open_ledger

                ledger = open_ledger(url)
                try:
                    result["orders_by_status"] = {
                        f"{p}/{s}": c for (p, s), c in ledger.count_by_status().items()
                    }
                finally:
                    ledger.close()
            finally:
                broker.close()
                stack.stop()
    finally:
        sandbox.reset()
    return result
