"""Scenario 10: soak. Steady load with partner faults for ``soak_seconds`` (5 minutes in CI).

Commands arrive at a steady rate while the partner answers 10% of its calls with a 5xx and delays
another 10%. Every 5 s the test samples, from /proc, the resident memory, open file descriptors and
threads of every process of the deployment (the worker's main process, its worker and metrics processes,
the scheduler/relay, the webhook receiver). The first minute is warm-up; the baseline is the median of
the next 30 s, the final value the median of the last 30 s.

Criteria: per process, RSS grows by at most 10%, file descriptors by at most 5 and threads by at most 2
(flat: a leak per command would show as hundreds); the outbox is drained and every command settled
within 60 s after the load stops; no duplicate partner order, no lost event, no canary.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable

import pytest

from tests.reliability.audit import full_audit
from tests.reliability.rig import ProcSample, RelStack, Sizes, Verdict, add_fault, clear_faults, tree_sample
from tests.support.events import create_bodies, publish_reliably, witness
from tests.support.ledger_views import is_settled, order_rows, outbox_ids
from tests.support.partners import commands_mix
from tests.support.stack import Process, Sandbox

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(2400)]

WARMUP = 60.0
WINDOW = 30.0
SAMPLE_EVERY = 5.0


def _median(samples: list[tuple[float, ProcSample]], start: float, end: float, field: str) -> float:
    values = [getattr(s, field) for at, s in samples if start <= at <= end]
    return float(statistics.median(values)) if values else float("nan")


@pytest.mark.scenario("soak")
@pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)
def test_soak_steady_load_with_partner_faults(
    make_sandbox: Callable[..., Sandbox],
    make_stack: Callable[..., RelStack],
    sizes: Sizes,
    seed: int,
    verdict: Verdict,
) -> None:
    sandbox = make_sandbox()
    for endpoint in (
        "0trace.create",
        "0trace.order",
        "itrx.order_query",
        "itrx.index_data",
        "itrx.order_price",
    ):
        add_fault(sandbox, endpoint=endpoint, kind="http_503", probability=0.10)
        add_fault(sandbox, endpoint=endpoint, kind="latency", latency_ms=100, probability=0.10 / 0.9)
    add_fault(sandbox, endpoint="itrx.order", kind="latency", latency_ms=100, probability=0.10)
    stack = make_stack(
        sandbox, settings={"ORDER_WORKER_RETRY_BASE_SECONDS": "0.5", "ORDER_WORKER_RETRY_MAX_SECONDS": "5"}
    )
    total = int(sizes.soak_seconds * sizes.soak_rate)
    commands = commands_mix(total, seed, "soak")
    ids = [c["command_id"] for c in commands]
    bodies = create_bodies(stack.create_queue, commands)
    stack.declare_queues()
    with witness(stack.broker_url, stack.exchange) as events:
        roles: list[Process] = [
            stack.start_webhooks(),
            stack.start_worker(processes=2, threads=8),
            stack.start_scheduler(),
        ]
        started = time.monotonic()

        def produce() -> None:
            per_second = max(1, round(sizes.soak_rate))
            for second, index in enumerate(range(0, len(bodies), per_second)):
                time.sleep(max(0.0, started + second - time.monotonic()))
                publish_reliably(stack.broker_url, stack.create_queue, bodies[index : index + per_second])

        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        samples: dict[str, list[tuple[float, ProcSample]]] = {}
        names: dict[int, str] = {}
        while producer.is_alive():
            now = time.monotonic() - started
            for role in roles:
                assert role.alive, f"{role.name} died during the soak:\n{role.output()[-2000:]}"
                for pid, taken in tree_sample(role.popen.pid).items():
                    label = names.setdefault(
                        pid, f"{role.name}:{len([n for n in names.values() if n.startswith(role.name)])}"
                    )
                    samples.setdefault(label, []).append((now, taken))
            time.sleep(SAMPLE_EVERY)
        load_seconds = time.monotonic() - started
        stopped = time.monotonic()
        deadline = stopped + 60

        def settled() -> bool:
            rows = order_rows(stack.ledger_url)
            outbox = outbox_ids(stack.ledger_url)
            return all(is_settled(rows.get(c)) for c in ids) and all(outbox.values())

        while not settled() and time.monotonic() < deadline:
            time.sleep(0.5)
        drained_after = time.monotonic() - stopped
        while time.monotonic() < deadline and not set(outbox_ids(stack.ledger_url)) <= {
            e["event_id"] for e in events.snapshot()
        }:
            time.sleep(0.25)
        clear_faults(sandbox)
        counts = full_audit(verdict, stack, sandbox, events, ids)
    end = load_seconds
    per_process = {}
    worst_rss = worst_fds = worst_threads = 0.0
    for label, series in samples.items():
        base = {f: _median(series, WARMUP, WARMUP + WINDOW, f) for f in ("rss_kb", "fds", "threads")}
        last = {f: _median(series, end - WINDOW, end, f) for f in ("rss_kb", "fds", "threads")}
        growth = (last["rss_kb"] - base["rss_kb"]) / base["rss_kb"] if base["rss_kb"] else 0.0
        per_process[label] = {
            "rss_mb": [round(base["rss_kb"] / 1024, 1), round(last["rss_kb"] / 1024, 1)],
            "rss_growth": round(growth, 3),
            "fds": [base["fds"], last["fds"]],
            "threads": [base["threads"], last["threads"]],
        }
        worst_rss = max(worst_rss, growth)
        worst_fds = max(worst_fds, last["fds"] - base["fds"])
        worst_threads = max(worst_threads, last["threads"] - base["threads"])
    verdict.count(
        soak_seconds=round(load_seconds, 1),
        rate_per_s=sizes.soak_rate,
        partner_faults="10% 503 + 10% 100 ms latency on reads and 0trace create; latency on itrx create",
        processes=per_process,
        worst_rss_growth=round(worst_rss, 3),
        worst_fd_growth=worst_fds,
        worst_thread_growth=worst_threads,
        drained_and_settled_after_s=round(drained_after, 1),
    )
    verdict.check("soak_long_enough", load_seconds >= min(300.0, sizes.soak_seconds) - 2)
    verdict.check("rss_growth_at_most_10pct", worst_rss <= 0.10)
    verdict.check("fds_flat", worst_fds <= 5)
    verdict.check("threads_flat", worst_threads <= 2)
    verdict.check("outbox_drained", drained_after < 60 and counts["events_unpublished"] == 0)
    verdict.emit()
