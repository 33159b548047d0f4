"""The contenders of the main table, each run against the same RabbitMQ and the same sandbox process."""

from __future__ import annotations

import contextlib
import json
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pika

from bench import http_floor
from bench.common import (
    BROKER_URL,
    ZT_PARAMS,
    Broker,
    CpuMeter,
    Group,
    child_env,
    ledger_url,
    measure_drain,
    postgres_processes,
    rabbitmq_processes,
    uid,
    wait_for,
)
from worker.bus.envelope import envelope
from worker.bus.topology import declare_work_queues

# Ports below the kernel's ephemeral range, picked as the tests pick them: a port from bind(0) can be taken
# by any outgoing connection before the server binds it (seen as a worker's metrics server failing to start).
from worker.processes import SANDBOX_MODULE, await_sandbox, free_port, http_ok, sandbox_argv

PY = sys.executable


# --- the sandbox -----------------------------------------------------------------------------------------


def http_json(url: str, body: Any = None, method: str | None = None, timeout: float = 30) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method or ("POST" if data else "GET"))
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


@dataclass
class SandboxProc:
    group: Group
    url: str

    def control(self, path: str, body: Any = None, method: str | None = None) -> Any:
        return http_json(f"{self.url}/_sandbox/{path}", body, method)

    def reset(self) -> None:
        self.control("reset", {})

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.control("stats")
        return stats

    def requests(self, endpoint: str) -> int:
        return int(sum(self.stats()["responses"].get(endpoint, {}).values()))


def launch_sandbox(
    log_dir: Path, *args: str, name: str = "sandbox", module: str = SANDBOX_MODULE
) -> SandboxProc:
    """The sandbox in a :class:`Group`, so its CPU is measured like every contender's."""
    port = free_port()
    group = Group(name, sandbox_argv(port, "--quiet", *args, module=module), child_env(), log_dir)
    box = await_sandbox(group, port, 120)
    return SandboxProc(group, box.url)


# --- results -------------------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the main table: a contender's create and poll rates, or one rate for no-op/floor."""

    name: str
    key: str
    procs: int
    threads: int
    note: str = ""
    phases: dict[str, dict[str, Any]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Commands per second; with a create and a poll phase, the rate of the 1:1 mix (harmonic mean)."""
        if "create" in self.phases and "poll" in self.phases:
            c, p = self.phases["create"]["rate_per_s"], self.phases["poll"]["rate_per_s"]
            return 2 / (1 / c + 1 / p) if c and p else 0.0
        rates = [phase["rate_per_s"] for phase in self.phases.values()]
        return float(rates[0]) if rates else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "key": self.key,
            "processes": self.procs,
            "threads": self.threads,
            "note": self.note,
            "rate_per_s": round(self.rate, 1),
            "phases": self.phases,
            **self.extra,
        }


def _meters(
    workers: list[Group], sandbox: SandboxProc, others: dict[str, list[Group]] | None = None
) -> dict[str, CpuMeter]:
    meters = {
        "workers": CpuMeter(p for g in workers for p in g.processes()),
        "sandbox": CpuMeter(sandbox.group.processes()),
        "rabbitmq": CpuMeter(rabbitmq_processes()),
    }
    for name, groups in (others or {}).items():
        meters[name] = CpuMeter(p for g in groups for p in g.processes())
    return meters


# --- Dramatiq no-op --------------------------------------------------------------------------------------


def dramatiq_noop(sandbox: SandboxProc, log_dir: Path, kind: str, procs: int, threads: int, n: int) -> Row:
    queue = f"b{uid()}.noop"
    env = child_env(BENCH_BROKER=kind, BENCH_QUEUE=queue, BENCH_BROKER_URL=BROKER_URL)
    broker = Broker()
    workers: list[Group] = []
    actor = "poll_order" if kind == "order-worker" else "noop"
    try:
        _declare_dramatiq_queue(kind, queue)
        worker = Group(
            f"noop-{kind}",
            [
                PY,
                "-m",
                "dramatiq",
                "bench.noop_dramatiq",
                "--processes",
                str(procs),
                "--threads",
                str(threads),
            ],
            env,
            log_dir,
        )
        workers.append(worker)
        wait_for(lambda: broker.consumers(queue) >= procs, 60, "no-op consumers")
        body_kwargs = {"command_id": "bench-noop-0001", "provider": "0trace", "params": ZT_PARAMS}
        broker.publish(queue, (envelope(queue, actor, body_kwargs) for _ in range(200)))
        wait_for(lambda: broker.ready(queue) == 0, 60, "no-op warm-up")
        time.sleep(0.5)
        worker.pause()
        broker.publish(queue, (envelope(queue, actor, body_kwargs) for _ in range(n)))
        total = broker.wait_ready_count(queue, n, slack=procs * threads * 4)
        drain = measure_drain(broker, queue, total, _meters(workers, sandbox), worker.resume)
        label = (
            "stock RabbitmqBroker, classic queue"
            if kind == "stock"
            else "order-worker broker: quorum queue, confirms, its middleware"
        )
        row = Row(
            f"Dramatiq no-op ({kind} broker)",
            f"noop_dramatiq_{kind.replace('-', '_')}",
            procs,
            threads,
            label,
        )
        row.phases["noop"] = drain.as_dict()
        return row
    finally:
        for group in workers:
            group.stop()
        broker.reopen()
        broker.delete_queues(queue, f"{queue}.DQ", f"{queue}.XQ")
        broker.close()


def _resumer(groups: list[Group]) -> Callable[[], None]:
    """Releases every paused group at once (``measure_drain``'s release)."""

    def release() -> None:
        for group in groups:
            group.resume()

    return release


def _declare_dramatiq_queue(kind: str, queue: str) -> None:
    qb: Any
    if kind == "order-worker":
        from worker.bus.rabbitmq import QuorumRabbitmqBroker

        qb = QuorumRabbitmqBroker(url=BROKER_URL, delivery_limit=5)
    else:
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        qb = RabbitmqBroker(url=BROKER_URL)
    qb.declare_queue(queue, ensure=True)
    qb.close()


# --- Celery ------------------------------------------------------------------------------------------------

CELERY_URL = "amqp://guest:guest@127.0.0.1:5672//"


def _celery_worker(
    name: str, queue: str, procs: int, threads: int, env: dict[str, str], log_dir: Path
) -> list[Group]:
    return [
        Group(
            f"{name}-{i}",
            [
                PY,
                "-m",
                "celery",
                "-A",
                "bench.celery_peer",
                "worker",
                "-P",
                "threads",
                "-c",
                str(threads),
                "-Q",
                queue,
                "--loglevel",
                "WARNING",
                "-n",
                f"{name}-{i}-{uid()}@bench",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            env,
            log_dir,
        )
        for i in range(procs)
    ]


def _celery_app(env: dict[str, str]) -> Any:
    import os

    for key, value in env.items():
        if key.startswith("BENCH_"):
            os.environ[key] = value
    from bench.celery_peer import app

    return app


def _send_celery(app: Any, task: str, queue: str, args_list: Iterator[tuple[Any, ...]]) -> int:
    count = 0
    with app.producer_or_acquire() as producer:
        for args in args_list:
            app.send_task(task, args=args, queue=queue, producer=producer)
            count += 1
    return count


def celery_noop(
    sandbox: SandboxProc, log_dir: Path, procs: int, threads: int, n: int, acks_late: bool
) -> Row:
    queue = f"b{uid()}.celery-noop"
    env = child_env(
        BENCH_BROKER_URL=CELERY_URL, BENCH_ACKS_LATE="1" if acks_late else "0", BENCH_SANDBOX_URL=sandbox.url
    )
    app = _celery_app(env)
    broker = Broker()
    workers: list[Group] = []
    args = ("bench-noop-0001", ZT_PARAMS)
    try:
        _send_celery(app, "peer.noop", queue, iter([args] * 200))
        workers = _celery_worker("celery-noop", queue, procs, threads, env, log_dir)
        wait_for(lambda: broker.ready(queue) == 0, 60, "celery no-op warm-up")
        time.sleep(0.5)
        for w in workers:
            w.pause()
        _send_celery(app, "peer.noop", queue, iter([args] * n))
        total = broker.wait_ready_count(queue, n, slack=procs * threads * 4)
        drain = measure_drain(broker, queue, total, _meters(workers, sandbox), _resumer(workers))
        row = Row(
            "Celery no-op",
            "noop_celery",
            procs,
            threads,
            f"-P threads, prefetch x4, acks_late={'on' if acks_late else 'off'}",
        )
        row.phases["noop"] = drain.as_dict()
        return row
    finally:
        for group in workers:
            group.stop()
        broker.reopen()
        broker.delete_queues(queue)
        broker.close()


def celery_peer(
    sandbox: SandboxProc, log_dir: Path, procs: int, threads: int, n: int, acks_late: bool
) -> Row:
    tag = uid()
    create_q, poll_q = f"b{tag}.peer-create", f"b{tag}.peer-poll"
    env = child_env(
        BENCH_BROKER_URL=CELERY_URL,
        BENCH_ACKS_LATE="1" if acks_late else "0",
        BENCH_SANDBOX_URL=sandbox.url,
        BENCH_POLL_QUEUE=poll_q,
    )
    app = _celery_app(env)
    broker = Broker()
    workers: list[Group] = []
    row = Row(
        f"Celery + requests peer (acks_late {'on' if acks_late else 'off'})",
        f"celery_peer_acks_{'on' if acks_late else 'off'}",
        procs,
        threads,
        f"-P threads, prefetch x4, acks_late={'on' if acks_late else 'off'}, no result backend",
    )
    try:
        sandbox.reset()
        # warm-up: a few orders through both tasks
        _send_celery(app, "peer.create", create_q, ((f"warm-{tag}-{i:05d}", ZT_PARAMS) for i in range(40)))
        workers = _celery_worker("celery-create", create_q, procs, threads, env, log_dir)
        wait_for(lambda: sandbox.requests("0trace.create") >= 40, 60, "celery create warm-up")
        for w in workers:
            w.pause()
        _send_celery(app, "peer.create", create_q, ((f"peer-{tag}-{i:07d}", ZT_PARAMS) for i in range(n)))
        total = broker.wait_ready_count(create_q, n, slack=procs * threads * 4)
        drain = measure_drain(broker, create_q, total, _meters(workers, sandbox), _resumer(workers))
        row.phases["create"] = drain.as_dict()
        wait_for(lambda: sandbox.requests("0trace.create") >= n + 40, 120, "celery creates done")
        wait_for(lambda: broker.ready(poll_q) >= n + 40, 60, "celery poll backlog")
        for group in workers:
            group.stop()
        # poll phase: the follow-up messages the creates enqueued, drained by fresh workers
        workers = _celery_worker("celery-poll", poll_q, procs, threads, env, log_dir)
        total = broker.ready(poll_q)
        # The fresh workers consume as soon as they connect; the 90 % -> 10 % window excludes start-up.
        wait_for(lambda: all(w.processes() for w in workers), 10, "celery start")
        drain = measure_drain(broker, poll_q, total, _meters(workers, sandbox), lambda: None)
        row.phases["poll"] = drain.as_dict()
        errors = sandbox.stats()["responses"]
        row.extra["sandbox_responses"] = {
            k: v for k, v in errors.items() if k in ("0trace.create", "0trace.order")
        }
        return row
    finally:
        for group in workers:
            group.stop()
        broker.reopen()
        broker.delete_queues(create_q, poll_q)
        broker.close()


# --- the HTTP floor ----------------------------------------------------------------------------------------


def floor(sandbox: SandboxProc, procs: int, threads: int, seconds: float) -> Row:
    sandbox.reset()
    result = http_floor.run(sandbox.url, procs, threads, seconds, ZT_PARAMS)
    row = Row(
        "HTTP floor: bare signed-POST loop",
        "http_floor",
        procs,
        threads,
        "PartnerHttp (pooled keep-alive client), no broker, no ledger; CPU: client only",
    )
    row.phases["calls"] = {k: v for k, v in result.items()}
    return row


# --- order-worker's pipeline -------------------------------------------------------------------------------


@dataclass
class Stack:
    """One isolated order-worker deployment: unique queues and exchange, its own ledger."""

    sandbox: SandboxProc
    ledger_url: str
    log_dir: Path
    settings: dict[str, str] = field(default_factory=dict)
    tag: str = field(default_factory=uid)
    groups: list[Group] = field(default_factory=list)

    @property
    def create_queue(self) -> str:
        return f"b{self.tag}.create"

    @property
    def poll_queue(self) -> str:
        return f"b{self.tag}.poll"

    @property
    def exchange(self) -> str:
        return f"b{self.tag}.events"

    def env(self, **extra: str) -> dict[str, str]:
        return child_env(
            ORDER_WORKER_BROKER_URL=BROKER_URL,
            ORDER_WORKER_LEDGER_URL=self.ledger_url,
            ORDER_WORKER_CREATE_QUEUE=self.create_queue,
            ORDER_WORKER_POLL_QUEUE=self.poll_queue,
            ORDER_WORKER_EVENTS_EXCHANGE=self.exchange,
            ORDER_WORKER_ZEROTRACE_BASE_URL=self.sandbox.url,
            ORDER_WORKER_ITRX_BASE_URL=self.sandbox.url,
            ORDER_WORKER_ITRX_CALLBACK_URL="http://127.0.0.1:9/webhooks/itrx",
            **{"ORDER_WORKER_LOG_LEVEL": "WARNING", **self.settings, **extra},
        )

    def start(self, role: str, *args: str, name: str | None = None, **extra: str) -> tuple[Group, int]:
        port = free_port()
        command = [PY, "-m", "worker.cli", role, *args]
        group = Group(
            name or role,
            command,
            self.env(ORDER_WORKER_METRICS_PORT=str(port), **extra),
            self.log_dir,
        )
        self.groups.append(group)
        try:
            wait_for(
                lambda: http_ok(f"http://127.0.0.1:{port}/readyz") or not group.alive, 90, f"{role} ready"
            )
        except RuntimeError as exc:  # the run's logs are removed at the end: keep what the process said
            raise RuntimeError(f"{exc}; its output ends with: {group.output()[-3000:]}") from None
        if not group.alive:
            raise RuntimeError(f"{role} died: {group.output()[-3000:]}")
        return group, port

    def declare_queues(self) -> None:
        with pika.BlockingConnection(pika.URLParameters(BROKER_URL)) as connection:
            declare_work_queues(connection.channel(), (self.create_queue, self.poll_queue), 5)

    def stop(self) -> None:
        for group in reversed(self.groups):
            group.stop()
        self.groups.clear()
        broker = Broker()
        for base in (self.create_queue, self.poll_queue):
            broker.delete_queues(base, f"{base}.DQ", f"{base}.XQ")
        broker.delete_queues(f"{self.exchange}.unrouted")
        broker.delete_exchanges(self.exchange, f"{self.exchange}.unrouted")
        broker.close()


QUIET_POLLING = {
    # No scheduler-driven polls during the throughput phases: the bench sends the polls itself.
    "ORDER_WORKER_POLL_AWAITING_DEPOSIT": "3600",
    "ORDER_WORKER_POLL_CONFIRMING": "3600",
    "ORDER_WORKER_POLL_PROCESSING": "3600",
    "ORDER_WORKER_POLL_ACTION_REQUIRED": "3600",
    "ORDER_WORKER_SUBMIT_STUCK_SECONDS": "600",
    "ORDER_WORKER_CREATE_LEASE_SECONDS": "300",
    # The sandbox's budget is raised for throughput runs; the client-side limiter (worker.ratelimit, when
    # present) is switched off the way its settings document. bench.budget measures it at the real budget.
    "ORDER_WORKER_ZEROTRACE_WEIGHT_BUDGET": "0",
}


def _ledger_counts(url: str) -> Iterator[Any]:
    from worker.ledger import open_ledger

    ledger = open_ledger(url)
    try:
        yield ledger
    finally:
        ledger.close()


ledger_view = contextlib.contextmanager(_ledger_counts)


def _count(ledger: Any, sql: str) -> int:
    with ledger.database.read() as s:
        row = s.one(sql)
    return int(row[0]) if row else 0


def _create_kwargs(command_id: str) -> dict[str, Any]:
    return {"command_id": command_id, "provider": "0trace", "params": ZT_PARAMS}


def _poll_kwargs(command_id: str) -> dict[str, Any]:
    return {"command_id": command_id}


def _done(ledger: Any, sql: str, target: int) -> bool:
    return _count(ledger, sql) >= target


def pipeline(
    sandbox: SandboxProc,
    log_dir: Path,
    kind: str,
    procs: int,
    threads: int,
    n: int,
    *,
    latency_ms: float | None = None,
    profile_to: Path | None = None,
    tmp: Path,
) -> Row:
    """Full pipeline: create phase (claim, intent, signed create, sealed token, created event) then poll
    phase (signed read, transition to completed, status_changed event), relay publishing every event."""
    sandbox.reset()
    if latency_ms:
        sandbox.control(
            "faults",
            {"endpoint": "0trace.*", "kind": "latency", "latency_ms": latency_ms, "probability": 1.0},
        )
    name = f"order-worker pipeline ({'SQLite' if kind == 'sqlite' else 'PostgreSQL'})"
    key = f"pipeline_{kind}_{procs}x{threads}" + (f"_lat{int(latency_ms)}ms" if latency_ms else "")
    note = "create+poll, ledger, outbox, relay -> events" + (
        f"; partner latency {latency_ms:g} ms" if latency_ms else ""
    )
    row = Row(name, key, procs, threads, note)
    with ledger_url(kind, tmp, pool_size=threads + 2) as url:
        stack = Stack(sandbox, url, log_dir, dict(QUIET_POLLING))
        broker = Broker()
        spy: Group | None = None
        try:
            stack.declare_queues()
            sched, _ = stack.start("scheduler", name="relay")
            worker, _ = stack.start(
                "worker", "--processes", str(procs), "--threads", str(threads), name="worker"
            )
            tag = stack.tag
            warm = 40
            creates = [f"warm-{tag}-{i:05d}" for i in range(warm)]
            broker.publish(
                stack.create_queue,
                (
                    envelope(
                        stack.create_queue,
                        "create_order",
                        {"command_id": c, "provider": "0trace", "params": ZT_PARAMS},
                    )
                    for c in creates
                ),
            )
            with ledger_view(url) as ledger:
                not_submitting = "SELECT COUNT(*) FROM orders WHERE status <> 'submitting'"
                completed = "SELECT COUNT(*) FROM orders WHERE status = 'completed'"
                published = "SELECT COUNT(*) FROM outbox WHERE published_at IS NOT NULL"
                wait_for(lambda: _count(ledger, not_submitting) >= warm, 120, "warm-up creates")
                time.sleep(1.0)  # let the sandbox move the orders on (its lifecycle runs at --speed)
                since = time.time()
                polled = "SELECT COUNT(*) FROM orders WHERE updated_at >= {since}"
                broker.publish(
                    stack.poll_queue,
                    (envelope(stack.poll_queue, "poll_order", {"command_id": c}) for c in creates),
                )
                wait_for(lambda: _count(ledger, polled.format(since=since)) >= warm, 120, "warm-up polls")
                time.sleep(0.3)

                ids = [f"bench-{tag}-{i:07d}" for i in range(n)]
                meters = _meters([worker], sandbox, {"relay": [sched]})
                if kind == "postgres":
                    meters["postgres"] = CpuMeter(postgres_processes())
                if profile_to is not None:
                    spy = _py_spy(worker, profile_to, log_dir)
                for phase, queue, actor, make, done_sql, target in (
                    (
                        "create",
                        stack.create_queue,
                        "create_order",
                        _create_kwargs,
                        not_submitting,
                        warm + n,
                    ),
                    ("poll", stack.poll_queue, "poll_order", _poll_kwargs, polled, n),
                ):
                    done_sql = done_sql.format(since=time.time())
                    worker.pause()
                    broker.publish(queue, (envelope(queue, actor, make(c)) for c in ids))
                    total = broker.wait_ready_count(queue, n, slack=procs * threads * 4)
                    released = time.perf_counter()
                    drain = measure_drain(broker, queue, total, meters, worker.resume, timeout=900)
                    wait_for(partial(_done, ledger, done_sql, target), 300, f"{phase} phase done")
                    done_at = time.perf_counter()
                    wait_for(
                        lambda: _count(ledger, published) >= _count(ledger, "SELECT COUNT(*) FROM outbox"),
                        300,
                        "outbox drained",
                    )
                    events_at = time.perf_counter()
                    result = drain.as_dict()
                    result["all_done_after_s"] = round(done_at - released, 2)
                    result["all_events_published_after_s"] = round(events_at - released, 2)
                    result["end_to_end_rate_per_s"] = round(n / (events_at - released), 1)
                    row.phases[phase] = result
                row.extra["events_published"] = _count(ledger, published)
                row.extra["orders_completed"] = _count(ledger, completed) - warm
                row.extra["orders_by_status"] = {
                    f"{p}/{st}": c for (p, st), c in ledger.count_by_status().items()
                }
            if spy is not None:
                spy.signal(2)  # SIGINT: py-spy writes its output
                with contextlib.suppress(Exception):
                    spy.popen.wait(30)
        finally:
            if spy is not None and spy.alive:
                spy.stop()
            broker.close()
            stack.stop()
    if latency_ms:
        sandbox.control("faults", None, "DELETE")
        row.extra["predicted_rate_per_s"] = round(procs * threads / (latency_ms / 1000), 1)
    return row


def _py_spy(worker: Group, out: Path, log_dir: Path) -> Group:
    """Sample every worker process until SIGINT, as collapsed stacks; only the thread holding the GIL is
    sampled (``--gil``), so the samples show where the worker's Python CPU goes, not where threads wait."""
    import shutil

    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return Group(
        "py-spy",
        [
            exe,
            "record",
            "--pid",
            str(worker.popen.pid),
            "--subprocesses",
            "--gil",
            "--format",
            "raw",
            "--rate",
            "250",
            "--output",
            str(out),
            "--nonblocking",
        ],
        child_env(),
        log_dir,
    )
