"""Ledger throughput, outside pytest: ``.venv/bin/python -m tests.ledger.bench_ledger URL [options]``.

Measures the ledger alone (no broker, no partner): the create path (claim + begin_attempt +
record_created, three transactions per command), bare claims, poll observations with a transition, and
the relay (claim_outbox + mark_published in batches), with THREADS threads in each of PROCS processes.
Use a throwaway database: it writes ``--commands`` orders per thread.
"""

from __future__ import annotations

import argparse
import multiprocessing
import threading
import time
import uuid
from collections.abc import Callable
from multiprocessing.queues import Queue
from typing import Any

from tests.ledger.helpers import T0, command, observed, ref
from worker.ledger import open_ledger
from worker.messages import Source
from worker.status import Status


def _timed(threads: int, job: Callable[[int], None]) -> float:
    workers = [threading.Thread(target=job, args=(index,)) for index in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return time.perf_counter() - started


def _process(url: str, threads: int, commands: int, tag: str, out: Queue[dict[str, float]]) -> None:
    opts: dict[str, Any] = {"pool_size": threads + 1} if url.startswith("postgres") else {}
    ledger = open_ledger(url, **opts)

    def create(t: int) -> None:
        for i in range(commands):
            cid = f"bench-{tag}-{t}-{i:07}"
            ledger.claim(command(cid), ref(cid), T0)
            ledger.begin_attempt(cid, T0, 60)
            obs = observed(Status.AWAITING_DEPOSIT, order_id=cid)
            ledger.record_created(cid, obs, b"sealed-token", "k1", False, T0 + 30, T0)

    def claim(t: int) -> None:
        for i in range(commands):
            cid = f"claim-{tag}-{t}-{i:07}"
            ledger.claim(command(cid), ref(cid), T0)

    def poll(t: int) -> None:
        for i in range(commands):
            cid = f"bench-{tag}-{t}-{i:07}"
            obs = observed(Status.CONFIRMING, order_id=cid)
            ledger.apply_observation(cid, obs, Source.POLL, T0 + 1, T0 + 60)

    def relay(_: int) -> None:
        while rows := ledger.claim_outbox(T0 + 2, 200, 30):
            ledger.mark_published([row.event_id for row in rows], T0 + 2)

    result = {
        name: _timed(threads, job) for name, job in (("create", create), ("claim", claim), ("poll", poll))
    }
    backlog = ledger.outbox_backlog()
    result["relay"] = _timed(threads, relay)
    result["relayed"] = backlog
    started = time.perf_counter()
    for _ in range(20):
        ledger.count_by_status()
        ledger.outbox_backlog()
    result["gauges_ms"] = (time.perf_counter() - started) / 20 * 1000
    ledger.close()
    out.put(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--procs", type=int, default=1)
    parser.add_argument("--commands", type=int, default=1000, help="per thread")
    args = parser.parse_args()
    setup = open_ledger(args.url)
    setup.migrate()
    setup.close()
    context = multiprocessing.get_context("spawn")
    out: Queue[dict[str, float]] = context.Queue()
    tag = uuid.uuid4().hex[:6]
    procs = [
        context.Process(target=_process, args=(args.url, args.threads, args.commands, f"{tag}{p}", out))
        for p in range(args.procs)
    ]
    for proc in procs:
        proc.start()
    results = [out.get() for _ in procs]
    for proc in procs:
        proc.join()
    total = args.threads * args.commands * args.procs
    slowest = {key: max(r[key] for r in results) for key in ("create", "claim", "poll", "relay")}
    relayed = sum(r["relayed"] for r in results)
    print(
        f"{args.procs} proc x {args.threads} threads, {total} commands: "
        f"create path {total / slowest['create']:.0f} cmd/s | claim {total / slowest['claim']:.0f}/s | "
        f"poll transition {total / slowest['poll']:.0f}/s | "
        f"relay {relayed / slowest['relay']:.0f} events/s | "
        f"gauges {max(r['gauges_ms'] for r in results):.1f} ms"
    )


if __name__ == "__main__":
    main()
