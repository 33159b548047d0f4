"""Real processes for end-to-end and reliability tests: the sandbox, workers, the scheduler/relay and the
webhook receiver, started with the product's own primitives (``worker.processes``).

Every stack gets its own queue names, events exchange and ledger (a temporary SQLite file or a throwaway
PostgreSQL schema), so tests never see each other's messages, and everything is torn down afterwards.
Every wait is on a condition with a deadline (``wait_until``), never a sleep that hopes.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pika
import pytest
from order_worker_client.brokers import broker_urls
from order_worker_client.producer import CommandProducer
from pika.exceptions import AMQPError

from worker.bus.connection import connection_parameters
from worker.bus.topology import declare_work_queues
from worker.bus.watcher import EventWatcher
from worker.ledger import open_ledger
from worker.ledger.base import Ledger
from worker.processes import Child, RunningSandbox, free_port, http_ok, poll, role_argv, start_sandbox

RABBITMQ_URL = os.environ.get("ORDER_WORKER_TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
POSTGRES_URL = os.environ.get("ORDER_WORKER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll a condition with a deadline; the failure message says what never happened."""
    value = poll(predicate, timeout, interval)
    if not value:
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
    return value


def http_json(url: str, body: Any = None, method: str | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method or ("POST" if data else "GET"))
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"null")


class Process(Child):
    """A process of a test stack, logging to a file of its own in the run's log folder."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], log_dir: Path) -> None:
        super().__init__(name, argv, env, log_dir / f"{name}-{uuid.uuid4().hex[:6]}.log")
        self.metrics_port: int | None = None


@dataclass
class Sandbox(RunningSandbox):
    """The partner simulator with its control API (``/_sandbox/...``), which only tests and benchmarks use."""

    def orders(self) -> list[dict[str, Any]]:
        answer = http_json(f"{self.url}/_sandbox/orders")
        orders: list[dict[str, Any]] = answer["orders"] if isinstance(answer, dict) else answer
        return orders

    def orders_for(self, key: str) -> list[dict[str, Any]]:
        """Partner orders created with this Idempotency-Key / out_trade_no."""
        return [o for o in self.orders() if key in (o.get("idempotency_key"), o.get("out_trade_no"))]

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = http_json(f"{self.url}/_sandbox/stats")
        return stats

    def control(self, path: str, body: Any) -> Any:
        return http_json(f"{self.url}/_sandbox/{path}", body)


def spawn_sandbox(
    log_dir: Path,
    speed: float = 100.0,
    extra: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> Sandbox:
    box = start_sandbox(log_dir / f"sandbox-{uuid.uuid4().hex[:6]}.log", speed=speed, extra=extra, env=env)
    return Sandbox(box.process, box.port)


def require_service(host: str, port: int, what: str, how: str) -> None:
    """Fail (not skip) with the command that starts a missing service: these tests must not pass vacuously."""
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError:
        pytest.fail(f"{what} is not reachable at {host}:{port}. {how}", pytrace=False)


@dataclass
class Stack:
    """One isolated order-worker deployment (any number of worker processes) against a sandbox."""

    sandbox: Sandbox
    ledger_url: str
    log_dir: Path
    settings: dict[str, str] = field(default_factory=dict)
    uid: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    processes: list[Process] = field(default_factory=list)
    webhooks_port: int = field(default_factory=free_port)
    broker_url: str = RABBITMQ_URL
    _ledger: Ledger | None = None

    @property
    def create_queue(self) -> str:
        return f"t{self.uid}.create"

    @property
    def poll_queue(self) -> str:
        return f"t{self.uid}.poll"

    @property
    def actions_queue(self) -> str:
        return f"t{self.uid}.actions"

    @property
    def quotes_queue(self) -> str:
        return f"t{self.uid}.quotes"

    @property
    def exchange(self) -> str:
        return f"t{self.uid}.events"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORDER_WORKER_")}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env.update(
            {
                "ORDER_WORKER_BROKER_URL": self.broker_url,
                "ORDER_WORKER_LEDGER_URL": self.ledger_url,
                "ORDER_WORKER_CREATE_QUEUE": self.create_queue,
                "ORDER_WORKER_POLL_QUEUE": self.poll_queue,
                "ORDER_WORKER_ACTIONS_QUEUE": self.actions_queue,
                "ORDER_WORKER_QUOTES_QUEUE": self.quotes_queue,
                "ORDER_WORKER_EVENTS_EXCHANGE": self.exchange,
                "ORDER_WORKER_ZEROTRACE_BASE_URL": self.sandbox.url,
                "ORDER_WORKER_ITRX_BASE_URL": self.sandbox.url,
                "ORDER_WORKER_ITRX_CALLBACK_URL": f"http://127.0.0.1:{self.webhooks_port}/webhooks/itrx",
                "ORDER_WORKER_WEBHOOKS_PORT": str(self.webhooks_port),
                "ORDER_WORKER_POLL_AWAITING_DEPOSIT": "0.5",
                "ORDER_WORKER_POLL_CONFIRMING": "0.5",
                "ORDER_WORKER_POLL_PROCESSING": "0.5",
                "ORDER_WORKER_POLL_ACTION_REQUIRED": "0.5",
                "ORDER_WORKER_SCHEDULER_INTERVAL": "0.2",
                "ORDER_WORKER_SUBMIT_STUCK_SECONDS": "5",
                "ORDER_WORKER_RETRY_BASE_SECONDS": "0.2",
                "ORDER_WORKER_RETRY_MAX_SECONDS": "2",
                "ORDER_WORKER_LOG_LEVEL": "INFO",
                **self.settings,
                **extra,
            }
        )
        return env

    def start(self, role: str, *args: str, **extra_env: str) -> Process:
        metrics_port = free_port()
        process = Process(
            role,
            role_argv(role, *args),
            self.env(ORDER_WORKER_METRICS_PORT=str(metrics_port), **extra_env),
            self.log_dir,
        )
        process.metrics_port = metrics_port
        self.processes.append(process)
        return process

    def start_worker(self, processes: int = 1, threads: int = 4, **extra_env: str) -> Process:
        process = self.start("worker", "--processes", str(processes), "--threads", str(threads), **extra_env)
        self.wait_ready(process)
        return process

    def start_scheduler(self, *args: str, **extra_env: str) -> Process:
        process = self.start("scheduler", *args, **extra_env)
        self.wait_ready(process)
        return process

    def start_webhooks(self, **extra_env: str) -> Process:
        process = self.start(
            "webhooks", "--host", "127.0.0.1", "--port", str(self.webhooks_port), **extra_env
        )
        wait_until(
            lambda: http_ok(f"http://127.0.0.1:{self.webhooks_port}/readyz") or not process.alive,
            60,
            "webhooks ready",
        )
        assert process.alive, process.output()
        return process

    def wait_ready(self, process: Process, timeout: float = 60) -> None:
        port = process.metrics_port
        wait_until(
            lambda: http_ok(f"http://127.0.0.1:{port}/readyz") or not process.alive,
            timeout,
            f"{process.name} ready",
        )
        assert process.alive, process.output()

    def metrics(self, process: Process) -> str:
        port = process.metrics_port
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return str(response.read().decode())

    def producer(self) -> CommandProducer:
        return CommandProducer(
            broker_urls(self.broker_url), self.create_queue, self.poll_queue, self.actions_queue
        )

    def watcher(self) -> EventWatcher:
        return EventWatcher(self.broker_url, self.exchange)

    def ledger(self) -> Ledger:
        """The test's own view of the ledger (one connection pool, closed by stop())."""
        if self._ledger is None:
            self._ledger = open_ledger(self.ledger_url)
        return self._ledger

    def declare_queues(self) -> None:
        """Producers publish with mandatory; the worker declares queues, so tests that publish before a
        worker starts declare them the same way first."""
        with pika.BlockingConnection(connection_parameters(self.broker_url)) as connection:
            declare_work_queues(connection.channel(), (self.create_queue, self.poll_queue), 5)

    def quote_consumers(self) -> int:
        """Consumers on the quotes queue (0 while it does not exist): a worker serves quotes once it is 1."""
        with pika.BlockingConnection(connection_parameters(self.broker_url)) as connection:
            try:
                declared = connection.channel().queue_declare(self.quotes_queue, passive=True)
            except pika.exceptions.ChannelClosedByBroker:
                return 0
            return int(declared.method.consumer_count)

    def queue_depths(self) -> dict[str, int]:
        """Ready messages per work queue (main, delay and dead-letter queue), via passive declares."""
        depths: dict[str, int] = {}
        connection = pika.BlockingConnection(connection_parameters(self.broker_url))
        try:
            for base in (self.create_queue, self.poll_queue):
                for queue in (base, f"{base}.DQ", f"{base}.XQ"):
                    channel = connection.channel()
                    try:
                        depths[queue] = channel.queue_declare(queue, passive=True).method.message_count
                        channel.close()
                    except pika.exceptions.ChannelClosedByBroker:
                        depths[queue] = 0
        finally:
            connection.close()
        return depths

    def dead_lettered_bodies(self, queue: str) -> list[dict[str, Any]]:
        """Drain the Dramatiq dead-letter queue (``queue.XQ``) and return the envelopes found there."""
        bodies: list[dict[str, Any]] = []
        connection = pika.BlockingConnection(connection_parameters(self.broker_url))
        try:
            channel = connection.channel()
            while True:
                method, _properties, body = channel.basic_get(f"{queue}.XQ", auto_ack=True)
                if method is None:
                    break
                bodies.append(json.loads(body))
        finally:
            connection.close()
        return bodies

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        if self._ledger is not None:
            self._ledger.close()
        with contextlib.suppress(AMQPError, OSError):
            connection = pika.BlockingConnection(connection_parameters(self.broker_url))
            channel = connection.channel()
            for base in (self.create_queue, self.poll_queue, self.actions_queue):
                for queue in (base, f"{base}.DQ", f"{base}.XQ"):
                    channel.queue_delete(queue)
            channel.queue_delete(self.quotes_queue)
            channel.queue_delete(f"{self.exchange}.unrouted")
            channel.exchange_delete(self.exchange)
            channel.exchange_delete(f"{self.exchange}.unrouted")
            connection.close()

    # --- logs and metrics of the service (never the sandbox: it is the partner) ----------------------
    def service_logs(self) -> dict[str, bytes]:
        logs = {}
        for process in self.processes:
            with contextlib.suppress(ValueError):
                process.log.flush()
            logs[process.log_path.name] = process.log_path.read_bytes()
        return logs

    def metrics_texts(self) -> dict[str, str]:
        texts = {}
        for process in self.processes:
            port = getattr(process, "metrics_port", None)
            if process.name == "webhooks":
                port = self.webhooks_port  # the receiver serves /metrics beside its push endpoints
            if port is None or not process.alive:
                continue
            with contextlib.suppress(OSError):
                url = f"http://127.0.0.1:{port}/metrics"
                with urllib.request.urlopen(url, timeout=5) as response:
                    texts[f"metrics:{process.name}:{port}"] = response.read().decode()
        return texts


def collect_events(
    watcher: EventWatcher, until: Callable[[list[dict[str, Any]]], bool], timeout: float
) -> list[dict[str, Any]]:
    """Events, deduplicated by event_id as a consumer must, until ``until(events)`` holds or the deadline."""
    seen: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    for item in watcher.events(inactivity_timeout=0.5):
        if item is not None and item[1]["event_id"] not in seen:
            seen[item[1]["event_id"]] = item[1]
        if until(list(seen.values())):
            break
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f}s; {len(seen)} events: {list(seen.values())[-5:]}"
            )
    return list(seen.values())


def terminal_for_all(command_ids: set[str]) -> Callable[[list[dict[str, Any]]], bool]:
    from worker.status import TERMINAL

    def check(events: list[dict[str, Any]]) -> bool:
        done = {
            e["command_id"]
            for e in events
            if e.get("status") in TERMINAL or e["type"] in ("in_doubt", "rejected")
        }
        return command_ids <= done

    return check
