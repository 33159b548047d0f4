"""Quotes: request/reply latency with a warm cache, and the partner's budget under a cold-cache flood.

Starts a sandbox and one ``order-worker worker`` (its own queues and SQLite ledger) on the shared RabbitMQ.

* Warm: one :class:`~order_worker_client.quoting.QuoteClient` asks the same 0trace price N times in a row;
  the cache (``--cache-seconds``) answers all but the first (and one per expiry). p50/p99/max of
  ``quote()`` as the producer sees it, from publish to parsed reply.
* Cold: the sandbox enforces a 0trace weight budget of ``--budget`` per ``--window`` seconds, and the
  worker is configured with the same budget. ``--clients`` threads ask distinct prices (no cache hit is
  possible) as fast as replies come for ``--cold-seconds``. The sandbox counts the price calls it
  received, the most weight its window ever held and its 429 answers: the budget is kept when the peak
  stays within it and no call was refused.

Needs RabbitMQ on 127.0.0.1:5672 (``bash deploy/dev.sh broker``). Prints the figures as JSON and the
command line that produced them.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from order_worker_client.quoting import QuoteClient, QuoteFailed

from tests.support.stack import Sandbox, Stack, spawn_sandbox, wait_until

PAIR = {"fromCcy": "btc", "toCcy": "usdt_trc20", "direction": "from"}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


def _price_calls(sandbox: Sandbox) -> int:
    return int(sandbox.stats()["requests"].get("0trace.price", 0))


def warm(stack: Stack, requests: int, timeout: float) -> dict[str, Any]:
    calls_before = _price_calls(stack.sandbox)
    latencies: list[float] = []
    cached = 0
    with QuoteClient(stack.broker_url, queue=stack.quotes_queue) as client:
        client.quote("0trace", {**PAIR, "amount": "0.01"}, timeout)  # fills the cache
        started = time.perf_counter()
        for _ in range(requests):
            begun = time.perf_counter()
            quote = client.quote("0trace", {**PAIR, "amount": "0.01"}, timeout)
            latencies.append(time.perf_counter() - begun)
            cached += quote.cached
        elapsed = time.perf_counter() - started
    return {
        "requests": requests,
        "answered_from_cache": cached,
        "partner_price_calls": _price_calls(stack.sandbox) - calls_before,
        "p50_ms": round(percentile(latencies, 50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 99) * 1000, 2),
        "max_ms": round(max(latencies) * 1000, 2),
        "quotes_per_second": round(requests / elapsed, 1),
    }


def cold(stack: Stack, clients: int, seconds: float, timeout: float, budget: int) -> dict[str, Any]:
    stats_before = stack.sandbox.stats()
    results: Counter[str] = Counter()
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def ask(index: int) -> None:
        with QuoteClient(stack.broker_url, queue=stack.quotes_queue) as client:
            n = 0
            while time.monotonic() < stop_at:
                n += 1
                amount = f"0.{index + 1:02d}{n:06d}"  # distinct: never a cache hit
                try:
                    client.quote("0trace", {**PAIR, "amount": amount}, timeout)
                    result = "ok"
                except QuoteFailed as failed:
                    result = failed.code
                with lock:
                    results[result] += 1

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = stack.sandbox.stats()
    keys = stats["zerotrace_keys"]
    return {
        "clients": clients,
        "seconds": seconds,
        "replies": dict(results),
        "partner_price_calls": int(stats["requests"].get("0trace.price", 0))
        - int(stats_before["requests"].get("0trace.price", 0)),
        "sandbox_budget": budget,
        "sandbox_peak_window_weight": max((k["peak_window_weight"] for k in keys.values()), default=0),
        "sandbox_http_429": int(stats["rate_limited"]["total"]) - int(stats_before["rate_limited"]["total"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.quotes",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--requests", type=int, default=2000, help="warm-cache quotes, one after another")
    parser.add_argument("--cache-seconds", type=float, default=5.0, help="the worker's quote cache")
    parser.add_argument(
        "--budget", type=int, default=100, help="0trace weight per window (sandbox and worker)"
    )
    parser.add_argument("--window", type=float, default=10.0, help="the budget's window, seconds")
    parser.add_argument("--clients", type=int, default=4, help="cold-cache requesters at once")
    parser.add_argument("--cold-seconds", type=float, default=30.0, help="length of the cold-cache run")
    parser.add_argument("--timeout", type=float, default=2.0, help="each quote's timeout, seconds")
    parser.add_argument("--threads", type=int, default=4, help="the worker's quote threads")
    args = parser.parse_args()
    command = shlex.join([Path(sys.executable).name, "-m", "bench.quotes", *sys.argv[1:]])

    with tempfile.TemporaryDirectory(prefix="bench-quotes-") as tmp:
        log_dir = Path(tmp)
        sandbox = spawn_sandbox(log_dir)
        stack = Stack(
            sandbox,
            f"sqlite:///{log_dir / 'ledger.db'}",
            log_dir,
            settings={
                "ORDER_WORKER_LOG_LEVEL": "WARNING",
                "ORDER_WORKER_QUOTE_CACHE_SECONDS": str(args.cache_seconds),
                "ORDER_WORKER_QUOTE_THREADS": str(args.threads),
                "ORDER_WORKER_ZEROTRACE_WEIGHT_BUDGET": str(args.budget),
                "ORDER_WORKER_ZEROTRACE_WEIGHT_WINDOW": str(args.window),
            },
        )
        try:
            sandbox.control(
                "config",
                {"zerotrace_rate_limit_weight": args.budget, "zerotrace_rate_limit_window": args.window},
            )
            stack.start_worker(threads=2)
            wait_until(lambda: stack.quote_consumers() >= 1, 60, "the quote consumer")
            figures = {
                "warm": warm(stack, args.requests, args.timeout),
                "cold": cold(stack, args.clients, args.cold_seconds, args.timeout, args.budget),
            }
        finally:
            stack.stop()
            sandbox.process.stop()
    cold_run = figures["cold"]
    figures["targets"] = {
        "warm_p99_under_100ms": figures["warm"]["p99_ms"] < 100,
        "cold_within_budget": cold_run["sandbox_peak_window_weight"] <= args.budget
        and cold_run["sandbox_http_429"] == 0,
    }
    print(json.dumps({"command": command, **figures}, indent=2))


if __name__ == "__main__":
    main()
