"""Priorities: where a 0trace account's budget goes when open orders want more polls than it allows.

The sandbox runs the partner's real budget (2,500 weight in any 60 s; create 50, order read 1) and holds
orders seeded as ``NEW`` (``bench.seeded_sandbox``); the PostgreSQL ledger holds the same orders, every
one due for a poll. The real ``order-worker scheduler`` and ``order-worker worker`` (1 x 8) run with the
service's default budget settings. Two phases, each with its own sandbox, ledger and queues:

* **saturation** — ORDERS open orders (default 100,000) and creates published at CREATES a minute (default
  30, evenly spaced; ``--poisson`` for Poisson arrivals, whose bursts can exceed the 45 creates a minute the
  budget allows). The first WARMUP seconds (the budget's first window: polls and creates start
  together from an empty budget, which a running service meets only once) are reported apart; then, for
  MINUTES: the creates' wait for budget (``order_worker_budget_wait_seconds``, priority ``first``, from the
  worker's metrics before and after), claim-to-``created`` time from the ledger (the create's claim to its
  ``created`` event), deferrals (an attempt that ended unsent is one), 429 answers from the sandbox's
  counters, and how many polls went.
* **staleness** — STALE_ORDERS open orders (default 5,000), all last seen at the start and due, of which
  DEADLINE_ORDERS have a deposit window closing 1 to 4 minutes after the start. Every second the ledger
  is read: the age of the oldest open order's last sight (``updated_at``, written by every poll), and the
  last poll of each near-deadline order. The ideal cycle is open orders / the budget's read rate (its
  usable weight less the create reserve, per window plus its margin); the target is the oldest last
  sight <= 1.25 x that, and every near-deadline order polled at least every 60 s within 5 minutes of its
  deadline.

    .venv/bin/python -m bench.priorities                 # both phases, about 11 minutes
    .venv/bin/python -m bench.priorities --minutes 2 --stale-minutes 3 --orders 20000
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import urllib3
from pydantic import SecretStr

from bench.common import ZT_PARAMS, ledger_url, libpq_url, log, percentile, uid
from bench.contenders import SandboxProc, Stack, launch_sandbox
from bench.seeded_sandbox import ZEROTRACE_TOKEN, zerotrace_id
from worker.bus.envelope import envelope
from worker.ledger import open_ledger
from worker.ledger.rows import COLUMNS
from worker.sealing import TokenSealer
from worker.settings import SANDBOX_TOKEN_KEY

BUDGET = 2500


def _rows(
    tag: str, count: int, t0: float, spread: float, deadlines: dict[int, float]
) -> Iterator[tuple[Any, ...]]:
    """Open 0trace orders as the ledger holds them after their create: due at ``t0 - spread`` .. ``t0``
    (oldest first), last seen a poll cadence before that."""
    sealer = TokenSealer.from_settings([SecretStr(SANDBOX_TOKEN_KEY)])
    snapshot = json.dumps({"id": None, "status": "NEW"})
    for index in range(count):
        cid = f"prio-{tag}-{index:06d}"
        order_id = zerotrace_id(tag, index)
        due = t0 - spread + spread * index / max(1, count)
        command = {"command_id": cid, "provider": "0trace", "params": ZT_PARAMS, "metadata": {}}
        row = dict.fromkeys(COLUMNS)
        row.update(
            command_id=cid,
            provider="0trace",
            fingerprint=cid,
            command=json.dumps(command),
            partner_ref=f"ref-{cid}",
            status="awaiting_deposit",
            provider_status="NEW",
            order_id=order_id,
            snapshot=snapshot,
            sealed_token=sealer.seal(ZEROTRACE_TOKEN, order_id),
            token_key_id=sealer.active_key_id,
            untrackable=False,
            attempts=1,
            attempt_open=False,
            next_action_at=due,
            deadline_at=deadlines.get(index),
            event_seq=1,
            created_at=t0 - 3600,
            updated_at=min(due, t0),
        )
        yield tuple(row[column] for column in COLUMNS)


def _seed(url: str, tag: str, count: int, t0: float, spread: float, deadlines: dict[int, float]) -> float:
    started = time.perf_counter()
    ledger = open_ledger(url)
    ledger.migrate()
    ledger.close()
    with psycopg.connect(libpq_url(url)) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY orders ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for row in _rows(tag, count, t0, spread, deadlines):
                copy.write_row(row)
        conn.commit()
        cur.execute("ANALYZE orders")
    return time.perf_counter() - started


def _histogram(text: str, name: str, labels: str) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) of one histogram child in a /metrics page."""
    buckets = []
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket{{") and labels in line:
            bound = re.search(r'le="([^"]+)"', line)
            assert bound is not None
            buckets.append(
                (math.inf if bound[1] == "+Inf" else float(bound[1]), float(line.rsplit(" ", 1)[1]))
            )
    return sorted(buckets)


def _difference(
    after: list[tuple[float, float]], before: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    """The observations between two scrapes of one histogram."""
    earlier = dict(before)
    return [(bound, count - earlier.get(bound, 0.0)) for bound, count in after]


def _quantile_bound(buckets: list[tuple[float, float]], q: float) -> float | None:
    """The bucket bound at or under which a share ``q`` of the observations fell."""
    if not buckets or buckets[-1][1] == 0:
        return None
    total = buckets[-1][1]
    return next(bound for bound, count in buckets if count >= q * total)


def _counter(text: str, name: str, labels: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(f"{name}{{") and labels in line
    )


def _rate_limited(sandbox: SandboxProc) -> int:
    counters = sandbox.stats().get("rate_limited", {})
    return int(counters["total"]) if "total" in counters else int(sum(counters.values()))


def _sandbox(log_dir: Path, tag: str, orders: int, name: str, *extra: str) -> SandboxProc:
    """The sandbox with ``orders`` open 0trace orders seeded and the partner's real budget."""
    return launch_sandbox(
        log_dir,
        *("--zerotrace-orders", str(orders), "--rate-limit-weight", str(BUDGET), "--tag", tag, *extra),
        name=name,
        module="bench.seeded_sandbox",
    )


def _stack(sandbox: SandboxProc, url: str, log_dir: Path) -> Stack:
    return Stack(
        sandbox, url, log_dir, {"ORDER_WORKER_SCHEDULER_INTERVAL": "1.0", "ORDER_WORKER_LOG_LEVEL": "INFO"}
    )


def saturation(
    log_dir: Path,
    tmp: Path,
    orders: int,
    creates_per_min: float,
    minutes: float,
    warmup: float,
    poisson: bool = False,
) -> dict[str, Any]:
    tag = uid()[:8]
    log(f"priorities/saturation: seeding {orders} open 0trace orders")
    sandbox = _sandbox(log_dir, tag, orders, "sandbox-priorities")
    result: dict[str, Any] = {
        "open_orders": orders,
        "creates_per_min": creates_per_min,
        "minutes": minutes,
        "warmup_s": warmup,
        "arrivals": "poisson" if poisson else "even",
    }
    try:
        with ledger_url("postgres", tmp, pool_size=10) as url:
            t0 = time.time()
            result["seed_s"] = round(_seed(url, tag, orders, t0, 3600.0, {}), 1)
            stack = _stack(sandbox, url, log_dir)
            try:
                stack.declare_queues()
                stack.start("scheduler", name="priorities-scheduler")
                _, port = stack.start(
                    "worker", "--processes", "1", "--threads", "8", name="priorities-worker"
                )
                metrics = f"http://127.0.0.1:{port}/metrics"
                # The budget's first window: polls and creates start together from an empty budget.
                early = _publish_creates(stack, creates_per_min, warmup / 60, tag, "warmup", poisson)
                before = urllib3.PoolManager().request("GET", metrics).data.decode()
                reads_before = _reads(sandbox)
                started = time.time()
                sent = _publish_creates(stack, creates_per_min, minutes, tag, "create", poisson)
                ended = time.time()
                time.sleep(5.0)  # the last create's answer
                after = urllib3.PoolManager().request("GET", metrics).data.decode()
                deferrals = _deferrals(log_dir)
                result.update(_creates(url, sent, before, after, deferrals))
                result["warmup"] = _creates(url, early, "", before, deferrals)
                result["answers_429"] = _rate_limited(sandbox)
                polls = _reads(sandbox) - reads_before
                result.update(polls=polls, polls_per_s=round(polls / (ended - started), 2))
            finally:
                stack.stop()
    finally:
        sandbox.group.stop()
    return result


def _publish_creates(
    stack: Stack, per_min: float, minutes: float, tag: str, label: str, poisson: bool
) -> list[str]:
    """Creates at ``per_min`` a minute: evenly spaced, or at Poisson arrivals (a fixed seed: the same
    run every time; its bursts may exceed what the budget allows creates, 45 a minute)."""
    from bench.common import Broker

    broker = Broker()
    arrivals = random.Random(7)
    sent: list[str] = []
    end = time.time() + minutes * 60
    next_at = time.time()
    try:
        while True:
            next_at += arrivals.expovariate(per_min / 60) if poisson else 60 / per_min
            if next_at >= end:
                break
            time.sleep(max(0.0, next_at - time.time()))
            cid = f"prio-{tag}-{label}-{len(sent):04d}"
            kwargs = {"command_id": cid, "provider": "0trace", "params": ZT_PARAMS}
            broker.publish(stack.create_queue, [envelope(stack.create_queue, "create_order", kwargs)])
            broker.connection.process_data_events(0)
            sent.append(cid)
    finally:
        broker.close()
    return sent


def _deferrals(log_dir: Path) -> Counter[str]:
    """How often each create was deferred, from the worker's ``create_deferred`` log lines."""
    counts: Counter[str] = Counter()
    for path in log_dir.glob("priorities-worker*"):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if '"create_deferred"' in line:
                counts[json.loads(line).get("command_id", "")] += 1
    return counts


def _creates(url: str, sent: list[str], before: str, after: str, deferrals: Counter[str]) -> dict[str, Any]:
    """The creates in ``sent``: from the ledger, the worker's log, and its metrics between two scrapes."""
    with psycopg.connect(libpq_url(url)) as conn:
        rows = conn.execute(
            "SELECT o.command_id, o.status, o.attempts, e.created_at - o.created_at FROM orders o"
            " LEFT JOIN outbox e ON e.command_id = o.command_id AND e.event_type = 'created'"
            " WHERE o.command_id = ANY(%s)",
            (sent,),
        ).fetchall()
    latencies = [float(seconds) for _, _, _, seconds in rows if seconds is not None]
    waits = _difference(
        _histogram(after, "order_worker_budget_wait_seconds", 'priority="first"'),
        _histogram(before, "order_worker_budget_wait_seconds", 'priority="first"'),
    )
    return {
        "creates_sent": len(sent),
        "creates_created": len(latencies),
        "create_budget_wait_p50_s_at_most": _quantile_bound(waits, 0.50),
        "create_budget_wait_p99_s_at_most": _quantile_bound(waits, 0.99),
        "create_budget_waits_counted": int(waits[-1][1]) if waits else 0,
        "create_claim_to_created_p50_s": round(percentile(latencies, 50), 3) if latencies else None,
        "create_claim_to_created_p99_s": round(percentile(latencies, 99), 3) if latencies else None,
        "create_claim_to_created_max_s": round(max(latencies), 3) if latencies else None,
        "creates_deferred_once": sum(1 for cid in sent if deferrals[cid] == 1),
        "creates_deferred_more_than_once": sum(1 for cid in sent if deferrals[cid] > 1),
        "creates_still_submitting": sum(1 for _, status, _, _ in rows if status == "submitting"),
        "create_deferrals_metric": _counter(after, "order_worker_budget_deferred_total", 'priority="first"')
        - _counter(before, "order_worker_budget_deferred_total", 'priority="first"'),
        "read_deferrals_metric": _counter(after, "order_worker_budget_deferred_total", 'priority="read"')
        - _counter(before, "order_worker_budget_deferred_total", 'priority="read"'),
    }


def _reads(sandbox: SandboxProc) -> int:
    """0trace order reads the sandbox answered (not 429)."""
    answers = sandbox.stats()["responses"].get("0trace.order", {})
    return sum(count for status, count in answers.items() if str(status) != "429")


def staleness(
    log_dir: Path, tmp: Path, orders: int, deadline_orders: int, minutes: float, reserve: float
) -> dict[str, Any]:
    tag = uid()[:8]
    log(f"priorities/staleness: {orders} open orders, {deadline_orders} near their deadline")
    sandbox = _sandbox(
        log_dir,
        tag,
        orders,
        "sandbox-staleness",
        *("--deadline-orders", str(deadline_orders), "--deadline-from", "90", "--deadline-to", "270"),
    )
    usable = math.floor(BUDGET * 0.9)
    reads = usable - math.floor(usable * reserve)
    per_s = reads / 61.0
    ideal = orders / per_s
    result: dict[str, Any] = {
        "open_orders": orders,
        "read_budget_per_min": round(per_s * 60, 1),
        "ideal_cycle_s": round(ideal, 1),
        "minutes": minutes,
    }
    try:
        with ledger_url("postgres", tmp, pool_size=10) as url:
            t0 = time.time()
            closes = {i: t0 + 90 + 180 * i / max(1, deadline_orders - 1) for i in range(deadline_orders)}
            result["seed_s"] = round(_seed(url, tag, orders, t0, 0.0, closes), 1)
            stack = _stack(sandbox, url, log_dir)
            try:
                stack.declare_queues()
                stack.start("scheduler", name="staleness-scheduler")
                stack.start("worker", "--processes", "1", "--threads", "8", name="staleness-worker")
                result.update(_watch(url, tag, t0, minutes * 60, closes, ideal))
                result["answers_429"] = _rate_limited(sandbox)
            finally:
                stack.stop()
    finally:
        sandbox.group.stop()
    return result


def _watch(
    url: str, tag: str, t0: float, seconds: float, closes: dict[int, float], ideal: float
) -> dict[str, Any]:
    """Every second: the oldest open order's last sight, and each near-deadline order's last poll."""
    ids = {f"prio-{tag}-{i:06d}": at for i, at in closes.items()}
    last_seen = dict.fromkeys(ids, t0)
    worst_gap = dict.fromkeys(ids, 0.0)
    oldest: list[tuple[float, float]] = []
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        while (now := time.time()) < t0 + seconds:
            row = conn.execute(
                "SELECT MIN(updated_at) FROM orders WHERE status = 'awaiting_deposit'"
            ).fetchone()
            if row and row[0] is not None:
                oldest.append((now - t0, now - float(row[0])))
            for cid, at in conn.execute(
                "SELECT command_id, updated_at FROM orders WHERE command_id = ANY(%s)", (list(ids),)
            ).fetchall():
                deadline = ids[cid]
                if deadline - now <= 300 and now <= deadline:
                    previous = max(last_seen[cid], deadline - 300)
                    worst_gap[cid] = max(
                        worst_gap[cid], (float(at) if float(at) > previous else now) - previous
                    )
                last_seen[cid] = max(last_seen[cid], float(at))
            time.sleep(1.0)
    worst = max(age for _, age in oldest) if oldest else None
    return {
        "oldest_last_sight_max_s": round(worst, 1) if worst is not None else None,
        "oldest_over_ideal": round(worst / ideal, 3) if worst is not None else None,
        "near_deadline_orders": len(ids),
        "near_deadline_longest_gap_s": round(max(worst_gap.values()), 1) if worst_gap else None,
        "oldest_series": [(round(t), round(age, 1)) for t, age in oldest[:: max(1, len(oldest) // 40)]],
    }


def _yes(met: bool) -> str:
    return "yes" if met else "no"


def report(sat: dict[str, Any] | None, stale: dict[str, Any] | None) -> str:
    lines = ["## Priorities (0trace budget 2,500 / 60 s)", "", "| target | measured | met |", "|---|---|---|"]
    if sat:
        p99 = sat["create_budget_wait_p99_s_at_most"]
        twice = sat["creates_deferred_more_than_once"]
        lines += [
            f"| create wait for budget p99 <= 3 s ({sat['open_orders']} open orders, "
            f"{sat['creates_per_min']:g} creates/min, {sat['arrivals']}) "
            f"| <= {p99} s (its histogram bucket); claim to created "
            f"p99 {sat['create_claim_to_created_p99_s']} s, max {sat['create_claim_to_created_max_s']} s "
            f"| {_yes(p99 is not None and p99 <= 3)} |",
            f"| 0 creates deferred more than once | {twice} (once: {sat['creates_deferred_once']}) "
            f"| {_yes(twice == 0)} |",
            f"| 0 x 429 | {sat['answers_429']} | {_yes(sat['answers_429'] == 0)} |",
            f"| (polls while saturated) | {sat['polls']} polls, {sat['polls_per_s']}/s | |",
            f"| (the first window, {sat['warmup_s']:g} s from an empty budget: apart) | claim to created p99 "
            f"{sat['warmup']['create_claim_to_created_p99_s']} s, deferred once "
            f"{sat['warmup']['creates_deferred_once']}, more "
            f"{sat['warmup']['creates_deferred_more_than_once']}"
            " | |",
        ]
    if stale:
        ratio = stale["oldest_over_ideal"]
        gap = stale["near_deadline_longest_gap_s"]
        lines += [
            f"| oldest last poll <= 1.25 x ideal ({stale['open_orders']} orders, ideal "
            f"{stale['ideal_cycle_s']} s) | {stale['oldest_last_sight_max_s']} s = {ratio} x "
            f"| {_yes(ratio is not None and ratio <= 1.25)} |",
            f"| near-deadline orders polled at least every 60 s | longest gap {gap} s over "
            f"{stale['near_deadline_orders']} orders | {_yes(gap is not None and gap <= 60)} |",
            f"| 0 x 429 (staleness phase) | {stale['answers_429']} | {_yes(stale['answers_429'] == 0)} |",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--orders", type=int, default=100_000, help="open orders in the saturation phase")
    parser.add_argument("--creates", type=float, default=30.0, help="creates a minute")
    parser.add_argument("--poisson", action="store_true", help="Poisson arrivals instead of evenly spaced")
    parser.add_argument("--minutes", type=float, default=4.0, help="length of the saturation phase")
    parser.add_argument(
        "--warmup",
        type=float,
        default=70.0,
        help="seconds before it (the budget's first window), reported apart",
    )
    parser.add_argument("--stale-orders", type=int, default=5_000, help="open orders in the staleness phase")
    parser.add_argument("--deadline-orders", type=int, default=30, help="of those, near their deadline")
    parser.add_argument("--stale-minutes", type=float, default=6.0, help="length of the staleness phase")
    parser.add_argument("--reserve", type=float, default=0.1, help="the service's WEIGHT_CREATE_RESERVE")
    parser.add_argument("--only", choices=["saturation", "staleness"], help="run one phase")
    parser.add_argument("--logs", type=Path, help="keep the processes' output here (default: discarded)")
    args = parser.parse_args()
    out = Path("bench/results")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        logs = args.logs or tmp
        logs.mkdir(parents=True, exist_ok=True)
        sat = stale = None
        if args.only != "staleness":
            sat = saturation(logs, tmp, args.orders, args.creates, args.minutes, args.warmup, args.poisson)
        if args.only != "saturation":
            stale = staleness(
                logs, tmp, args.stale_orders, args.deadline_orders, args.stale_minutes, args.reserve
            )
    text = report(sat, stale)
    print(text)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out / f"priorities-{stamp}.json").write_text(
        json.dumps({"saturation": sat, "staleness": stale}, indent=2)
    )
    (out / f"priorities-{stamp}.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
