"""Scale: 100,000 open orders tracked by one worker and one scheduler.

The ledger is seeded with N open itrx orders (status ``processing``) whose first polls are due evenly
spread: order i is due at ``T0 + i / rate``, and the poll interval is ``N / rate`` seconds, which is the
steady state of N orders each polled once per interval. The sandbox holds the same N orders. Then the real
``order-worker scheduler`` (scheduler + relay) and ``order-worker worker`` run for ``window`` seconds:

* lateness of a due poll = the moment its result was recorded (``updated_at``, set after the partner
  answered) minus its due time; orders due in the window but never polled count as late until the end;
* worker RSS growth = sum of the worker processes' RSS at the end minus after the first 5 s;
* cost per poll = CPU seconds of the scheduler and of the worker processes in the window, per poll done;
  plus the ledger's own ``take_due`` scan and one ``apply_observation`` timed in-process on the full table.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from pathlib import Path
from typing import Any

from bench.common import CpuMeter, ledger_url, libpq_url, log, percentile, rabbitmq_processes, uid
from bench.contenders import Stack, launch_sandbox
from bench.seeded_sandbox import TRON, serial

ITRX_COMMAND = {"energy_amount": 65000, "period": "1H", "receive_address": TRON}


def _rows(n: int, tag: str, t0: float, rate: float) -> Any:
    snapshot = json.dumps(
        {
            "serial": None,
            "receive_address": TRON,
            "energy_amount": 65000,
            "delegated_energy": 0,
            "period": "1H",
            "cost_sun": "3900000",
            "refund_sun": "0",
            "created_at": "2026-01-01T00:00:00.000Z",
            "created_at_unix": 1767225600,
            "delegations": [],
        },
        separators=(",", ":"),
    )
    for i in range(n):
        cid = f"scale-{tag}-{i:06d}"
        command = json.dumps(
            {"command_id": cid, "provider": "itrx", "params": ITRX_COMMAND, "ref_code": None, "metadata": {}},
            separators=(",", ":"),
        )
        yield (
            cid,
            "itrx",
            hashlib.sha256(cid.encode()).hexdigest(),
            command,
            "ow-" + hashlib.sha256(("ref" + cid).encode()).hexdigest()[:41],
            "processing",
            "20",
            serial(tag, i),
            snapshot,
            None,
            None,
            False,
            1,
            False,
            None,
            t0 + i / rate,
            None,
            None,
            None,
            1,
            t0 - 60,
            t0 - 60,
        )


def seed(url: str, n: int, tag: str, t0: float, rate: float) -> float:
    from worker.ledger import open_ledger
    from worker.ledger.rows import COLUMNS as _COLUMNS

    started = time.perf_counter()
    ledger = open_ledger(url)
    ledger.migrate()
    sql = f"INSERT INTO orders ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)})"
    if url.startswith("sqlite"):
        import sqlite3

        path = url.split("sqlite:///", 1)[1].split("?", maxsplit=1)[0]
        ledger.close()
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.executemany(sql, _rows(n, tag, t0, rate))
            conn.commit()
    else:
        import psycopg

        ledger.close()
        from worker.ledger.rows import COLUMNS as columns

        with psycopg.connect(libpq_url(url)) as conn, conn.cursor() as cur:
            with cur.copy(f"COPY orders ({', '.join(columns)}) FROM STDIN") as copy:
                for row in _rows(n, tag, t0, rate):
                    copy.write_row(row)
            conn.commit()
    return time.perf_counter() - started


def run(
    log_dir: Path,
    tmp: Path,
    *,
    orders: int,
    rate: float,
    window: float,
    ledger_kind: str = "sqlite",
    processes: int = 1,
    threads: int = 8,
) -> dict[str, Any]:
    tag = uid()[:8]
    interval = orders / rate
    log(f"scale: seeding {orders} itrx orders in the sandbox and the {ledger_kind} ledger")
    sandbox = launch_sandbox(
        log_dir,
        "--itrx-orders",
        str(orders),
        "--tag",
        tag,
        name="sandbox-scale",
        module="bench.seeded_sandbox",
    )
    result: dict[str, Any] = {
        "orders": orders,
        "rate_per_s": rate,
        "poll_interval_s": interval,
        "window_s": window,
        "ledger": ledger_kind,
        "processes": processes,
        "threads": threads,
    }
    try:
        with ledger_url(ledger_kind, tmp, pool_size=threads + 2) as url:
            lead = 25.0  # worker and scheduler start-up happen before the first due time
            t0 = time.time() + lead
            result["seed_s"] = round(seed(url, orders, tag, t0, rate), 1)
            settings = {
                "ORDER_WORKER_POLL_PROCESSING": str(interval),
                "ORDER_WORKER_ITRX_CHECK_BALANCE": "false",
            }
            stack = Stack(sandbox, url, log_dir, settings)
            try:
                stack.declare_queues()
                sched, _ = stack.start("scheduler", name="scale-scheduler")
                worker, _ = stack.start(
                    "worker", "--processes", str(processes), "--threads", str(threads), name="scale-worker"
                )
                if time.time() > t0:
                    log(
                        f"scale: start-up took {time.time() - t0 + lead:.0f} s, "
                        f"longer than the {lead:.0f} s lead"
                    )
                time.sleep(max(0.0, t0 - time.time()))
                worker_cpu = CpuMeter(worker.processes())
                sched_cpu = CpuMeter(sched.processes())
                rabbit_cpu = CpuMeter(rabbitmq_processes())
                sandbox_cpu = CpuMeter(sandbox.group.processes())
                rss: list[tuple[float, int]] = []
                end = t0 + window
                marks: dict[str, tuple[float, ...]] = {}
                while (now := time.time()) < end:
                    rss.append((now - t0, worker_cpu.rss()))
                    if "start" not in marks and now - t0 >= 5:
                        marks["start"] = (now, worker_cpu(), sched_cpu(), rabbit_cpu(), sandbox_cpu())
                    time.sleep(1.0)
                marks["end"] = (time.time(), worker_cpu(), sched_cpu(), rabbit_cpu(), sandbox_cpu())
                rss.append((time.time() - t0, worker_cpu.rss()))
                result.update(_analyse(url, tag, t0, rate, window, marks, rss))
                result["take_due_ms"], result["apply_observation_ms"] = _ledger_costs(url)
            finally:
                stack.stop()
    finally:
        sandbox.group.stop()
    return result


def _analyse(
    url: str,
    tag: str,
    t0: float,
    rate: float,
    window: float,
    marks: dict[str, tuple[float, ...]],
    rss: list[tuple[float, int]],
) -> dict[str, Any]:
    from worker.ledger import open_ledger

    end = t0 + window
    due_in_window = int(window * rate)
    ledger = open_ledger(url)
    try:
        with ledger.database.read() as s:  # type: ignore[attr-defined]
            rows = s.rows("SELECT command_id, updated_at FROM orders WHERE updated_at >= ?", (t0 - 1,))
    finally:
        ledger.close()
    polled = {cid: at for cid, at in rows}
    lateness = []
    missed = 0
    prefix = f"scale-{tag}-"
    for i in range(due_in_window):
        at = polled.get(f"{prefix}{i:06d}")
        due = t0 + i / rate
        if at is None:
            missed += 1
            lateness.append(end - due)
        else:
            lateness.append(at - due)
    (t_a, w_a, s_a, r_a, b_a), (t_b, w_b, s_b, r_b, b_b) = marks["start"], marks["end"]
    polls_in_span = sum(1 for at in polled.values() if t_a <= at <= t_b)
    start_rss = next((b for t, b in rss if t >= 5), rss[0][1])
    per = max(polls_in_span, 1)
    return {
        "due_in_window": due_in_window,
        "polled": len(polled),
        "not_polled_by_end": missed,
        "lateness_p50_s": round(percentile(lateness, 50), 3),
        "lateness_p99_s": round(percentile(lateness, 99), 3),
        "lateness_max_s": round(max(lateness), 3) if lateness else None,
        "polls_per_s": round(polls_in_span / (t_b - t_a), 1),
        "worker_rss_mb_start": round(start_rss / 2**20, 1),
        "worker_rss_mb_end": round(rss[-1][1] / 2**20, 1),
        "worker_rss_growth_mb": round((rss[-1][1] - start_rss) / 2**20, 2),
        "cpu_us_per_poll": {
            "worker": round((w_b - w_a) / per * 1e6, 1),
            "scheduler_and_relay": round((s_b - s_a) / per * 1e6, 1),
            "rabbitmq": round((r_b - r_a) / per * 1e6, 1),
            "sandbox": round((b_b - b_a) / per * 1e6, 1),
        },
    }


def _ledger_costs(url: str) -> tuple[float, float]:
    """take_due's scan (batch 500, nothing due: the index seek) and apply_observation, on the full table."""
    from worker.ledger import open_ledger
    from worker.messages import Source
    from worker.partners.base import PartnerOrder
    from worker.status import Status

    ledger = open_ledger(url)
    try:
        now = time.time()
        started = time.perf_counter()
        for _ in range(20):
            ledger.take_due(now - 3600, 500, 0)  # the same statement; the past "now" keeps rows untouched
        take_due = (time.perf_counter() - started) / 20 * 1000
        with ledger.database.read() as s:  # type: ignore[attr-defined]
            ids = [
                r[0]
                for r in s.rows(
                    "SELECT command_id, order_id FROM orders WHERE status = 'processing' LIMIT 200"
                )
            ]
        observation = PartnerOrder(order_id="x", provider_status="20", status=Status.PROCESSING, order={})
        started = time.perf_counter()
        for cid in ids:
            ledger.apply_observation(cid, observation, Source.POLL, now, now + 600)
        apply = (time.perf_counter() - started) / max(len(ids), 1) * 1000
    finally:
        ledger.close()
    return round(take_due, 3), round(apply, 3)
