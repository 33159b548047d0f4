"""Machinery of the reliability suite, on top of the end-to-end harness (``tests.e2e.harness``).

* sizes (CI or large), seeds and one-line JSON verdicts appended to a JSON-lines report;
* :class:`RelStack`: an isolated deployment with canary credentials, optionally on another broker;
* :class:`RabbitNode`: a throwaway RabbitMQ node (own node name, ports, data and log dirs) that can be
  killed with SIGKILL or stopped with ``rabbitmqctl`` and started again on the same data;
* :class:`TcpFaultProxy`: a TCP relay that can reset every live connection, and optionally reads the
  HTTP requests passing through it (to count partner attempts on the wire);
* :class:`EventWitness`: a consumer on a durable quorum queue that survives broker crashes, deduplicating
  on ``event_id`` as the contract asks consumers to;
* ledger inspection (outbox rows, sealed tokens) and the canary scan.

Nothing here sleeps and hopes: every wait is on a condition with a deadline (``wait_until``).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import selectors
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pika
import psycopg
from pika.exceptions import AMQPError

from tests.e2e.harness import (
    Process,
    Sandbox,
    Stack,
    http_ok,
    wait_until,
)
from tests.e2e.harness import start_sandbox as harness_start_sandbox
from worker.bus.envelope import envelope
from worker.bus.topology import declare_events_exchange
from worker.ledger.base import Ledger
from worker.pipeline import partner_ref
from worker.sealing import SealError, TokenSealer
from worker.status import TERMINAL

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "order-worker"

# ------------------------------------------------------------------------------------------ sizes & seeds


@dataclass(frozen=True)
class Sizes:
    """How big each scenario is. CI sizes meet the issue's minimums; ``large`` is for nightly runs."""

    name: str
    kill9_commands: int
    broker_commands: int
    relay_orders: int
    relay_resets: int
    flaky_commands: int
    outage_seconds: float
    outage_commands: int
    ratelimit_replicas: int
    ratelimit_commands: int
    poison_commands: int
    shutdown_commands: int
    canary_commands: int
    soak_seconds: float
    soak_rate: float
    state_machine_examples: int


CI = Sizes(
    name="ci",
    kill9_commands=250,
    broker_commands=2000,
    relay_orders=120,
    relay_resets=6,
    flaky_commands=400,
    outage_seconds=120.0,
    outage_commands=60,
    ratelimit_replicas=3,
    ratelimit_commands=40,
    poison_commands=40,
    shutdown_commands=24,
    canary_commands=40,
    soak_seconds=300.0,
    soak_rate=4.0,
    state_machine_examples=400,
)
LARGE = Sizes(
    name="large",
    kill9_commands=1000,
    broker_commands=10000,
    relay_orders=600,
    relay_resets=25,
    flaky_commands=1000,
    outage_seconds=120.0,
    outage_commands=300,
    ratelimit_replicas=6,
    ratelimit_commands=200,
    poison_commands=200,
    shutdown_commands=100,
    canary_commands=200,
    soak_seconds=1800.0,
    soak_rate=8.0,
    state_machine_examples=3000,
)


def pick_sizes(option: str | None) -> Sizes:
    name = (option or os.environ.get("ORDER_WORKER_RELIABILITY_SIZE") or "ci").lower()
    if name not in ("ci", "large"):
        raise ValueError(f"reliability size must be 'ci' or 'large', got {name!r}")
    return LARGE if name == "large" else CI


def new_seed() -> int:
    return int(os.environ.get("ORDER_WORKER_TEST_SEED", "0")) or random.randrange(1, 2**31)


def report_path() -> Path:
    configured = os.environ.get("ORDER_WORKER_RELIABILITY_REPORT")
    return Path(configured) if configured else REPO / ".run" / "reliability.jsonl"


# ------------------------------------------------------------------------------------------ verdicts


class Verdict:
    """The counts of one scenario and the criteria judged on them, emitted as one JSON line.

    ``emit()`` prints the line, appends it to the report and then fails the test if a criterion failed,
    so the report holds failures too. A scenario that dies before its verdict gets an ``aborted`` line.
    """

    def __init__(self, scenario: str, seed: int, size: str) -> None:
        self.scenario = scenario
        self.started = time.monotonic()
        self.data: dict[str, Any] = {"seed": seed, "size": size}
        self.checks: dict[str, bool] = {}
        self.emitted = False

    def count(self, **values: Any) -> None:
        self.data.update(values)

    def check(self, name: str, ok: bool) -> bool:
        self.checks[name] = bool(ok)
        return bool(ok)

    def line(self, error: str | None = None) -> dict[str, Any]:
        failed = [name for name, ok in self.checks.items() if not ok]
        record: dict[str, Any] = {
            "scenario": self.scenario,
            "pass": error is None and bool(self.checks) and not failed,
            "seconds": round(time.monotonic() - self.started, 1),
            **self.data,
            "criteria": self.checks,
        }
        if failed:
            record["failed"] = failed
        if error is not None:
            record["error"] = error[:500]
        record["at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return record

    def write(self, record: dict[str, Any]) -> None:
        text = json.dumps(record, default=str)
        print(text, flush=True)
        path = report_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(text + "\n")
        self.emitted = True

    def emit(self) -> dict[str, Any]:
        record = self.line()
        self.write(record)
        failed = record.get("failed", [])
        assert not failed, f"{self.scenario} failed {failed}: {json.dumps(record)}"
        return record

    def abort(self, error: str) -> None:
        if not self.emitted:
            self.write(self.line(error=error))


# ------------------------------------------------------------------------------------------ canaries


@dataclass(frozen=True)
class Canaries:
    """Distinctive credentials for one run: the sandbox and the service both use them, and none may
    ever be found in what the service writes (logs, events, dead letters, metrics, exception text)."""

    zt_api_secret: str
    zt_webhook_secret: str
    itrx_api_key: str
    itrx_api_secret: str
    token_key_material: str

    @classmethod
    def fresh(cls) -> Canaries:
        tag = uuid.uuid4().hex
        return cls(
            zt_api_secret=f"canaryZtApiSecret{tag[:20]}",
            zt_webhook_secret=f"canaryZtWebhook{tag[8:28]}",
            itrx_api_key=f"CANARYITRXKEY{tag[:19].upper()}",
            itrx_api_secret=f"CANARYITRXSECRET{tag.upper()}",
            token_key_material=base64.b64encode(os.urandom(32)).decode(),
        )

    @property
    def token_keys(self) -> str:
        return f"rk1:{self.token_key_material}"

    def sandbox_env(self) -> dict[str, str]:
        return {
            "ORDER_WORKER_SANDBOX_ZEROTRACE_API_SECRET": self.zt_api_secret,
            "ORDER_WORKER_SANDBOX_ZEROTRACE_WEBHOOK_SECRET": self.zt_webhook_secret,
            "ORDER_WORKER_SANDBOX_ITRX_API_KEY": self.itrx_api_key,
            "ORDER_WORKER_SANDBOX_ITRX_API_SECRET": self.itrx_api_secret,
        }

    def service_env(self) -> dict[str, str]:
        return {
            "ORDER_WORKER_ZEROTRACE_API_SECRET": self.zt_api_secret,
            "ORDER_WORKER_ZEROTRACE_WEBHOOK_SECRETS": self.zt_webhook_secret,
            "ORDER_WORKER_ITRX_API_KEY": self.itrx_api_key,
            "ORDER_WORKER_ITRX_API_SECRET": self.itrx_api_secret,
            "ORDER_WORKER_TOKEN_KEYS": self.token_keys,
        }

    def secrets(self) -> dict[str, str]:
        return {
            "zt_api_secret": self.zt_api_secret,
            "zt_webhook_secret": self.zt_webhook_secret,
            "itrx_api_key": self.itrx_api_key,
            "itrx_api_secret": self.itrx_api_secret,
            "token_key": self.token_key_material,
        }


def scan_for(texts: Mapping[str, bytes | str], needles: Mapping[str, str]) -> list[str]:
    """``where:what`` for every needle found in any text (needles shorter than 8 chars are ignored)."""
    found = []
    for where, text in texts.items():
        blob = text.encode("utf-8", "replace") if isinstance(text, str) else text
        for what, needle in needles.items():
            if len(needle) >= 8 and needle.encode() in blob:
                found.append(f"{where}:{what}")
    return found


# ------------------------------------------------------------------------------------------ sandbox


def start_sandbox(
    log_dir: Path,
    canaries: Canaries,
    *,
    speed: float = 100.0,
    seed: int | None = None,
    rate_limit_weight: int = 10_000_000,
    extra: Mapping[str, str] | None = None,
) -> Sandbox:
    """A sandbox of our own, with the run's canary credentials (passed by environment, not argv)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDER_WORKER_")}
    env.update(canaries.sandbox_env())
    env["ORDER_WORKER_SANDBOX_ZEROTRACE_RATE_LIMIT_WEIGHT"] = str(rate_limit_weight)
    if seed is not None:
        env["ORDER_WORKER_SANDBOX_SEED"] = str(seed)
    env.update(extra or {})
    return harness_start_sandbox(log_dir, speed, ["--quiet"], env)


def sandbox_requests(sandbox: Sandbox) -> Counter[str]:
    return Counter(sandbox.stats()["requests"])


def add_fault(sandbox: Sandbox, **rule: Any) -> dict[str, Any]:
    answer: dict[str, Any] = sandbox.control("faults", rule)
    return answer


def clear_faults(sandbox: Sandbox) -> None:
    request = urllib.request.Request(f"{sandbox.url}/_sandbox/faults", method="DELETE")
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


# ------------------------------------------------------------------------------------------ the stack


@dataclass
class RelStack(Stack):
    """A :class:`Stack` with canary credentials (and, like any stack, optionally its own broker URL)."""

    canaries: Canaries = field(default_factory=Canaries.fresh)

    def env(self, **extra: str) -> dict[str, str]:
        """Defaults < this stack's canaries < ``settings`` < ``extra``."""
        merged = {
            # the sandboxes here have a huge budget unless a scenario says otherwise (the rate-limit one)
            "ORDER_WORKER_ZEROTRACE_WEIGHT_BUDGET": "10000000",
            "ORDER_WORKER_METRICS_HOST": "127.0.0.1",
            "ORDER_WORKER_WEBHOOKS_HOST": "127.0.0.1",
            **self.canaries.service_env(),
            **self.settings,
            **extra,
        }
        return super().env(**merged)

    def queue_depths(self) -> dict[str, int]:
        """Ready messages per work queue (main, delay and dead-letter queue), via passive declares."""
        depths: dict[str, int] = {}
        connection = pika.BlockingConnection(pika.URLParameters(self.broker_url))
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
        connection = pika.BlockingConnection(pika.URLParameters(self.broker_url))
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
            connection = pika.BlockingConnection(pika.URLParameters(self.broker_url))
            channel = connection.channel()
            for base in (self.create_queue, self.poll_queue):
                for queue in (base, f"{base}.DQ", f"{base}.XQ"):
                    channel.queue_delete(queue)
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


def publish_reliably(
    broker_url: str, queue: str, bodies: Iterable[bytes], deadline_seconds: float = 300.0
) -> int:
    """Publish each body with confirms; reconnect and resend (at least once) across broker failures.

    Returns how many publishes had to be repeated. A command published twice is fine by contract.
    """
    repeats = 0
    pending = list(bodies)
    deadline = time.monotonic() + deadline_seconds
    connection: pika.BlockingConnection | None = None
    index = 0
    while index < len(pending):
        if time.monotonic() > deadline:
            raise AssertionError(f"could not publish {len(pending) - index} commands before the deadline")
        try:
            if connection is None or connection.is_closed:
                parameters = pika.URLParameters(broker_url)
                parameters.socket_timeout = 5
                parameters.blocked_connection_timeout = 10
                connection = pika.BlockingConnection(parameters)
                channel = connection.channel()
                channel.confirm_delivery()
            channel.basic_publish(
                exchange="",
                routing_key=queue,
                body=pending[index],
                properties=pika.BasicProperties(
                    delivery_mode=pika.DeliveryMode.Persistent, content_type="application/json"
                ),
                mandatory=True,
            )
            index += 1
        except (AMQPError, OSError):
            repeats += 1
            with contextlib.suppress(Exception):
                if connection is not None and connection.is_open:
                    connection.close()
            connection = None
            time.sleep(0.25)
    if connection is not None and connection.is_open:
        connection.close()
    return repeats


def create_bodies(queue: str, commands: Iterable[dict[str, Any]]) -> list[bytes]:
    return [envelope(queue, "create_order", command) for command in commands]


# ------------------------------------------------------------------------------------------ supervisor


class Supervisor:
    """Restarts a role whenever its process has died, as Kubernetes would, and, like a liveness probe,
    when it is alive but its /healthz has stopped answering (3 failures 1 s apart, after a 20 s grace).
    Counts both; a liveness restart is the symptom of a hang, so scenarios report it separately."""

    GRACE = 20.0
    PROBES = 3

    def __init__(self, stack: Stack, role: str, *args: str, **env: str) -> None:
        self.stack = stack
        self.role = role
        self.args = args
        self.env = env
        self.restarts = 0
        self.liveness_restarts = 0
        self.exit_codes: list[int | None] = []
        self.process = self._start()

    def _start(self) -> Process:
        self._started = time.monotonic()
        self._failed_probes = 0
        self._last_probe = 0.0
        return self.stack.start(self.role, *self.args, **self.env)

    def _healthy(self) -> bool:
        port = getattr(self.process, "metrics_port", None)
        return port is None or http_ok(f"http://127.0.0.1:{port}/healthz")

    def ensure(self) -> bool:
        """True when the process had died (or hung) and was restarted."""
        if self.process.alive:
            now = time.monotonic()
            if now - self._started < self.GRACE or now - self._last_probe < 1.0:
                return False
            self._last_probe = now
            self._failed_probes = 0 if self._healthy() else self._failed_probes + 1
            if self._failed_probes < self.PROBES:
                return False
            self.liveness_restarts += 1
            self.process.signal_group(signal.SIGKILL)
            self.process.popen.wait(10)
        self.exit_codes.append(self.process.popen.returncode)
        self.restarts += 1
        self.process = self._start()
        return True

    def wait_ready(self, timeout: float = 60) -> None:
        self.stack.wait_ready(self.process, timeout)


# ------------------------------------------------------------------------------------------ event witness


class EventWitness:
    """A durable quorum queue bound to the events exchange, drained by a thread that reconnects.

    It is declared before any event is published, so no event can pass by it; it survives a broker
    crash like any durable queue. Deliveries are deduplicated on ``event_id`` (= message_id).
    """

    def __init__(self, broker_url: str, exchange: str, queue: str | None = None) -> None:
        self.broker_url = broker_url
        self.exchange = exchange
        self.queue = queue or f"{exchange}.witness"
        self.events: dict[str, dict[str, Any]] = {}
        self.deliveries = 0
        self.duplicates = 0
        self.mismatched_ids = 0
        self.reconnects = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._declare()
        self._thread = threading.Thread(target=self._run, name="event-witness", daemon=True)
        self._thread.start()

    def _channel(self) -> tuple[pika.BlockingConnection, Any]:
        parameters = pika.URLParameters(self.broker_url)
        parameters.socket_timeout = 5
        connection = pika.BlockingConnection(parameters)
        channel = connection.channel()
        declare_events_exchange(channel, self.exchange)
        channel.queue_declare(self.queue, durable=True, arguments={"x-queue-type": "quorum"})
        channel.queue_bind(self.queue, self.exchange, routing_key="#")
        return connection, channel

    def _declare(self) -> None:
        connection, _ = self._channel()
        connection.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            connection = None
            try:
                connection, channel = self._channel()
                channel.basic_qos(prefetch_count=500)
                for method, properties, body in channel.consume(self.queue, inactivity_timeout=0.2):
                    if self._stop.is_set():
                        break
                    if method is None:
                        continue
                    self._record(properties.message_id, json.loads(body))
                    channel.basic_ack(method.delivery_tag)
            except (AMQPError, OSError, ValueError):
                self.reconnects += 1
                self._stop.wait(0.5)
            finally:
                if connection is not None:
                    with contextlib.suppress(Exception):
                        connection.close()

    def _record(self, message_id: str | None, event: dict[str, Any]) -> None:
        with self._lock:
            self.deliveries += 1
            if message_id != event.get("event_id"):
                self.mismatched_ids += 1
            if event["event_id"] in self.events:
                self.duplicates += 1
            else:
                self.events[event["event_id"]] = event

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.events.values())

    def wait_for(self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float, what: str) -> None:
        wait_until(lambda: predicate(self.snapshot()), timeout, what, interval=0.25)

    def close(self, delete: bool = True) -> None:
        self._stop.set()
        self._thread.join(10)
        if delete:
            with contextlib.suppress(AMQPError, OSError):
                connection = pika.BlockingConnection(pika.URLParameters(self.broker_url))
                connection.channel().queue_delete(self.queue)
                connection.close()


def by_command(events: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    chains: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        if event.get("command_id"):
            chains.setdefault(event["command_id"], []).append(event)
    return chains


def transition_duplicates(events: Iterable[dict[str, Any]]) -> int:
    """Transitions reported under more than one event id: same order, type, previous and new status."""
    keys = Counter(
        (e.get("command_id"), e["type"], e.get("previous_status"), e.get("status"))
        for e in events
        if e["type"] != "rejected"
    )
    return sum(n - 1 for n in keys.values() if n > 1)


# ------------------------------------------------------------------------------------------ ledger views


def _sql_rows(ledger_url: str, sql: str) -> list[tuple[Any, ...]]:
    if ledger_url.startswith("sqlite:"):
        path = ledger_url.split("sqlite:///", 1)[1].split("?", 1)[0]
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            return list(connection.execute(sql).fetchall())
        finally:
            connection.close()
    with psycopg.connect(ledger_url) as connection:
        return list(connection.execute(sql).fetchall())  # type: ignore[arg-type]


def outbox_ids(ledger_url: str) -> dict[str, bool]:
    """Every event the ledger ever committed: {event_id: published}."""
    return {
        row[0]: row[1] is not None
        for row in _sql_rows(ledger_url, "SELECT event_id, published_at FROM outbox")
    }


def order_rows(ledger_url: str) -> dict[str, dict[str, Any]]:
    rows = _sql_rows(
        ledger_url,
        "SELECT command_id, provider, status, untrackable, attempts, event_seq, order_id, sealed_token,"
        " partner_ref FROM orders",
    )
    return {
        r[0]: {
            "provider": r[1],
            "status": r[2],
            "untrackable": bool(r[3]),
            "attempts": r[4],
            "event_seq": r[5],
            "order_id": r[6],
            "sealed": bytes(r[7]) if r[7] is not None else None,
            "partner_ref": r[8],
        }
        for r in rows
    }


def ledger_bytes(ledger_url: str) -> dict[str, bytes]:
    """The raw stored bytes of the ledger (SQLite files incl. WAL, or every PostgreSQL row as text)."""
    if ledger_url.startswith("sqlite:"):
        path = Path(ledger_url.split("sqlite:///", 1)[1].split("?", 1)[0])
        return {p.name: p.read_bytes() for p in path.parent.glob(path.name + "*") if p.is_file()}
    blobs = {}
    for table in ("orders", "outbox", "dead_letters"):
        rows = _sql_rows(ledger_url, f"SELECT * FROM {table}")
        blobs[f"pg:{table}"] = "\n".join(repr(row) for row in rows).encode()
    return blobs


def is_settled(row: Mapping[str, Any] | None) -> bool:
    """Final, or flagged for a human or for webhooks: nothing automatic is still owed to it."""
    return row is not None and (row["status"] in TERMINAL or row["status"] == "in_doubt")


def open_tokens(ledger: Ledger, canaries: Canaries, command_ids: Iterable[str]) -> dict[str, str]:
    """{command_id: plaintext token} for every 0trace order with a sealed token (the test holds the key)."""
    from pydantic import SecretStr

    sealer = TokenSealer.from_settings([SecretStr(canaries.token_keys)])
    tokens = {}
    for command_id in command_ids:
        record = ledger.get(command_id)
        if record is None or record.sealed_token is None or record.order_id is None:
            continue
        try:
            tokens[command_id] = sealer.open(record.sealed_token, record.order_id)
        except SealError:
            tokens[command_id] = ""
    return tokens


def partner_orders_by_ref(sandbox: Sandbox) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for order in sandbox.orders():
        key = order.get("idempotency_key") or order.get("out_trade_no")
        grouped.setdefault(str(key), []).append(order)
    return grouped


def duplicate_partner_orders(sandbox: Sandbox, command_ids: Iterable[str]) -> tuple[int, int]:
    """(duplicates, partner orders) over the given commands: orders beyond the first per command."""
    grouped = partner_orders_by_ref(sandbox)
    duplicates = total = 0
    for command_id in command_ids:
        orders = grouped.get(partner_ref(NAMESPACE, command_id), [])
        total += len(orders)
        duplicates += max(0, len(orders) - 1)
    return duplicates, total


# ------------------------------------------------------------------------------------------ throwaway broker


def _free_low_port(also_free_at: int | None = None) -> int:
    """A free port below the kernel's ephemeral range (32768+), so no outgoing connection can take it
    while the node is down between restarts; ``also_free_at`` checks a second port at that offset (the
    CLI's distribution port is the node's + 10000)."""
    rng = random.Random()
    for _ in range(500):
        port = rng.randrange(20000, 30000)
        ports = [port] if also_free_at is None else [port, port + also_free_at]
        try:
            for candidate in ports:
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port below the ephemeral range")


class RabbitNode:
    """A second RabbitMQ node for tests that kill or restart the broker (never the shared one on 5672).

    Own node name, AMQP and distribution ports, data (mnesia) and log dirs, pid file, config file and an
    empty enabled-plugins file, all in a temporary directory; ``rabbitmq-server`` is started as root and
    drops to the ``rabbitmq`` user itself, so the directory is handed to that user.
    """

    def __init__(self, base: Path | None = None) -> None:
        # Not under pytest's tmp dir: that is private to root and the node runs as the rabbitmq user.
        self.base = base or Path(tempfile.mkdtemp(prefix="owrel-rabbit-"))
        self.base.chmod(0o755)
        self.name = f"owrel{uuid.uuid4().hex[:8]}@localhost"
        self.port = _free_low_port()
        self.dist_port = _free_low_port(also_free_at=10000)
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0
        self.stops = 0
        self.downtime = 0.0
        base = self.base
        for sub in ("mnesia", "log"):
            (base / sub).mkdir(exist_ok=True)
        (base / "enabled_plugins").write_text("")
        (base / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.port}\n"
            "loopback_users.guest = true\n"
            "vm_memory_high_watermark.relative = 0.6\n"
            "disk_free_limit.absolute = 50MB\n"
        )
        (base / "rabbitmq-env.conf").write_text("ERL_EPMD_ADDRESS=127.0.0.1\n")
        shutil.chown(base, "rabbitmq", "rabbitmq")
        for path in base.rglob("*"):
            shutil.chown(path, "rabbitmq", "rabbitmq")

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    @property
    def pid_file(self) -> Path:
        return self.base / "pid"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update(
            {
                "RABBITMQ_NODENAME": self.name,
                "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
                "RABBITMQ_NODE_PORT": str(self.port),
                "RABBITMQ_DIST_PORT": str(self.dist_port),
                "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
                "RABBITMQ_LOG_BASE": str(self.base / "log"),
                "RABBITMQ_PID_FILE": str(self.pid_file),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
                "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
                "RABBITMQ_CONF_ENV_FILE": str(self.base / "rabbitmq-env.conf"),
                "ERL_EPMD_ADDRESS": "127.0.0.1",
                "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}",  # distribution on loopback only
            }
        )
        return env

    def start(self, timeout: float = 90) -> float:
        """Start on the same data dir; returns the seconds until AMQP accepted a connection."""
        started = time.monotonic()
        log = (self.base / f"server-{self.starts}.out").open("wb")
        self.process = subprocess.Popen(
            ["rabbitmq-server"], env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self.starts += 1
        wait_until(
            lambda: self._amqp_ok() or self.process is None or self.process.poll() is not None,
            timeout,
            f"rabbitmq node {self.name} up",
            interval=0.2,
        )
        assert self.process.poll() is None, (self.base / f"server-{self.starts - 1}.out").read_text()
        return time.monotonic() - started

    def _amqp_ok(self) -> bool:
        try:
            parameters = pika.URLParameters(self.url)
            parameters.socket_timeout = 2
            pika.BlockingConnection(parameters).close()
            return True
        except (AMQPError, OSError):
            return False

    def beam_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def kill9(self) -> None:
        """SIGKILL the Erlang VM: no flush, no clean shutdown of queues or connections."""
        pid = self.beam_pid()
        assert pid is not None, "no pid file: the node never started"
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        self._reap()
        self.kills += 1

    def stop(self) -> None:
        """``rabbitmqctl -n NODE stop``: the orderly shutdown an operator would do."""
        subprocess.run(
            ["rabbitmqctl", "-n", self.name, "stop"],
            env=self.env(),
            check=True,
            capture_output=True,
            timeout=120,
        )
        self._reap()
        self.stops += 1

    def _reap(self) -> None:
        pid = self.beam_pid()

        def gone() -> bool:
            if self.process is not None and self.process.poll() is None:
                return False
            if pid is None:
                return True
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            return False

        wait_until(gone, 60, f"rabbitmq node {self.name} gone", interval=0.1)
        wait_until(lambda: not _port_open(self.port), 30, "AMQP port closed", interval=0.1)

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            if self.process is not None and self.process.poll() is None:
                pid = self.beam_pid()
                if pid is not None:
                    os.kill(pid, signal.SIGKILL)
                self._reap()
        shutil.rmtree(self.base, ignore_errors=True)


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# ------------------------------------------------------------------------------------------ TCP fault proxy


@dataclass
class HttpRequestSeen:
    at: float
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class _HttpSniffer:
    """Splits a client->server byte stream into HTTP/1.1 requests (Content-Length bodies only)."""

    def __init__(self, sink: Callable[[HttpRequestSeen], None]) -> None:
        self.buffer = b""
        self.sink = sink

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1").split("\r\n")
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0") or 0)
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            method, path, *_ = ([*head[0].split(" "), "", ""])[:3]
            self.sink(HttpRequestSeen(time.monotonic(), method, path, headers, body))


def _abort(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the peer sees a TCP RST, as when a middlebox or a host dies."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class TcpFaultProxy:
    """127.0.0.1:<port> -> 127.0.0.1:<upstream>, one selector thread for every connection.

    ``reset_all()`` resets both sides of every live connection (RST); ``http_sink`` receives every HTTP
    request a client sent through it (for counting partner attempts on the wire).
    """

    def __init__(
        self, upstream_port: int, http_sink: Callable[[HttpRequestSeen], None] | None = None
    ) -> None:
        self.upstream_port = upstream_port
        self.http_sink = http_sink
        self.listener = self._listen(0)
        self._listening = True
        self.port: int = self.listener.getsockname()[1]
        self.accepted = 0
        self.resets = 0
        self.reset_connections = 0
        self._selector = selectors.DefaultSelector()
        self._peers: dict[socket.socket, socket.socket] = {}
        self._sniffers: dict[socket.socket, _HttpSniffer] = {}
        self._wake_r, self._wake_w = socket.socketpair()
        self._commands: list[str] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._closed = False
        self._selector.register(self.listener, selectors.EVENT_READ, "accept")
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._thread = threading.Thread(target=self._loop, name="tcp-fault-proxy", daemon=True)
        self._thread.start()

    @staticmethod
    def _listen(port: int) -> socket.socket:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(256)
        listener.setblocking(False)
        return listener

    @property
    def live(self) -> int:
        with self._lock:
            return len(self._peers) // 2

    def reset_all(self) -> int:
        """Reset every live connection; returns how many were cut."""
        return self._command("reset")

    def pause(self) -> int:
        """Partner unreachable: stop listening (connects are refused) and reset every live connection."""
        return self._command("pause")

    def resume(self) -> None:
        """Listen again on the same port."""
        self._command("resume")

    def _command(self, command: str) -> int:
        self._done.clear()
        with self._lock:
            self._commands.append(command)
        self._wake_w.send(b"x")
        assert self._done.wait(5), f"proxy did not {command}"
        return self.reset_connections

    def close(self) -> None:
        with self._lock:
            self._commands.append("close")
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        self._thread.join(5)

    def _loop(self) -> None:
        while not self._closed:
            for key, _ in self._selector.select(0.5):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if key.data == "accept":
                    self._accept()
                elif key.data == "wake":
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(4096)
                    self._run_commands()
                elif sock in self._peers:
                    self._pump(sock)

    def _run_commands(self) -> None:
        with self._lock:
            commands, self._commands = self._commands, []
        for command in commands:
            if command in ("reset", "close", "pause"):
                cut = 0
                for sock in list(self._peers):
                    if self._drop(sock, reset=True):
                        cut += 1
                if command != "close":
                    self.resets += 1
                    self.reset_connections = cut
            if command == "pause" and self._listening:
                self._selector.unregister(self.listener)
                self.listener.close()
                self._listening = False
            if command == "resume" and not self._listening:
                self.listener = self._listen(self.port)
                self._selector.register(self.listener, selectors.EVENT_READ, "accept")
                self._listening = True
            self._done.set()
            if command == "close":
                self._closed = True
                self._selector.close()
                _abort(self.listener)

    def _accept(self) -> None:
        try:
            client, _ = self.listener.accept()
        except OSError:
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=3)
        except OSError:
            _abort(client)
            return
        for sock in (client, upstream):
            sock.setblocking(True)
            sock.settimeout(10)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._peers[client] = upstream
            self._peers[upstream] = client
        if self.http_sink is not None:
            self._sniffers[client] = _HttpSniffer(self.http_sink)
        self._selector.register(client, selectors.EVENT_READ, "client")
        self._selector.register(upstream, selectors.EVENT_READ, "upstream")
        self.accepted += 1

    def _pump(self, sock: socket.socket) -> None:
        peer = self._peers.get(sock)
        if peer is None:
            return
        try:
            data = sock.recv(65536)
        except OSError:
            self._drop(sock, reset=True)
            return
        if not data:
            self._drop(sock, reset=False)
            return
        sniffer = self._sniffers.get(sock)
        if sniffer is not None:
            with contextlib.suppress(Exception):
                sniffer.feed(data)
        try:
            peer.sendall(data)
        except OSError:
            self._drop(sock, reset=True)

    def _drop(self, sock: socket.socket, *, reset: bool) -> bool:
        with self._lock:
            peer = self._peers.pop(sock, None)
            if peer is not None:
                self._peers.pop(peer, None)
        if peer is None:
            return False
        for item in (sock, peer):
            self._sniffers.pop(item, None)
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(item)
            if reset:
                _abort(item)
            else:
                with contextlib.suppress(OSError):
                    item.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    item.close()
        return True


# ------------------------------------------------------------------------------------------ /proc sampling


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    tree, stack = [], [pid]
    while stack:
        current = stack.pop()
        tree.append(current)
        stack.extend(children.get(current, []))
    return tree


@dataclass
class ProcSample:
    rss_kb: int
    fds: int
    threads: int


def sample(pid: int) -> ProcSample | None:
    try:
        status = (Path("/proc") / str(pid) / "status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    values = {}
    for line in status.splitlines():
        name, _, rest = line.partition(":")
        values[name] = rest.strip()
    return ProcSample(
        rss_kb=int(values.get("VmRSS", "0 kB").split()[0]),
        fds=fds,
        threads=int(values.get("Threads", "0")),
    )


def tree_sample(pid: int) -> dict[int, ProcSample]:
    samples = {}
    for member in process_tree(pid):
        taken = sample(member)
        if taken is not None:
            samples[member] = taken
    return samples


def commands_mix(count: int, seed: int, prefix: str) -> list[dict[str, Any]]:
    """Half 0trace, half itrx, shuffled with the seed; command ids carry the prefix and the seed."""
    from tests.e2e.harness import itrx_command, zerotrace_command

    rng = random.Random(seed)
    commands = [
        zerotrace_command(f"{prefix}-zt-{seed}-{i:06d}")
        if i % 2 == 0
        else itrx_command(f"{prefix}-ix-{seed}-{i:06d}")
        for i in range(count)
    ]
    rng.shuffle(commands)
    return commands


@contextlib.contextmanager
def witness(broker_url: str, exchange: str) -> Iterator[EventWitness]:
    watcher = EventWitness(broker_url, exchange)
    try:
        yield watcher
    finally:
        watcher.close()
