"""Shared plumbing of the benchmark: the broker probe, backlog loading, drain measurement, CPU accounting.

How a throughput figure is taken (the same for every contender):

1. the consumers (Dramatiq or Celery worker processes) are started and warmed up, then frozen with
   SIGSTOP (or, for a phase whose backlog is produced by the previous phase, not started yet);
2. a backlog of N messages is loaded into the queue (outside the measurement);
3. the consumers are released (SIGCONT / started) and the queue's *ready* count is sampled every 20 ms;
4. the rate is taken between the moments 90 % and 10 % of the backlog remained (linear interpolation
   between samples): start-up, warm-up and the tail (prefetched messages, last stragglers) are outside
   the window, so every contender is measured in the same steady state. The CPU of each process group is
   sampled at the same instants, which gives CPU seconds per message inside the same window.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pika
import psutil

from tests.support.partners import zerotrace_params
from worker.processes import Child, poll

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
BROKER_URL = os.environ.get("ORDER_WORKER_TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
POSTGRES_URL = os.environ.get("ORDER_WORKER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
ZT_PARAMS: dict[str, Any] = zerotrace_params()


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def child_env(**extra: str) -> dict[str, str]:
    """Environment of every child process: no inherited ORDER_WORKER_ settings. Children run from the
    repository root (``Group``), where ``python -m`` finds ``bench`` as it finds it for the parent."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORDER_WORKER_", "BENCH_"))}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(extra)
    return env


def uid() -> str:
    return uuid.uuid4().hex[:10]


# --- processes ---------------------------------------------------------------------------------------


class Group(Child):
    """A child process in its own session, so SIGSTOP/SIGCONT/SIGTERM reach all its children."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        super().__init__(name, args, env, log_dir / f"{name}-{uid()[:6]}.log", cwd=REPO)

    def signal(self, signum: int) -> None:
        self.signal_group(signum)

    def pause(self) -> None:
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)

    def processes(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.popen.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stop(self, timeout: float = 30) -> int | None:
        """A paused group cannot act on SIGTERM: it is resumed first."""
        self.resume()
        return super().stop(timeout)


class CpuMeter:
    """Summed user+system CPU seconds of a fixed set of processes (taken once, after start-up)."""

    def __init__(self, processes: Iterable[psutil.Process]) -> None:
        self.processes = list(processes)

    def __call__(self) -> float:
        total = 0.0
        for proc in self.processes:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                times = proc.cpu_times()
                total += times.user + times.system
        return total

    def rss(self) -> int:
        total = 0
        for proc in self.processes:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                total += proc.memory_info().rss
        return total


class ChangingCpuMeter:
    """CPU seconds spent since this meter was made by a set of processes that changes: PostgreSQL starts a
    backend per connection and autovacuum workers that come and go, which a :class:`CpuMeter` taken once
    would miss or, when one exits, count backwards. Each reading lists the processes again; a process
    started after the meter counts in full, and one that exited keeps its last reading, so read it often
    (every second or so) for the CPU of short-lived processes to be counted."""

    def __init__(self, select: Callable[[], list[psutil.Process]]) -> None:
        self._select = select
        self._since = time.time()
        self._first: dict[tuple[int, float], float] = {}
        self._last: dict[tuple[int, float], float] = {}
        self()

    def __call__(self) -> float:
        for proc in self._select():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                created = proc.create_time()
                times = proc.cpu_times()
                key = (proc.pid, created)
                if key not in self._first:
                    self._first[key] = times.user + times.system if created < self._since else 0.0
                self._last[key] = times.user + times.system
        return sum(last - self._first[key] for key, last in self._last.items())


def _processes_named(*names: str) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["name"]) if p.info["name"] in names]


def rabbitmq_processes() -> list[psutil.Process]:
    return _processes_named("beam.smp", "beam")


def postgres_processes() -> list[psutil.Process]:
    """The PostgreSQL server's processes present now: one backend per open connection, so taken after the
    contender's connection pools are open."""
    return _processes_named("postgres", "postmaster")


# --- broker --------------------------------------------------------------------------------------------


class Broker:
    """One pika connection for probing queue depths and loading backlogs (no confirms: checked by count)."""

    def __init__(self, url: str = BROKER_URL) -> None:
        self.url = url
        self.connection = pika.BlockingConnection(pika.URLParameters(url))
        self.channel = self.connection.channel()

    def ready(self, queue: str) -> int:
        count: int = self.channel.queue_declare(queue, passive=True).method.message_count
        return count

    def consumers(self, queue: str) -> int:
        count: int = self.channel.queue_declare(queue, passive=True).method.consumer_count
        return count

    def publish(
        self, queue: str, bodies: Iterable[bytes], properties: pika.BasicProperties | None = None
    ) -> int:
        props = properties or pika.BasicProperties(
            delivery_mode=pika.DeliveryMode.Persistent, content_type="application/json"
        )
        count = 0
        for body in bodies:
            self.channel.basic_publish(exchange="", routing_key=queue, body=body, properties=props)
            count += 1
            if count % 2000 == 0:
                self.connection.process_data_events(0)
        return count

    def wait_ready_count(self, queue: str, expected: int, timeout: float = 60, slack: int = 0) -> int:
        """Wait until the queue holds ``expected`` ready messages, less up to ``slack`` that paused
        consumers may already have prefetched; returns the settled count."""
        deadline = time.monotonic() + timeout
        last, stable_since = -1, time.monotonic()
        while True:
            seen = self.ready(queue)
            if seen != last:
                last, stable_since = seen, time.monotonic()
            if seen >= expected or (seen >= expected - slack and time.monotonic() - stable_since > 0.5):
                return seen
            if time.monotonic() > deadline:
                raise RuntimeError(f"queue {queue} holds {seen} messages, expected {expected}")
            time.sleep(0.05)

    def delete_queues(self, *names: str) -> None:
        for name in names:
            with contextlib.suppress(Exception):
                self.channel.queue_delete(name)

    def delete_exchanges(self, *names: str) -> None:
        for name in names:
            with contextlib.suppress(Exception):
                self.channel.exchange_delete(name)

    def reopen(self) -> None:
        """A failed passive declare closes the channel; open another."""
        if not self.channel.is_open:
            self.channel = self.connection.channel()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.connection.close()


# --- drain measurement ---------------------------------------------------------------------------------


@dataclass
class Drain:
    """The steady-state window of one backlog drain."""

    total: int
    rate: float  # messages per second between 90 % and 10 % remaining
    window_s: float
    cpu_per_msg: dict[str, float] = field(default_factory=dict)  # seconds, per process group
    drained_after_s: float = 0.0  # from release to an empty queue

    def as_dict(self) -> dict[str, Any]:
        return {
            "messages": self.total,
            "rate_per_s": round(self.rate, 1),
            "window_s": round(self.window_s, 3),
            "drained_after_s": round(self.drained_after_s, 2),
            "cpu_us_per_msg": {k: round(v * 1e6, 1) for k, v in self.cpu_per_msg.items()},
        }


def _crossing(
    samples: list[tuple[float, int, dict[str, float]]], level: float
) -> tuple[float, dict[str, float]]:
    """Time (and CPU readings) at which the ready count fell to ``level``, interpolated between samples."""
    for (t0, r0, c0), (t1, r1, c1) in itertools.pairwise(samples):
        if r0 >= level >= r1 and r0 != r1:
            f = (r0 - level) / (r0 - r1)
            return t0 + f * (t1 - t0), {k: c0[k] + f * (c1[k] - c0[k]) for k in c0}
    t, _, c = samples[-1]
    return t, c


def measure_drain(
    broker: Broker,
    queue: str,
    total: int,
    meters: dict[str, CpuMeter],
    release: Callable[[], None],
    timeout: float = 300,
    interval: float = 0.02,
) -> Drain:
    """Release the consumers and sample the queue until it is empty (see the module docstring)."""
    samples: list[tuple[float, int, dict[str, float]]] = []
    started = time.perf_counter()
    release()
    while True:
        now = time.perf_counter()
        ready = broker.ready(queue)
        samples.append((now, ready, {name: meter() for name, meter in meters.items()}))
        if ready == 0:
            break
        if now - started > timeout:
            raise RuntimeError(f"{queue}: {ready} of {total} messages left after {timeout:.0f} s")
        time.sleep(interval)
    t90, c90 = _crossing(samples, 0.9 * total)
    t10, c10 = _crossing(samples, 0.1 * total)
    window = max(t10 - t90, 1e-6)
    moved = 0.8 * total
    return Drain(
        total=total,
        rate=moved / window,
        window_s=window,
        cpu_per_msg={k: (c10[k] - c90[k]) / moved for k in c90},
        drained_after_s=samples[-1][0] - started,
    )


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    value = poll(predicate, timeout, interval)
    if not value:
        raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
    return value


# --- ledgers -------------------------------------------------------------------------------------------


@contextlib.contextmanager
def ledger_url(kind: str, tmp: Path, pool_size: int | None = None) -> Iterator[str]:
    """A throwaway ledger: a SQLite file under ``tmp`` or a fresh PostgreSQL schema (dropped after)."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp / f'ledger-{uid()}.db'}"
        return
    import psycopg

    schema = f"bench_{uid()}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    parts = urlsplit(POSTGRES_URL)
    query = [*parse_qsl(parts.query), ("options", f"-csearch_path={schema}")]
    if pool_size:
        query.append(("pool_size", str(pool_size)))
    try:
        yield urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def libpq_url(url: str) -> str:
    """A ledger URL without the ledger's own query options (pool_size...), for a plain psycopg connect."""
    parts = urlsplit(url)
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query)
        if k not in ("pool_size", "pool_min", "pool_timeout", "prepare_threshold", "schema")
    ]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]
