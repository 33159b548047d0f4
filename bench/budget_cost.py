"""Budget cost: what one charge of the shared weight budget costs as the budget fills, per-second buckets
(``Ledger.take_weight``) against a sliding log of one row per charge, side by side.

Every take of a budget runs under the budget's row lock, so its cost is paid by every replica in turn and
must not grow with the weight in the window. REPLICAS processes share one throwaway PostgreSQL schema, as
replicas share a ledger; each takes weight 1 (a 0trace read) from the same budget (LIMIT, WINDOW: the
policy's 2,250 of 2,500 and its 60 + 1 s) on the real clock. A phase does not wait a whole window to fill
it: the window's charges are written first (the rows each algorithm would hold), with timestamps over the
window before the phase, laid out so that the oldest leave as fast as the phase's takes come in and the
budget stays LEVEL used throughout; then the replicas run for SECONDS. Two series of phases:

* at the level's rate (LEVEL x LIMIT / WINDOW takes per second, 3.7 to 37): the budget used that way, the
  window an even spread of charges;
* at one CONSTANT rate for every level (default 9 takes per second): the same number of takes per second
  whatever the level, so a cost that moves with the take rate (idle cores waking up between takes at low
  rates, for both algorithms alike) is out of the comparison and only the window's content differs.

A short phase before them is not reported: new connections and tables cost more for a few seconds.

Both algorithms run in each phase, on budgets of their own: at every tick a replica takes from one then
the other (the order alternating), each over its own connection, so both see the same machine at the
same moments. The sliding log is one row per charge (``bench_log_charges``), expired rows deleted and the
window summed on every take; its SQL is the log's, against tables of its own.

Per phase and algorithm: takes, share refused (at 100 % a take fits only when an older charge leaves),
mean and p99 wall time of the take call in the replica, and the PostgreSQL server's CPU per take: the
CPU of the backends serving that algorithm's connections (``/proc/<pid>/schedstat``, nanoseconds; psutil's
10 ms ticks are too coarse at a few takes per second). The flat-cost target: max / min over the levels of
the mean wall time and of the server CPU per take, within 1.2, for each series. Prints a Markdown table
and writes ``bench/results/budget-cost-<time>.json``::

    .venv/bin/python -m bench.budget_cost [--seconds 12] [--levels 10,25,50,75,100] [--replicas 3]
        [--constant-rate 9]
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import signal
import statistics
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench.common import RESULTS, ledger_url, log, percentile, uid
from worker.ledger import open_ledger
from worker.ledger.engine import Database
from worker.ledger.sql import SqlLedger

LIMIT = 2250
WINDOW = 61.0
ALGORITHMS = ("buckets", "log")
WARM_UP_SECONDS = 4.0


class LogBudget:
    """The sliding log: one row per charge; a take deletes the expired rows and sums the window (up to
    LIMIT rows at weight 1) under the budget's row lock, then inserts its own row."""

    DDL = (
        "CREATE TABLE IF NOT EXISTS bench_log_budgets ("
        " name TEXT PRIMARY KEY, blocked_until DOUBLE PRECISION NOT NULL DEFAULT 0)",
        "CREATE TABLE IF NOT EXISTS bench_log_charges ("
        " name TEXT NOT NULL, at DOUBLE PRECISION NOT NULL, weight INTEGER NOT NULL)",
        "CREATE INDEX IF NOT EXISTS bench_log_charges_name_at ON bench_log_charges (name, at)",
    )
    CREATE = "INSERT INTO bench_log_budgets (name, blocked_until) VALUES (?, ?) ON CONFLICT DO NOTHING"
    LOCK = "SELECT blocked_until FROM bench_log_budgets WHERE name = ? FOR UPDATE"
    EXPIRE = "DELETE FROM bench_log_charges WHERE name = ? AND at <= ?"
    USED = "SELECT COALESCE(SUM(weight), 0) FROM bench_log_charges WHERE name = ?"
    CHARGE = "INSERT INTO bench_log_charges (name, at, weight) VALUES (?, ?, ?)"
    OLDEST = "SELECT at, weight FROM bench_log_charges WHERE name = ? AND weight > 0 ORDER BY at LIMIT ?"

    def __init__(self, database: Database) -> None:
        self.db = database

    def take_weight(self, name: str, weight: int, now: float, window: float, limit: int) -> float:
        with self.db.write(durable=False) as s:
            row = s.one(self.LOCK, (name,))
            if row is None:
                s.run(self.CREATE, (name, 0.0))
                row = s.one(self.LOCK, (name,))
                assert row is not None
            blocked_until = float(row[0])
            if blocked_until > now:
                return blocked_until - now
            s.run(self.EXPIRE, (name, now - window))
            total = s.one(self.USED, (name,))
            used = int(total[0]) if total else 0
            if used + weight <= limit:
                s.run(self.CHARGE, (name, now, weight))
                return 0.0
            if weight > limit:
                return window
            need = used + weight - limit
            oldest = s.rows(self.OLDEST, (name, need))
        freed = 0
        for at, charged in oldest:
            freed += int(charged)
            if freed >= need:
                return max(0.01, float(at) + window - now)
        return window


class Takers:
    """Both algorithms over one ledger URL, each on a connection of its own."""

    def __init__(self, url: str) -> None:
        single = f"{url}&pool_size=1&pool_min=1"
        buckets, log_ledger = open_ledger(single), open_ledger(single)
        assert isinstance(buckets, SqlLedger) and isinstance(log_ledger, SqlLedger)
        self.buckets, self.log_ledger = buckets, log_ledger
        self.log = LogBudget(log_ledger.database)

    def take(self, algorithm: str, name: str, now: float, limit: int, window: float) -> float:
        if algorithm == "buckets":
            return self.buckets.take_weight(name, 1, now, window, limit)
        return self.log.take_weight(name, 1, now, window, limit)

    def backend_pids(self) -> dict[str, int]:
        pids = {}
        for algorithm, ledger in (("buckets", self.buckets), ("log", self.log_ledger)):
            with ledger.database.read() as s:
                row = s.one("SELECT pg_backend_pid()")
            assert row is not None
            pids[algorithm] = int(row[0])
        return pids

    def close(self) -> None:
        self.buckets.close()
        self.log_ledger.close()


def replica(url: str, conn: Connection) -> None:
    """One replica: answers each phase sent by the parent with its takes' wall times."""
    takers = Takers(url)
    try:
        # psycopg prepares a statement on its fifth run: the first phase must not pay the first four.
        for algorithm in ALGORITHMS:
            for _ in range(10):
                takers.take(algorithm, f"warm-up-{uid()}", time.time(), LIMIT, WINDOW)
        conn.send(takers.backend_pids())
        while (phase := _next_phase(conn)) is not None:
            times: dict[str, list[float]] = {a: [] for a in ALGORITHMS}
            refused = dict.fromkeys(ALGORITHMS, 0)
            due, tick = phase["start"] + phase["offset"], 0
            while due < phase["end"]:
                time.sleep(max(0.0, due - time.time()))
                order = ALGORITHMS if tick % 2 == 0 else ALGORITHMS[::-1]
                for algorithm in order:
                    began = time.perf_counter()
                    wait = takers.take(algorithm, phase["names"][algorithm], time.time(), LIMIT, WINDOW)
                    times[algorithm].append(time.perf_counter() - began)
                    refused[algorithm] += wait > 0
                tick += 1
                due += phase["period"]
            conn.send({"times": times, "refused": refused})
    finally:
        takers.close()


def _next_phase(conn: Connection) -> dict[str, Any] | None:
    """The parent's next phase; None at the end, or when the parent is gone."""
    try:
        phase: dict[str, Any] | None = conn.recv()
    except EOFError:
        return None
    return phase


def cpu_ns(pids: list[int]) -> int:
    """CPU time of these processes so far, nanoseconds."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/schedstat") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:  # a kernel without scheduler statistics: clock ticks of utime + stime
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) * 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    return total


def window_times(level: float, rate: float, seconds: float, start: float) -> list[float]:
    """The charges (weight 1) in the window at ``start`` that keep it ``level`` used while takes come at
    ``rate`` per second for ``seconds``: the oldest leave at that rate during the phase, the rest are
    spread evenly over the later part of the window. At the level's own rate that is one even spread."""
    count = round(level * LIMIT)
    leaving = min(count, round(rate * seconds))
    times = [start - WINDOW + (i + 0.5) / rate for i in range(leaving)]
    rest, span = count - leaving, WINDOW - leaving / rate
    times += [start - span + (i + 0.5) * span / rest for i in range(rest)]
    return times


def prefill(takers: Takers, names: dict[str, str], times: list[float]) -> None:
    """Writes the window's charges directly (a take per charge would take seconds, and the window would
    leave its level while it ran): rows of the log, and the per-second rows ``take_weight`` keeps (the
    charges' weight per second and the latest of them)."""
    seconds: dict[int, list[float]] = {}
    for at in times:
        seconds.setdefault(math.floor(at), []).append(at)
    with takers.log_ledger.database.write() as tx:
        tx.run(
            "INSERT INTO bench_log_charges (name, at, weight) SELECT ?, unnest(?::float8[]), 1",
            (names["log"], times),
        )
    with takers.buckets.database.write() as tx:
        tx.run(
            "INSERT INTO rate_buckets (name, second, weight, last_at)"
            " SELECT ?, unnest(?::bigint[]), unnest(?::int[]), unnest(?::float8[])",
            (
                names["buckets"],
                list(seconds),
                [len(ats) for ats in seconds.values()],
                [max(ats) for ats in seconds.values()],
            ),
        )


def _phase_rows(
    pacing: str, level: int, results: list[dict[str, Any]], cpu: dict[str, int]
) -> list[dict[str, Any]]:
    rows = []
    for algorithm in ALGORITHMS:
        times = [t for r in results for t in r["times"][algorithm]]
        refused = sum(r["refused"][algorithm] for r in results)
        rows.append(
            {
                "pacing": pacing,
                "level_pct": level,
                "algorithm": algorithm,
                "takes": len(times),
                "refused_share": round(refused / len(times), 3),
                "mean_ms": round(statistics.fmean(times) * 1e3, 3),
                "p99_ms": round(percentile(times, 99) * 1e3, 3),
                "server_cpu_us_per_take": round(cpu[algorithm] / len(times) / 1e3, 1),
            }
        )
    return rows


def run(seconds: float, levels: list[int], replicas: int, constant_rate: float) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    rows: list[dict[str, Any]] = []
    # A first, unreported phase: the first seconds of new connections and new tables cost more than the
    # rest, and would be charged to whichever level came first.
    phases = [("warm-up", 50, 9.0)]
    phases += [("level's rate", level, level / 100 * LIMIT / WINDOW) for level in levels]
    if constant_rate > 0:
        phases += [(f"constant {constant_rate:g}/s", level, constant_rate) for level in levels]
    with tempfile.TemporaryDirectory() as tmp, ledger_url("postgres", Path(tmp)) as url:
        setup = open_ledger(url)
        setup.migrate()
        assert isinstance(setup, SqlLedger)
        with setup.database.write() as tx:
            for statement in LogBudget.DDL:
                tx.run(statement)
        setup.close()
        parent = Takers(url)
        pipes: list[Connection] = []
        procs: list[Any] = []
        try:
            for _ in range(replicas):
                mine, theirs = context.Pipe()
                proc = context.Process(target=replica, args=(url, theirs), daemon=True)
                proc.start()
                pipes.append(mine)
                procs.append(proc)
            backends: dict[str, list[int]] = {a: [] for a in ALGORITHMS}
            for pipe in pipes:
                for algorithm, pid in pipe.recv().items():
                    backends[algorithm].append(pid)
            for pacing, level, rate in phases:
                length = WARM_UP_SECONDS if pacing == "warm-up" else seconds
                log(f"budget cost: {level} % used, {rate:.1f} takes/s ({pacing}), {length:g} s")
                names = {a: f"{a}-{level}-{uid()}" for a in ALGORITHMS}
                start = time.time() + 0.5
                prefill(parent, names, window_times(level / 100, rate, length, start))
                if time.time() > start:
                    log("budget cost: the window was filled late; the phase starts below its level")
                phase = {"names": names, "start": start, "end": start + length, "period": replicas / rate}
                cpu_before = {a: cpu_ns(backends[a]) for a in ALGORITHMS}
                for index, pipe in enumerate(pipes):
                    pipe.send({**phase, "offset": index / rate})
                results = [pipe.recv() for pipe in pipes]
                cpu = {a: cpu_ns(backends[a]) - cpu_before[a] for a in ALGORITHMS}
                if pacing != "warm-up":
                    rows += _phase_rows(pacing, level, results, cpu)
                with parent.log_ledger.database.write() as tx:
                    tx.run("DELETE FROM bench_log_charges WHERE name = ?", (names["log"],))
        finally:
            for pipe in pipes:
                pipe.send(None)
            for proc in procs:
                proc.join(10)
            parent.close()
    flat: dict[str, dict[str, dict[str, float]]] = {}
    for pacing in dict.fromkeys(r["pacing"] for r in rows):
        for algorithm in ALGORITHMS:
            own = [r for r in rows if r["algorithm"] == algorithm and r["pacing"] == pacing]
            flat.setdefault(pacing, {})[algorithm] = {
                key: round(max(r[key] for r in own) / min(r[key] for r in own), 2)
                for key in ("mean_ms", "server_cpu_us_per_take")
            }
    return {
        "command": " ".join(["python -m bench.budget_cost", *sys.argv[1:]]),
        "replicas": replicas,
        "limit": LIMIT,
        "window_s": WINDOW,
        "seconds_per_phase": seconds,
        "cpus": os.cpu_count(),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "rows": rows,
        "max_over_min": flat,
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "| pacing | budget used | algorithm | takes | refused | mean ms | p99 ms | server CPU µs/take |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['pacing']} | {r['level_pct']} % | {r['algorithm']} | {r['takes']} "
            f"| {r['refused_share']:.0%} | {r['mean_ms']:.3f} | {r['p99_ms']:.3f} "
            f"| {r['server_cpu_us_per_take']:.1f} |"
        )
    lines += [
        "",
        "| pacing | algorithm | max/min mean wall time | max/min server CPU per take |",
        "|---|---|---:|---:|",
    ]
    for pacing, per_algorithm in result["max_over_min"].items():
        for algorithm, ratios in per_algorithm.items():
            cpu = ratios["server_cpu_us_per_take"]
            lines.append(f"| {pacing} | {algorithm} | {ratios['mean_ms']:.2f} | {cpu:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Needs PostgreSQL on 127.0.0.1:5432 (ORDER_WORKER_TEST_POSTGRES_URL overrides it); about "
        "2.5 minutes with the defaults. bench/README.md, section 'Budget cost', has the latest figures.",
    )
    parser.add_argument("--seconds", type=float, default=12.0, help="measured seconds per phase (default 12)")
    parser.add_argument(
        "--levels", default="10,25,50,75,100", help="budget used in each phase, percent (default 10,...,100)"
    )
    parser.add_argument("--replicas", type=int, default=3, help="replica processes taking (default 3)")
    parser.add_argument(
        "--constant-rate",
        type=float,
        default=9.0,
        help="takes per second of the second series of phases, the same at every level (0: none; at most "
        "the lowest level's charges / --seconds, default 9)",
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # drop the schema, stop the replicas
    levels = [int(x) for x in args.levels.split(",")]
    started = time.monotonic()
    result = run(args.seconds, levels, args.replicas, args.constant_rate)
    result["total_seconds"] = round(time.monotonic() - started, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"budget-cost-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))
    log(f"budget cost: {result['total_seconds']} s, wrote {path}")


if __name__ == "__main__":
    main()
