"""Scale: open orders tracked by the real scheduler(s) and one worker, on SQLite or PostgreSQL.

The ledger is seeded with N open itrx orders (status ``processing``) whose first polls are due evenly
spread: order i is due at ``T0 + i / rate``, and the poll interval is ``N / rate`` seconds, which is the
steady state of N orders each polled once per interval (so within the window no order is due twice). The
sandbox answers the same N orders (``bench.seeded_sandbox``, built on first read and counted). Then the
real ``order-worker scheduler`` process(es) (scheduler + relay) and ``order-worker worker`` run for
``window`` seconds. The bench drives those processes rather than calling the scheduler's code, so it keeps
measuring whatever the scheduler does after it changes (per-provider pacing, tiers, another due index).

* lateness of a due poll = the moment its result was recorded (``updated_at``, set after the partner
  answered) minus its due time; orders due in the window but never polled count as late until the end;
* polled twice = seeded orders the partner (the sandbox) was asked about more than once: with several
  schedulers sharing one ledger this is the figure that says whether the ledger hands a due row to one
  of them only;
* RSS growth of the worker and of each scheduler = RSS at the end minus after the first 5 s;
* cost per poll = CPU seconds of each process group in the window, per poll done; on PostgreSQL also the
  server's processes, and each scheduler's CPU per 1,000 due rows handed out;
* on PostgreSQL, ``EXPLAIN (ANALYZE, BUFFERS)`` of every due-order statement the ledger object holds, on
  the full table: read from the ledger instance rather than written here, so the plan shown is the one of
  the statement the scheduler runs;
* ``take_due`` / ``apply_observation`` timed in-process on the full table.

    .venv/bin/python -m bench.scale --orders 1000000 --ledger postgres --schedulers 2
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import (
    RESULTS,
    ChangingCpuMeter,
    CpuMeter,
    ledger_url,
    libpq_url,
    log,
    percentile,
    postgres_processes,
    rabbitmq_processes,
    uid,
)
from bench.contenders import Stack, launch_sandbox
from bench.seeded_sandbox import TRON, serial

ITRX_COMMAND = {"energy_amount": 65000, "period": "1H", "receive_address": TRON}


def _snapshot() -> str:
    return json.dumps(
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


def command_id(tag: str, index: int) -> str:
    return f"scale-{tag}-{index:06d}"


def _rows(n: int, tag: str, t0: float, rate: float) -> Iterator[tuple[Any, ...]]:
    snapshot = _snapshot()
    for i in range(n):
        cid = command_id(tag, i)
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
            None,
            1,
            t0 - 60,
            t0 - 60,
        )


# The same rows as ``_rows``, built by the server: a million rows through COPY cost about a minute of
# Python on this machine kind; generate_series builds them in the server.
_SERIES = """
INSERT INTO orders ({columns})
SELECT cid, 'itrx', encode(sha256(convert_to(cid, 'UTF8')), 'hex'),
       '{{"command_id":"' || cid || '","provider":"itrx","params":' || %(params)s
           || ',"ref_code":null,"metadata":{{}}}}',
       'ow-' || left(encode(sha256(convert_to('ref' || cid, 'UTF8')), 'hex'), 41),
       'processing', '20', %(tag)s || lpad(to_hex(i), 24, '0'), %(snapshot)s, NULL, NULL, FALSE, 1, FALSE,
       NULL, %(t0)s::float8 + i / %(rate)s::float8, NULL, NULL, NULL, NULL, 1, %(t0)s::float8 - 60,
       %(t0)s::float8 - 60
FROM (
    SELECT i, 'scale-' || %(tag)s || '-' || lpad(i::text, greatest(6, length(i::text)), '0') AS cid
    FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS i
) AS s
"""


def seed(url: str, n: int, tag: str, t0: float, rate: float) -> float:
    """Seed N rows; returns the seconds taken (migrations, rows, indexes, statistics)."""
    from worker.ledger import open_ledger

    started = time.perf_counter()
    ledger = open_ledger(url)
    ledger.migrate()
    ledger.close()
    if url.startswith("sqlite"):
        import sqlite3

        from worker.ledger.rows import COLUMNS

        sql = f"INSERT INTO orders ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"
        path = url.split("sqlite:///", 1)[1].split("?", maxsplit=1)[0]
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.executemany(sql, _rows(n, tag, t0, rate))
            conn.commit()
    else:
        seed_postgres(url, n, tag, t0, rate)
    return time.perf_counter() - started


def seed_postgres(url: str, n: int, tag: str, t0: float, rate: float, first: int = 0) -> None:
    """Rows ``first .. first + n - 1`` by generate_series, with the table's secondary indexes dropped
    during the insert and rebuilt from their own definitions after it (whatever the migrations made them),
    then ANALYZE, so the planner sees the full table as a scheduler in production would."""
    import psycopg

    from worker.ledger.rows import COLUMNS

    with psycopg.connect(libpq_url(url)) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET maintenance_work_mem = '256MB'")
        indexes = conn.execute(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i"
            " WHERE i.tablename = 'orders' AND i.schemaname = current_schema()"
            " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)"
        ).fetchall()
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        conn.execute(
            _SERIES.format(columns=", ".join(COLUMNS)),
            {
                "params": json.dumps(ITRX_COMMAND, separators=(",", ":")),
                "tag": tag,
                "snapshot": _snapshot(),
                "t0": t0,
                "rate": rate,
                "first": first,
                "last": first + n - 1,
            },
        )
        for _, definition in indexes:
            conn.execute(definition)
        conn.commit()
        conn.autocommit = True
        # VACUUM too: otherwise autovacuum visits the freshly inserted table during the measurement.
        conn.execute("VACUUM (ANALYZE) orders")


# --- the due statements' plans -----------------------------------------------------------------------


def due_statements(ledger: Any) -> dict[str, str]:
    """Every SQL string the ledger object holds whose attribute name speaks of due orders."""
    found: dict[str, str] = {}
    for name in dir(ledger):
        if "due" not in name.lower() or name.startswith("__"):
            continue
        with contextlib.suppress(Exception):
            value = getattr(ledger, name)
            # One statement, or one per kind of due order (the key names it).
            named = value.items() if isinstance(value, dict) else [(None, value)]
            for key, sql in named:
                if isinstance(sql, str) and re.match(r"\s*(SELECT|UPDATE|WITH|DELETE)\b", sql, re.I):
                    found[name if key is None else f"{name}[{key}]"] = sql
    return found


def _parameters(sql: str, now: float, limit: int, ids: list[str]) -> list[Any] | None:
    """Values for the statement's ``?`` placeholders, guessed from what stands before each; None when one
    is not understood (the plan is then not taken)."""
    values: list[Any] = []
    upper = sql.upper()
    where = upper.find(" WHERE ")
    for match in re.finditer(r"\?", sql):
        before = upper[max(0, match.start() - 40) : match.start()].rstrip()
        if before.endswith("LIMIT"):
            values.append(limit)
        elif before.endswith("ANY("):
            values.append(ids)
        elif re.search(r"PROVIDER\s*(=|<>|!=)$", before):
            values.append("itrx")
        elif re.search(r"STATUS\s*(=|<>|!=)$", before):
            values.append("processing")
        elif re.search(r"(_AT|UNTIL|DEADLINE|NOW)\s*(<=|<|>=|>|=)$", before):
            in_set = upper.startswith("UPDATE") and (where < 0 or match.start() < where)
            values.append(now + 600 if in_set else now)
        else:
            return None
    return values


def explain_due(url: str, now: float, limit: int = 500) -> list[dict[str, Any]]:
    """EXPLAIN (ANALYZE, BUFFERS) of each due statement, in a transaction rolled back afterwards."""
    import psycopg

    from worker.ledger import open_ledger

    ledger = open_ledger(url)
    try:
        statements = due_statements(ledger)
    finally:
        ledger.close()
    plans: list[dict[str, Any]] = []
    ids: list[str] = []
    with psycopg.connect(libpq_url(url)) as conn:
        # SELECTs first: their rows feed an UPDATE's ANY(?) (the hold of the rows just taken).
        for name, sql in sorted(
            statements.items(), key=lambda kv: not kv[1].lstrip().upper().startswith("SELECT")
        ):
            entry: dict[str, Any] = {"attribute": name, "sql": sql}
            params = _parameters(sql, now, limit, ids)
            if params is None:
                entry["plan"] = None
                entry["note"] = "placeholders not understood; no plan taken"
                plans.append(entry)
                continue
            pg = sql.replace("%", "%%").replace("?", "%s")
            if pg.lstrip().upper().startswith("SELECT") and not ids:
                with conn.transaction(force_rollback=True):
                    ids = [str(row[0]) for row in conn.execute(pg, params).fetchall()]
                params = _parameters(sql, now, limit, ids) or params
            with conn.transaction(force_rollback=True):
                lines = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS) {pg}", params).fetchall()
            # A hold's ANY(...) lists every id taken: shown as a count, not as 500 ids.
            text = re.sub(
                r"'\{[^}]{200,}\}'",
                lambda m: f"'{{<{m.group(0).count(',') + 1} ids>}}'",
                "\n".join(str(line[0]) for line in lines),
            )
            entry["params"] = [p if not isinstance(p, list) else f"<{len(p)} ids>" for p in params]
            entry["plan"] = text
            entry["index_scan"] = "Index" in text and not re.search(r"Sort.*\n.*Seq Scan", text)
            plans.append(entry)
    return plans


# --- the run -----------------------------------------------------------------------------------------


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
    schedulers: int = 1,
) -> dict[str, Any]:
    tag = uid()[:8]
    interval = orders / rate
    reads_path = tmp / f"sandbox-reads-{tag}.json"
    log(f"scale: {orders} itrx orders, {ledger_kind} ledger, {schedulers} scheduler(s)")
    sandbox = launch_sandbox(
        log_dir,
        "--itrx-orders",
        str(orders),
        "--tag",
        tag,
        "--reads-out",
        str(reads_path),
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
        "schedulers": schedulers,
    }
    stack: Stack | None = None
    try:
        with ledger_url(ledger_kind, tmp, pool_size=threads + 2) as url:
            # The first due time lies after the seeding and the processes' start-up (seeding a million rows
            # on PostgreSQL took 15-20 s, allowed 40; 100k on SQLite 15 s; start-up 25 s).
            per_row = 40e-6 if ledger_kind == "postgres" else 150e-6
            lead = 25.0 + 5 * schedulers + orders * per_row
            t0 = time.time() + lead
            log(f"scale: seeding (first poll due in {lead:.0f} s)")
            result["seed_s"] = round(seed(url, orders, tag, t0, rate), 1)
            log(f"scale: seeded in {result['seed_s']} s")
            if ledger_kind == "postgres":
                result["due_plans"] = explain_due(url, t0 + window / 2)
                result["table_mb"] = _table_mb(url)
            settings = {
                "ORDER_WORKER_POLL_PROCESSING": str(interval),
                "ORDER_WORKER_ITRX_CHECK_BALANCE": "false",
            }
            stack = Stack(sandbox, url, log_dir, settings)
            stack.declare_queues()
            scheds = [stack.start("scheduler", name=f"scale-scheduler-{k}")[0] for k in range(schedulers)]
            worker, _ = stack.start(
                "worker", "--processes", str(processes), "--threads", str(threads), name="scale-worker"
            )
            if time.time() > t0:
                log(f"scale: start-up ended {time.time() - t0:.0f} s after the first due time")
                result["late_start_s"] = round(time.time() - t0, 1)
            time.sleep(max(0.0, t0 - time.time()))
            meters: dict[str, CpuMeter | ChangingCpuMeter] = {
                "worker": CpuMeter(worker.processes()),
                **{f"scheduler_{k}": CpuMeter(g.processes()) for k, g in enumerate(scheds)},
                "rabbitmq": CpuMeter(rabbitmq_processes()),
                "sandbox": CpuMeter(sandbox.group.processes()),
            }
            if ledger_kind == "postgres":
                meters["postgres"] = ChangingCpuMeter(postgres_processes)
            resident = {
                name: meter
                for name, meter in meters.items()
                if isinstance(meter, CpuMeter) and (name == "worker" or name.startswith("scheduler"))
            }
            rss: dict[str, list[tuple[float, int]]] = {name: [] for name in resident}
            end = t0 + window
            marks: dict[str, tuple[float, dict[str, float]]] = {}
            while (now := time.time()) < end:
                for name, meter in resident.items():
                    rss[name].append((now - t0, meter.rss()))
                if "postgres" in meters:
                    meters["postgres"]()  # keeps the CPU of backends that exit before the end
                if "start" not in marks and now - t0 >= 5:
                    marks["start"] = (now, {name: meter() for name, meter in meters.items()})
                time.sleep(1.0)
            marks["end"] = (time.time(), {name: meter() for name, meter in meters.items()})
            for name, meter in resident.items():
                rss[name].append((time.time() - t0, meter.rss()))
            result.update(_analyse(url, tag, t0, rate, window, marks, rss))
            stack.stop()
            stack = None
            costs = _ledger_costs(url)
            result["take_due_ms"], result["apply_observation_ms"], result["count_by_status_ms"] = costs
    finally:
        if stack is not None:
            stack.stop()
        sandbox.group.stop()
    result.update(_reads(reads_path))
    return result


def _table_mb(url: str) -> float:
    import psycopg

    with psycopg.connect(libpq_url(url)) as conn:
        row = conn.execute("SELECT pg_total_relation_size('orders')").fetchone()
    return round(int(row[0]) / 2**20, 1) if row else 0.0


def _reads(path: Path) -> dict[str, Any]:
    """Partner reads per seeded order in the run (the sandbox writes them when it stops)."""
    try:
        reads: dict[str, int] = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"partner_reads": None}
    twice = sum(1 for count in reads.values() if count > 1)
    return {
        "partner_reads": sum(reads.values()),
        "orders_read": len(reads),
        "orders_read_twice": twice,
        "max_reads_per_order": max(reads.values(), default=0),
    }


def _analyse(
    url: str,
    tag: str,
    t0: float,
    rate: float,
    window: float,
    marks: dict[str, tuple[float, dict[str, float]]],
    rss: dict[str, list[tuple[float, int]]],
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
    for i in range(due_in_window):
        at = polled.get(command_id(tag, i))
        due = t0 + i / rate
        if at is None:
            missed += 1
            lateness.append(end - due)
        else:
            lateness.append(at - due)
    (t_a, cpu_a), (t_b, cpu_b) = marks["start"], marks["end"]
    polls_in_span = sum(1 for at in polled.values() if t_a <= at <= t_b)
    per = max(polls_in_span, 1)
    spent = {name: cpu_b[name] - cpu_a[name] for name in cpu_a}
    growth: dict[str, dict[str, float]] = {}
    for name, samples in rss.items():
        start = next((b for t, b in samples if t >= 5), samples[0][1])
        growth[name] = {
            "start_mb": round(start / 2**20, 1),
            "end_mb": round(samples[-1][1] / 2**20, 1),
            "growth_mb": round((samples[-1][1] - start) / 2**20, 2),
        }
    schedulers = [name for name in spent if name.startswith("scheduler")]
    out: dict[str, Any] = {
        "due_in_window": due_in_window,
        "polled": len(polled),
        "not_polled_by_end": missed,
        "lateness_p50_s": round(percentile(lateness, 50), 3),
        "lateness_p99_s": round(percentile(lateness, 99), 3),
        "lateness_max_s": round(max(lateness), 3) if lateness else None,
        "polls_per_s": round(polls_in_span / (t_b - t_a), 1),
        "measured_span_s": round(t_b - t_a, 1),
        "polls_in_span": polls_in_span,
        "worker_rss_mb_start": growth["worker"]["start_mb"],
        "worker_rss_mb_end": growth["worker"]["end_mb"],
        "worker_rss_growth_mb": growth["worker"]["growth_mb"],
        "rss": growth,
        "cpu_s": {name: round(value, 2) for name, value in spent.items()},
        "cpu_us_per_poll": {
            "worker": round(spent["worker"] / per * 1e6, 1),
            "scheduler_and_relay": round(sum(spent[n] for n in schedulers) / per * 1e6, 1),
            "rabbitmq": round(spent["rabbitmq"] / per * 1e6, 1),
            "sandbox": round(spent["sandbox"] / per * 1e6, 1),
        },
        # Each due row is one poll here (the interval keeps every order to one due time in the window);
        # which scheduler took which row is not recorded, so each process's CPU is divided by all rows.
        "cpu_ms_per_1000_due_rows": {
            **{name: round(spent[name] / per * 1e6, 1) for name in schedulers},
            "schedulers_together": round(sum(spent[n] for n in schedulers) / per * 1e6, 1),
        },
    }
    if "postgres" in spent:
        out["cpu_us_per_poll"]["postgres"] = round(spent["postgres"] / per * 1e6, 1)
        out["cpu_ms_per_1000_due_rows"]["postgres_server"] = round(spent["postgres"] / per * 1e6, 1)
    return out


def _ledger_costs(url: str) -> tuple[float, float, float]:
    """take_due's scan (batch 500, nothing due: the index seek), apply_observation and the gauges' count by
    status, on the full table."""
    from worker.ledger import open_ledger
    from worker.messages import Source
    from worker.partners.base import PartnerOrder
    from worker.status import Status

    ledger = open_ledger(url)
    try:
        now = time.time()
        started = time.perf_counter()
        for _ in range(20):
            ledger.take_due("itrx", now - 3600, 500, 0)  # the past "now" keeps rows untouched
        take_due = (time.perf_counter() - started) / 20 * 1000
        started = time.perf_counter()
        ledger.count_by_status()  # the scheduler's gauges, every 5 s in each scheduler
        counts = (time.perf_counter() - started) * 1000
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
    return round(take_due, 3), round(apply, 3), round(counts, 1)


# --- report ------------------------------------------------------------------------------------------


def markdown(result: dict[str, Any]) -> str:
    r = result
    per = r["cpu_ms_per_1000_due_rows"]
    lines = [
        f"## Scale: {r['orders']:,} open orders, {r['ledger']}, {r['schedulers']} scheduler(s), "
        f"worker {r['processes']} x {r['threads']}",
        "",
        f"First polls due at {r['rate_per_s']:g}/s, poll interval {r['poll_interval_s']:.0f} s, "
        f"window {r['window_s']:g} s; ledger seeded in {r['seed_s']} s"
        + (f" (orders table and indexes {r['table_mb']} MB)" if "table_mb" in r else "")
        + ".",
        "",
        "| figure | value | target |",
        "|---|---:|---|",
        f"| due polls in the window | {r['due_in_window']} | |",
        f"| not polled by the end | {r['not_polled_by_end']} | |",
        f"| lateness p50 / p99 / max, s | {r['lateness_p50_s']} / {r['lateness_p99_s']} / "
        f"{r['lateness_max_s']} | p99 <= 2 |",
        f"| partner reads / orders read | {r.get('partner_reads')} / {r.get('orders_read')} | |",
        f"| orders polled twice (max reads of one order) | {r.get('orders_read_twice')} "
        f"({r.get('max_reads_per_order')}) | 0 |",
        f"| polls/s in the measured span | {r['polls_per_s']} | |",
    ]
    for name, value in per.items():
        lines.append(f"| CPU ms per 1,000 due rows: {name} | {value} | |")
    for name, g in r["rss"].items():
        lines.append(
            f"| RSS {name}, MB (start -> end, growth) | {g['start_mb']} -> {g['end_mb']} "
            f"({g['growth_mb']}) | growth <= 20 |"
        )
    lines.append(f"| CPU µs per poll | {r['cpu_us_per_poll']} | |")
    lines.append(
        f"| take_due / apply_observation / count_by_status on the full table, ms | {r['take_due_ms']} / "
        f"{r['apply_observation_ms']} / {r['count_by_status_ms']} | |"
    )
    for plan in r.get("due_plans", []):
        lines += [
            "",
            f"`{plan['attribute']}` (params {plan.get('params')}):",
            "",
            "```sql",
            plan["sql"],
            "```",
        ]
        if plan.get("plan"):
            verdict = "index scan" if plan.get("index_scan") else "NOT an index scan"
            lines += ["", f"Plan ({verdict}):", "", "```", plan["plan"], "```"]
        else:
            lines += ["", plan.get("note", "no plan")]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Scale: N open orders, the real scheduler(s) and worker; lateness, double polls, CPU, RSS"
    )
    parser.add_argument(
        "--orders", type=int, default=100_000, help="open itrx orders seeded (default 100000)"
    )
    parser.add_argument("--ledger", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--schedulers", type=int, default=1, help="order-worker scheduler processes")
    parser.add_argument(
        "--rate",
        type=float,
        default=37.0,
        help="first polls due per second (default 37: the 0trace read budget, 2,250 weight/min at weight 1)",
    )
    parser.add_argument("--window", type=float, default=120.0, help="seconds measured (default 120)")
    parser.add_argument("--processes", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--threads", type=int, default=8, help="worker threads per process (default 8)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ow-scale-") as tmp_name:
        tmp = Path(tmp_name)
        result = run(
            tmp,
            tmp,
            orders=args.orders,
            rate=args.rate,
            window=args.window,
            ledger_kind=args.ledger,
            processes=args.processes,
            threads=args.threads,
            schedulers=args.schedulers,
        )
    result["command"] = " ".join(["python -m bench.scale", *sys.argv[1:]])
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / f"scale-{time.strftime('%Y%m%d-%H%M%S')}"
    text = markdown(result)
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2))
    stem.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
