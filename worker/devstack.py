"""``order-worker run`` / ``demo``: the whole service on one machine, for a newcomer's first five minutes.

Starts the sandbox, a worker, the scheduler/relay and the webhook receiver as child processes on the
embedded defaults (SQLite ledger, local RabbitMQ), with short poll intervals and a fast sandbox clock so a
30-minute order lifecycle takes seconds. ``demo`` then submits orders and prints their events as they arrive.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from worker.partners import registry
from worker.processes import (
    Child,
    die_with_parent,
    port_open,
    role_argv,
    start_sandbox,
    stop_all,
    wait_http,
)
from worker.settings import broker_hosts, get_settings


@dataclass(frozen=True)
class Ports:
    """Where the stack listens, on this machine only; the defaults are the ones the README names."""

    sandbox: int = 8090
    webhooks: int = 8091
    worker_metrics: int = 9191

    @property
    def scheduler_metrics(self) -> int:
        return self.worker_metrics + 1

    def all(self) -> tuple[int, int, int, int]:
        return self.sandbox, self.webhooks, self.worker_metrics, self.scheduler_metrics


SIMULATED_PARTNERS = ("0trace", "itrx")
"""The partners the local simulator stands in for."""


def demo_commands(count: int) -> list[dict[str, Any]]:
    """Orders for each simulated partner in turn, with the partner's own example params."""
    commands = []
    for index in range(count):
        provider = SIMULATED_PARTNERS[index % len(SIMULATED_PARTNERS)]
        commands.append(
            {
                "command_id": f"demo-{uuid.uuid4().hex[:12]}",
                "provider": provider,
                "params": dict(registry.get(provider).example_params),
                "metadata": {"demo": "true", "index": str(index)},
            }
        )
    return commands


class Stack:
    """The stack's children, logging to ``.run/<name>.log`` (appended, so earlier runs stay readable)."""

    def __init__(self) -> None:
        self.children: list[Child] = []
        self.log_dir = Path(".run")
        self.log_dir.mkdir(exist_ok=True)

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def start(self, name: str, args: list[str], env: dict[str, str]) -> None:
        # .run/*.log is read by the person running the stack: console lines unless they chose otherwise.
        env = {"ORDER_WORKER_LOG_FORMAT": "console", **os.environ, **env}
        self.children.append(Child(name, role_argv(*args), env, self.log_path(name), append=True, tied=True))

    def start_sandbox(self, speed: float, ports: Ports) -> None:
        box = start_sandbox(
            self.log_path("sandbox"),
            port=ports.sandbox,
            speed=speed,
            extra=["--webhook-url", f"http://127.0.0.1:{ports.webhooks}/webhooks/0trace"],
            timeout=60,
            append=True,
            tied=True,
        )
        self.children.append(box.process)

    def check_alive(self) -> str | None:
        for child in self.children:
            if not child.alive:
                return f"{child.name} exited with code {child.popen.returncode} (see {child.log_path})"
        return None

    def stop(self) -> None:
        stop_all(self.children)


class StackStopped(Exception):
    """A signal asked the stack to stop: raised wherever the main thread is, so ``finally`` stops it."""


def _stop_on_signals() -> None:
    """SIGTERM, SIGINT and SIGHUP stop the stack and every process it started; so does the death of
    whatever started it. A background job of a script starts with SIGINT ignored, and Python's default
    SIGTERM ends the process without running any ``finally``: both would leave the children running."""
    stopping = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

    def stop(signum: int, frame: object) -> None:
        for each in stopping:  # a second signal must not interrupt the stopping itself
            signal.signal(each, signal.SIG_IGN)
        raise StackStopped(signal.Signals(signum).name)

    for each in stopping:
        signal.signal(each, stop)
    parent = os.getppid()
    die_with_parent()
    if os.getppid() != parent:  # the parent was already gone before the kernel could be told
        os.kill(os.getpid(), signal.SIGTERM)


def run_stack(demo_orders: int, speed: float, ports: Ports | None = None) -> int:
    ports = ports or Ports()
    _stop_on_signals()
    settings = get_settings()
    nodes = [urlsplit(url) for url in settings.bus.broker_urls()]
    if not any(port_open(node.hostname or "127.0.0.1", node.port or 5672) for node in nodes):
        hosts = broker_hosts(settings.bus.broker_url.get_secret_value())
        print(
            f"order-worker: RabbitMQ is not reachable at {hosts}.\n"
            "  Start it with 'bash deploy/dev.sh broker' (installs rabbitmq-server if needed),\n"
            "  or point ORDER_WORKER_BROKER_URL at a running broker.",
            file=sys.stderr,
        )
        return 2
    for port in ports.all():
        if port_open("127.0.0.1", port):
            print(
                f"order-worker: port {port} is already in use (another 'order-worker run'?)", file=sys.stderr
            )
            return 2
    fast = {
        "ORDER_WORKER_POLL_AWAITING_DEPOSIT": "2",
        "ORDER_WORKER_POLL_CONFIRMING": "2",
        "ORDER_WORKER_POLL_PROCESSING": "2",
        "ORDER_WORKER_POLL_ACTION_REQUIRED": "2",
        "ORDER_WORKER_POLL_SAFETY_INTERVAL": "10",
        "ORDER_WORKER_ITRX_CALLBACK_URL": f"http://127.0.0.1:{ports.webhooks}/webhooks/itrx",
        # A developer's machine: metrics and webhooks answer this machine only, unless chosen otherwise.
        "ORDER_WORKER_METRICS_HOST": os.environ.get("ORDER_WORKER_METRICS_HOST", "127.0.0.1"),
        "ORDER_WORKER_WEBHOOKS_HOST": os.environ.get("ORDER_WORKER_WEBHOOKS_HOST", "127.0.0.1"),
    }
    stack = Stack()
    print(
        f"starting the stack (logs in {stack.log_dir}/): sandbox :{ports.sandbox}, "
        f"webhooks :{ports.webhooks}, worker metrics :{ports.worker_metrics}, "
        f"scheduler metrics :{ports.scheduler_metrics}"
    )
    try:
        try:
            stack.start_sandbox(speed, ports)
        except RuntimeError as failure:
            print(f"order-worker: {failure}", file=sys.stderr)
            return 1
        stack.start(
            "worker",
            ["worker", "--processes", "1", "--threads", "8"],
            {**fast, "ORDER_WORKER_METRICS_PORT": str(ports.worker_metrics)},
        )
        stack.start(
            "scheduler", ["scheduler"], {**fast, "ORDER_WORKER_METRICS_PORT": str(ports.scheduler_metrics)}
        )
        stack.start("webhooks", ["webhooks", "--port", str(ports.webhooks)], fast)
        for url in (
            f"http://127.0.0.1:{ports.worker_metrics}/readyz",
            f"http://127.0.0.1:{ports.scheduler_metrics}/readyz",
            f"http://127.0.0.1:{ports.webhooks}/readyz",
        ):
            if not wait_http(url, 60, lambda: stack.check_alive() is None):
                print(
                    f"order-worker: {url} did not become ready; {stack.check_alive() or 'see .run/*.log'}",
                    file=sys.stderr,
                )
                return 1
        print(
            f"ready. metrics: curl http://127.0.0.1:{ports.worker_metrics}/metrics   "
            "events: order-worker events"
        )
        if demo_orders:
            return _demo(settings, demo_orders, stack)
        while (problem := stack.check_alive()) is None:
            time.sleep(1)
        print(f"order-worker: {problem}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, StackStopped):
        return 0
    finally:
        stack.stop()


def _demo(settings: Any, count: int, stack: Stack, timeout: float = 180.0) -> int:
    from order_worker_client.producer import CommandProducer

    from worker import tracing
    from worker.bus.watcher import EventWatcher, event_line
    from worker.status import TERMINAL

    url = settings.bus.broker_url.get_secret_value()
    commands = demo_commands(count)
    final: dict[str, str] = {}
    seen: set[str] = set()
    with (
        EventWatcher(url, settings.bus.events_exchange) as watcher,
        CommandProducer(settings.bus.broker_urls(), trace_context=tracing.current) as producer,
    ):
        for command in commands:
            producer.create_order(command)
            print(f"submitted {command['command_id']} ({command['provider']})")
        deadline = time.monotonic() + timeout
        for item in watcher.events():
            if item is not None:
                routing_key, event = item
                if event["event_id"] in seen:
                    continue
                seen.add(event["event_id"])
                print(event_line(routing_key, event))
                if event.get("status") in TERMINAL:
                    final[event["command_id"]] = event["status"]
            if len(final) == len(commands) or time.monotonic() > deadline:
                break
            if (problem := stack.check_alive()) is not None:
                print(f"order-worker: {problem}", file=sys.stderr)
                return 1
    summary = {"orders": len(commands), "finished": len(final), "statuses": final, "events": len(seen)}
    print(json.dumps(summary))
    return 0 if len(final) == len(commands) else 1
