"""order-worker's own CPU per command, excluding the HTTP client and the broker, measured in one thread.

Runs the real pipeline objects (settings, SQLite or PostgreSQL ledger, token sealer, partner clients on
the real pooled HTTP client, Prometheus metrics in multiprocess mode as in the worker) against the
sandbox, with no broker: ``handle_create`` then ``handle_poll`` for N orders, plus the actor's metric
update. Each call's thread CPU time (``CLOCK_THREAD_CPUTIME_ID``) is split three ways by wrapping the two
boundaries:

* HTTP: time inside ``PartnerHttp._request`` (urllib3 and http.client: request writing, answer parsing,
  socket syscalls);
* DB engine: time inside every ``execute`` on a ledger connection (SQLite's C library / psycopg);
* own: the rest, i.e. validation, idempotency key, claim/transition logic, record (de)serialisation,
  event building, signing, sealing, parsing partner answers, metrics.

The DB engine's time is also split by statement (verb and table, e.g. ``COMMIT``, ``INSERT outbox``), with
how many of each a command runs. A second pass runs under cProfile and lists where "own" goes. Usage
(normally called by bench.run)::

    .venv/bin/python -m bench.cpu_per_command --sandbox http://127.0.0.1:PORT \
        [--orders 2000] [--ledger sqlite|postgres]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

if __name__ == "__main__":
    # The sandbox's budget is raised for this measurement; the client-side limiter (worker.ratelimit) is off,
    # as its settings document for such a sandbox.
    os.environ.setdefault("ORDER_WORKER_ZEROTRACE_WEIGHT_BUDGET", "0")
if __name__ == "__main__" and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # Same metric backend as the worker processes (mmap files), set before prometheus_client is imported.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="bench-metrics-")

from pydantic import SecretStr

from bench.common import ZT_PARAMS, ledger_url
from worker import metrics
from worker.ledger import sqlite as sqlite_adapter
from worker.runtime import build_runtime
from worker.settings import Settings
from worker.transport import PartnerHttp

_clock = time.thread_time_ns


class Split:
    def __init__(self) -> None:
        self.http = 0
        self.db = 0
        self.statements: dict[str, list[int]] = {}  # kind -> [executions, nanoseconds]

    def reset(self) -> None:
        self.http = self.db = 0
        self.statements = {}

    def add_db(self, sql: Any, started: int) -> None:
        spent = _clock() - started
        self.db += spent
        entry = self.statements.setdefault(_statement_kind(sql), [0, 0])
        entry[0] += 1
        entry[1] += spent


SPLIT = Split()


def _statement_kind(sql: Any) -> str:
    """``COMMIT``, ``INSERT orders``, ``SELECT outbox``...: the verb and the table it names."""
    words = str(sql).split()
    if not words:
        return "?"
    verb = words[0].upper()
    upper = [w.upper() for w in words]
    for marker in ("INTO", "UPDATE", "FROM"):
        if marker in upper[:-1]:
            return f"{verb} {words[upper.index(marker) + 1].strip('(')}"
    return " ".join(words[:2]) if verb in ("BEGIN", "PRAGMA") else verb


def _instrument() -> None:
    original_request = PartnerHttp._request

    def timed_request(self: Any, *args: Any, **kwargs: Any) -> Any:
        started = _clock()
        try:
            return original_request(self, *args, **kwargs)
        finally:
            SPLIT.http += _clock() - started

    PartnerHttp._request = timed_request  # type: ignore[method-assign]

    class TimedConnection(sqlite_adapter._Connection):
        def execute(self, *args: Any, **kwargs: Any) -> Any:
            started = _clock()
            try:
                return super().execute(*args, **kwargs)
            finally:
                SPLIT.add_db(args[0] if args else kwargs.get("sql"), started)

    sqlite_adapter._Connection = TimedConnection  # type: ignore[misc]
    try:
        import psycopg

        original_execute = psycopg.Connection.execute

        def timed_execute(self: Any, *args: Any, **kwargs: Any) -> Any:
            started = _clock()
            try:
                cursor = original_execute(self, *args, **kwargs)
                return cursor
            finally:
                SPLIT.add_db(args[0] if args else kwargs.get("query"), started)

        psycopg.Connection.execute = timed_execute  # type: ignore[method-assign]
    except ImportError:  # pragma: no cover
        pass


def _run(runtime: Any, tag: str, n: int, profile: cProfile.Profile | None = None) -> dict[str, Any]:
    pipeline = runtime.pipeline
    ids = [f"cpu-{tag}-{i:07d}" for i in range(n)]
    out: dict[str, Any] = {}
    for phase in ("create", "poll"):
        SPLIT.reset()
        total = 0
        names: dict[str, int] = {}
        if phase == "poll":
            time.sleep(0.5)  # let the sandbox move the orders on, as in the pipeline run
        if profile is not None:
            profile.enable()
        for cid in ids:
            started = _clock()
            if phase == "create":
                outcome = pipeline.handle_create(
                    {"command_id": cid, "provider": "0trace", "params": ZT_PARAMS}, uuid.uuid4().hex
                )
                metrics.child(metrics.COMMANDS, "create_order", outcome.name).inc()
            else:
                outcome = pipeline.handle_poll({"command_id": cid}, uuid.uuid4().hex)
                metrics.child(metrics.COMMANDS, "poll_order", outcome.name).inc()
            total += _clock() - started
            names[outcome.name] = names.get(outcome.name, 0) + 1
        if profile is not None:
            profile.disable()
        out[phase] = {
            "commands": n,
            "outcomes": names,
            "total_us": round(total / n / 1000, 1),
            "http_client_us": round(SPLIT.http / n / 1000, 1),
            "db_engine_us": round(SPLIT.db / n / 1000, 1),
            "own_us": round((total - SPLIT.http - SPLIT.db) / n / 1000, 1),
            "db_statements": {
                kind: {"per_command": round(count / n, 2), "us_per_command": round(spent / n / 1000, 1)}
                for kind, (count, spent) in sorted(SPLIT.statements.items(), key=lambda item: -item[1][1])
            },
        }
    return out


def _own_profile(profile: cProfile.Profile, top: int) -> list[dict[str, Any]]:
    """Functions of order-worker, pydantic, json, hmac, cryptography and metrics by self time."""
    stats = pstats.Stats(profile)
    rows = []
    skip = (
        "urllib3",
        "http/client.py",
        "socket.py",
        "selectors.py",
        "bench/cpu_per_command.py",
        "email/",
        "ssl.py",
        "worker/transport/_",  # the client's own Python code is in the HTTP column
    )
    skip_builtins = (
        "'recv",  # recv and recv_into: waiting for the partner's answer
        "'send",
        "thread_time",
        "TimedConnection",
        "'poll'",  # the selector's wait, not the pipeline's poll functions
        "settimeout",
        "'connect'",
    )
    total = 0.0
    for (filename, line, func), (_cc, ncalls, tottime, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if any(s in filename for s in skip) or any(b in func for b in skip_builtins):
            continue
        total += tottime
        rows.append(
            (
                tottime,
                ncalls,
                f"{func} ({filename.split('site-packages/')[-1].replace(str(Path.cwd()) + '/', '')}:{line})",
            )
        )
    rows.sort(reverse=True)
    return [
        {"function": name, "calls": calls, "self_share": round(t / total, 3) if total else 0}
        for t, calls, name in rows[:top]
    ]


def measure(sandbox_url: str, orders: int, ledger_kind: str, tmp: Path) -> dict[str, Any]:
    _instrument()
    with ledger_url(ledger_kind, tmp, pool_size=2) as url:
        settings = Settings(
            ledger={"ledger_url": SecretStr(url)},
            partners={"0trace": {"base_url": sandbox_url}, "itrx": {"base_url": sandbox_url}},
        )
        runtime = build_runtime(settings)
        runtime.ledger.migrate()
        try:
            _run(runtime, "warm" + uuid.uuid4().hex[:6], 100)
            result = _run(runtime, uuid.uuid4().hex[:8], orders)
            profile = cProfile.Profile()
            _run(runtime, "prof" + uuid.uuid4().hex[:6], max(200, orders // 4), profile)
            result["profile_top_own"] = _own_profile(profile, 30)
        finally:
            runtime.close()
    result["ledger"] = ledger_kind
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sandbox", required=True)
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--ledger", default="sqlite", choices=["sqlite", "postgres"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-cpu-") as tmp:
        print(json.dumps(measure(args.sandbox, args.orders, args.ledger, Path(tmp))))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
