"""Handing out one scheduled poll: through the scheduler and a quorum queue, or straight from the ledger.

Today a due poll travels ledger -> scheduler -> RabbitMQ (quorum queue) -> worker. The alternative is for
the worker threads to claim due rows themselves, as the scheduler does (``FOR UPDATE SKIP LOCKED`` and the
hold, in one transaction), and skip the queue. What decides between them is what each costs per poll over
every process involved, how long a due poll waits before a worker holds it, and that neither hands a row out
twice. This measures the two side by side on one PostgreSQL ledger with a large due table:

* **quorum queue**: the real ``order-worker scheduler`` process (its take_due batch, hold and confirmed
  batch publish, whatever they are in this revision) into a quorum queue declared by
  ``worker.bus.topology`` as the worker declares it; one consumer process with the worker's prefetch
  (8 threads x 2) takes each command and acks it on its own, as Dramatiq does;
* **straight from the ledger**: K threads in P processes, each calling the ledger's own ``take_due`` for a
  small batch (what a worker thread would do instead of consuming), waiting the scheduler's interval when
  it found nothing due (the threads' waits staggered).

Both run paced (first polls due evenly at RATE/s, e.g. the 0trace read budget) and unpaced (every row due
at once: the most each design hands out per second on this machine). Per poll handed out inside the window:
CPU of RabbitMQ, of PostgreSQL's server processes, of the scheduler or claimer processes and of the
consumer; hand-out latency = the moment a worker (consumer or claimer) held the poll minus its due time;
rows handed out more than once. The ledger is seeded like the scale run's (``bench.scale``).

    .venv/bin/python -m bench.poll_handout [--rows 200000] [--rate 37] [--window 40] [--unpaced-window 20]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, cast

import pika

from bench.common import (
    BROKER_URL,
    RESULTS,
    ChangingCpuMeter,
    CpuMeter,
    Group,
    child_env,
    ledger_url,
    log,
    percentile,
    postgres_processes,
    rabbitmq_processes,
    uid,
)
from bench.contenders import SandboxProc, Stack
from bench.scale import command_id, seed

PY = sys.executable
PREFETCH = 16  # Dramatiq's consumer prefetch for 8 worker threads
_COMMAND_ID = re.compile(rb'"command_id"\s*:\s*"([^"]+)"')


# --- the processes that take polls (run as children of the bench) ----------------------------------


def consume(queue: str, until: float, out: Path) -> None:
    """Take each command and ack it on its own until ``until``; write (command_id, taken at) pairs."""
    taken: list[tuple[str, float]] = []
    connection = pika.BlockingConnection(pika.URLParameters(BROKER_URL))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=PREFETCH)
    for method, _properties, body in channel.consume(queue, inactivity_timeout=0.2):
        now = time.time()
        if method is not None:
            match = _COMMAND_ID.search(body)
            taken.append((match.group(1).decode() if match else "?", now))
            channel.basic_ack(method.delivery_tag)
        if now >= until:
            break
    channel.cancel()
    connection.close()
    out.write_text(json.dumps(taken))


def claim(url: str, threads: int, batch: int, idle: float, hold: float, until: float, out: Path) -> None:
    """``threads`` threads each claiming up to ``batch`` due rows through the ledger's ``take_due``."""
    from worker.ledger import open_ledger

    ledger = open_ledger(url)
    taken: list[tuple[str, float]] = []
    lock = threading.Lock()

    def loop() -> None:
        mine: list[tuple[str, float]] = []
        # Threads started together would wake together; spread over the wait, they look for due rows
        # ``threads`` times per wait between them, as independent worker threads would.
        time.sleep(random.uniform(0, idle))
        while (now := time.time()) < until:
            due = ledger.take_due("itrx", now, batch, hold)
            held = time.time()
            mine.extend((order.command_id, held) for order in due)
            if not due:  # a worker thread with nothing to do waits; with work it claims again at once
                time.sleep(min(idle, max(0.0, until - time.time())))
        with lock:
            taken.extend(mine)

    workers = [threading.Thread(target=loop, name=f"claimer-{k}") for k in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    ledger.close()
    out.write_text(json.dumps(taken))


# --- one measurement -----------------------------------------------------------------------------------


def _child(log_dir: Path, name: str, *args: str) -> Group:
    return Group(name, [PY, "-m", "bench.poll_handout", *args], child_env(), log_dir)


def measure(
    design: str,
    log_dir: Path,
    tmp: Path,
    *,
    rows: int,
    rate: float | None,
    window: float,
    threads: int,
    processes: int,
    batch: int,
    interval: float,
) -> dict[str, Any]:
    """One design at one pace: seed, start its processes, hand out polls for ``window`` seconds."""
    tag = uid()[:8]
    pace = rate or 1e6  # unpaced: the whole table due within a fraction of a second
    with ledger_url("postgres", tmp, pool_size=threads + 2) as url:
        lead = 12.0 + rows * 40e-6
        t0 = time.time() + lead
        seed_s = seed(url, rows, tag, t0, pace)
        end = t0 + window
        groups: list[Group] = []
        stack: Stack | None = None
        try:
            outs: list[Path] = []
            if design == "quorum queue":
                stack = Stack(
                    # The scheduler never calls a partner: the sandbox's place is taken by a closed port.
                    SandboxProc(group=cast(Group, None), url="http://127.0.0.1:9"),
                    url,
                    log_dir,
                    {
                        "ORDER_WORKER_SUBMIT_STUCK_SECONDS": "600",  # the hold outlasts the window
                        "ORDER_WORKER_SCHEDULER_INTERVAL": str(interval),
                    },
                )
                stack.declare_queues()
                # The relay publishes events whichever way polls are handed out: not part of the cost.
                scheduler, _ = stack.start("scheduler", "--no-relay", name="handout-scheduler")
                outs.append(tmp / f"taken-{tag}-consumer.json")
                groups.append(
                    _child(log_dir, "handout-consumer", "consume", stack.poll_queue, str(end), str(outs[0]))
                )
                takers = {"scheduler": [scheduler], "consumer": groups[:]}
            else:
                per = max(1, threads // processes)
                for k in range(processes):
                    outs.append(tmp / f"taken-{tag}-claimer{k}.json")
                    groups.append(
                        _child(
                            log_dir,
                            f"handout-claimer{k}",
                            "claim",
                            url,
                            str(per),
                            str(batch),
                            str(interval),
                            "600",
                            str(end),
                            str(outs[-1]),
                        )
                    )
                takers = {"claimers": groups[:]}
            if time.time() > t0:
                log(f"poll_handout: start-up ended {time.time() - t0:.1f} s after the first due time")
            time.sleep(max(0.0, t0 + 1 - time.time()))
            meters: dict[str, CpuMeter | ChangingCpuMeter] = {
                name: CpuMeter(p for g in gs for p in g.processes()) for name, gs in takers.items()
            }
            meters["rabbitmq"] = CpuMeter(rabbitmq_processes())
            meters["postgres"] = pg = ChangingCpuMeter(postgres_processes)
            t_a, cpu_a = time.time(), {name: meter() for name, meter in meters.items()}
            while time.time() < end - 1.3:
                time.sleep(1.0)
                pg()  # keeps the CPU of backends that exit before the end
            time.sleep(max(0.0, end - 0.3 - time.time()))
            t_b, cpu_b = time.time(), {name: meter() for name, meter in meters.items()}
            for group in groups:
                group.wait_or_kill(30)
        finally:
            for group in groups:
                group.stop()
            if stack is not None:
                stack.stop()
    taken: list[tuple[str, float]] = []
    for path in outs:
        taken.extend((cid, float(at)) for cid, at in json.loads(path.read_text()))
    return _figures(design, rate, tag, t0, pace, rows, seed_s, taken, (t_a, cpu_a), (t_b, cpu_b))


def _figures(
    design: str,
    rate: float | None,
    tag: str,
    t0: float,
    pace: float,
    rows: int,
    seed_s: float,
    taken: list[tuple[str, float]],
    start: tuple[float, dict[str, float]],
    end: tuple[float, dict[str, float]],
) -> dict[str, Any]:
    (t_a, cpu_a), (t_b, cpu_b) = start, end
    counts = Counter(cid for cid, _ in taken)
    prefix = command_id(tag, 0)[:-6]
    in_span = [(cid, at) for cid, at in taken if t_a <= at <= t_b]
    latency = [at - (t0 + int(cid[len(prefix) :]) / pace) for cid, at in in_span if cid.startswith(prefix)]
    per = max(len(in_span), 1)
    spent = {name: cpu_b[name] - cpu_a[name] for name in cpu_a}
    due_in_span = min(rows, int((t_b - t0) * pace)) - min(rows, max(0, int((t_a - t0) * pace)))
    # Unpaced, the rate is taken up to the last hand-out: a table drained early must not count idle time.
    busy = (max(at for _, at in in_span) if in_span and rate is None else t_b) - t_a
    return {
        "design": design,
        "pace": f"{rate:g}/s" if rate else "unpaced",
        "rows": rows,
        "seed_s": round(seed_s, 1),
        "span_s": round(t_b - t_a, 1),
        "handed_out": len(in_span),
        "due_in_span": due_in_span,
        "handed_out_per_s": round(len(in_span) / max(busy, 1e-6), 1),
        "handed_out_in_all": len(taken),
        "backlog_left": rows - len(counts),
        "duplicates": sum(1 for count in counts.values() if count > 1),
        # Unpaced, every row is due at the start: its latency is the backlog's queueing, not the design's.
        "latency_p50_ms": round(percentile(latency, 50) * 1000, 1),
        "latency_p99_ms": round(percentile(latency, 99) * 1000, 1),
        "cpu_us_per_poll": {name: round(value / per * 1e6, 1) for name, value in spent.items()},
        "cpu_us_per_poll_all": round(sum(spent.values()) / per * 1e6, 1),
        "cpu_s": {name: round(value, 2) for name, value in spent.items()},
    }


def run(
    log_dir: Path,
    tmp: Path,
    *,
    rows: int = 200_000,
    rate: float = 37.0,
    window: float = 40.0,
    unpaced_window: float = 20.0,
    threads: int = 8,
    processes: int = 2,
    batch: int = 2,
    interval: float = 1.0,
) -> dict[str, Any]:
    results = []
    for pace, span in ((rate, window), (None, unpaced_window)):
        for design in ("quorum queue", "straight from the ledger"):
            log(f"poll_handout: {design}, {'unpaced' if pace is None else f'{pace:g}/s'}")
            results.append(
                measure(
                    design,
                    log_dir,
                    tmp,
                    rows=rows,
                    rate=pace,
                    window=span,
                    threads=threads,
                    processes=processes,
                    batch=batch,
                    interval=interval,
                )
            )
    return {
        "rows": rows,
        "claimers": f"{threads} threads in {processes} processes, batches of {batch}",
        "consumer_prefetch": PREFETCH,
        "interval_s": interval,
        "results": results,
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"## Handing out a scheduled poll: {result['rows']:,} rows in the due table (PostgreSQL)",
        "",
        f"Quorum queue: the real scheduler (pass every {result['interval_s']:g} s when idle) and one "
        f"consumer with prefetch {result['consumer_prefetch']} acking each command. Straight from the ledger:"
        f" {result['claimers']}, idle wait {result['interval_s']:g} s. CPU in µs per poll handed out.",
        "",
        "| design | pace | handed out/s | due in window | handed out in window | twice "
        "| latency p50 / p99, ms "
        "| scheduler or claimers | consumer | RabbitMQ | PostgreSQL | all |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in result["results"]:
        cpu = r["cpu_us_per_poll"]
        own = cpu.get("scheduler", cpu.get("claimers"))
        lines.append(
            f"| {r['design']} | {r['pace']} | {r['handed_out_per_s']} "
            f"| {r['due_in_span'] if r['pace'] != 'unpaced' else 'all at start'} "
            f"| {r['handed_out']} | {r['duplicates']} | {r['latency_p50_ms']} / {r['latency_p99_ms']} "
            f"| {own} | {cpu.get('consumer', '-')} | {cpu['rabbitmq']} | {cpu['postgres']} "
            f"| {r['cpu_us_per_poll_all']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="role")
    c = sub.add_parser("consume", help="(internal) the quorum queue's consumer")
    c.add_argument("queue")
    c.add_argument("until", type=float)
    c.add_argument("out", type=Path)
    k = sub.add_parser("claim", help="(internal) claimer threads")
    for name, kind in (("url", str), ("threads", int), ("batch", int), ("idle", float), ("hold", float)):
        k.add_argument(name, type=kind)
    k.add_argument("until", type=float)
    k.add_argument("out", type=Path)
    parser.add_argument("--rows", type=int, default=200_000, help="rows in the due table (default 200000)")
    parser.add_argument(
        "--rate", type=float, default=37.0, help="paced run: polls due per second (default 37)"
    )
    parser.add_argument("--window", type=float, default=40.0, help="paced run: seconds measured (default 40)")
    parser.add_argument(
        "--unpaced-window", type=float, default=20.0, help="unpaced run: seconds (default 20)"
    )
    parser.add_argument("--threads", type=int, default=8, help="claimer threads in all (default 8)")
    parser.add_argument("--processes", type=int, default=2, help="claimer processes (default 2)")
    parser.add_argument("--batch", type=int, default=2, help="rows per claim (default 2)")
    parser.add_argument(
        "--interval", type=float, default=1.0, help="scheduler pass interval = claimer idle wait (default 1)"
    )
    args = parser.parse_args()
    if args.role == "consume":
        consume(args.queue, args.until, args.out)
        return
    if args.role == "claim":
        claim(args.url, args.threads, args.batch, args.idle, args.hold, args.until, args.out)
        return
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="ow-handout-") as tmp_name:
        tmp = Path(tmp_name)
        result = run(
            tmp,
            tmp,
            rows=args.rows,
            rate=args.rate,
            window=args.window,
            unpaced_window=args.unpaced_window,
            threads=args.threads,
            processes=args.processes,
            batch=args.batch,
            interval=args.interval,
        )
    result["command"] = " ".join(["python -m bench.poll_handout", *sys.argv[1:]])
    result["took_s"] = round(time.time() - started)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"poll-handout-{time.strftime('%Y%m%d-%H%M%S')}"
    text = markdown(result)
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2))
    stem.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
