"""Every role started from the image the way the chart starts it, and orders run through them.

Called by deploy/image-check.sh. Containers: the sandbox (the image's ``sandbox`` target), ``migrate``,
two workers, the scheduler and the webhook receiver, each with a read-only root, UID 10001, every
capability dropped, no privilege escalation, a tmpfs /tmp and the secrets as files. They share the host's
network and this machine's RabbitMQ and PostgreSQL, under queue, exchange and database names of their own
so that tests running beside them on the same broker never see their messages.

Mid-run one worker is killed (SIGKILL, as an OOM kill or a node loss would) and another is stopped
(SIGTERM, as a rolling update does); replacements start as a Deployment would start them. The verdicts
count from the sources, not from the workers' own word: the events a queue bound to the exchange received,
the ledger's rows and the sandbox's list of partner orders.
"""

# The docker CLI and loopback URLs are this script's whole job: S603/S607/S310 would flag every line of it.
# ruff: noqa: S603, S607, S310, S108
from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pika
import psycopg
from order_worker_client.producer import CommandProducer

from worker.bus.topology import declare_events_exchange
from worker.partners import registry
from worker.pipeline import partner_ref
from worker.processes import free_port, poll
from worker.status import TERMINAL

ROOT = Path(__file__).resolve().parents[2]
BROKER = os.environ.get("IMAGE_CHECK_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
POSTGRES = os.environ.get("IMAGE_CHECK_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
NAMESPACE = "image-check"
SECRETS_IN_CONTAINER = "/run/secrets/order-worker"  # where the chart mounts its Secret
WORKER_GRACE = 120  # the chart's terminationGracePeriodSeconds for workers
WORKER_SHUTDOWN = 90  # and its shutdownTimeoutSeconds
PROBE_FAILURE_THRESHOLD = 3  # the chart's liveness and readiness failureThreshold
PUBLISH_SECONDS = 30  # the commands arrive over this long

PROBE = (
    "import sys, urllib.request, urllib.error\n"
    "try:\n"
    "    print(urllib.request.urlopen(sys.argv[1], timeout=3).status)\n"
    "except urllib.error.HTTPError as e:\n"
    "    print(e.code)\n"
    "except OSError as e:\n"
    "    print(-1 if 'timed out' in str(e) else 0, type(e).__name__, e)\n"
)
# Read-only root, user and capabilities as the process itself sees them.
INSIDE = (
    "import errno, os\n"
    "caps = [l.split()[1] for l in open('/proc/self/status') if l.startswith('CapEff')][0]\n"
    "try:\n"
    "    open('/var/lib/order-worker/probe', 'w')\n"
    "    ro = 'writable'\n"
    "except OSError as e:\n"
    "    ro = 'read-only' if e.errno == errno.EROFS else str(e)\n"
    "open('/tmp/probe', 'w').close()\n"
    "print(os.getuid(), os.getgid(), int(caps, 16), ro)\n"
)


class Failed(Exception):
    pass


def docker(*args: str, check: bool = True, timeout: float = 300) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise Failed(f"docker {' '.join(args[:3])}... exited {done.returncode}: {done.stderr.strip()[-800:]}")
    return done.stdout.strip()


def example_commands(prefix: str, count: int) -> list[dict[str, Any]]:
    """``count`` creates alternating between 0trace and itrx, each with the example order its plug-in
    documents: what a user would submit against the sandbox."""
    providers = ("0trace", "itrx")
    return [
        {
            "command_id": f"{prefix}-{i}",
            "provider": providers[i % 2],
            "params": dict(registry.get(providers[i % 2]).example_params),
        }
        for i in range(count)
    ]


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    value = poll(predicate, timeout, interval)
    if value is None:
        raise Failed(f"timed out after {timeout:.0f} s waiting for {what}")
    return value


def http_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


class Verdicts:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.failed = 0
        path.write_text("")

    def note(self, text: str) -> None:
        """A measurement that decides nothing."""
        print(f"INFO {text}", flush=True)
        with self.path.open("a") as f:
            f.write(f"INFO {text}\n")

    def add(self, ok: bool, text: str) -> bool:
        # One line per verdict: container logs are printed on their own when something failed.
        line = f"{'PASS' if ok else 'FAIL'} {text.splitlines()[0] if text else ''}"
        print(line, flush=True)
        with self.path.open("a") as f:
            f.write(line + "\n")
        self.failed += not ok
        return ok


class Witness:
    """A quorum queue bound to the run's events exchange before anything publishes; dedupes on event_id."""

    def __init__(self, exchange: str, broker: str = BROKER, queue: str | None = None) -> None:
        self.broker = broker
        self.queue = queue or f"{exchange}.witness"
        self.exchange = exchange
        self.events: dict[str, dict[str, Any]] = {}
        self.deliveries = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        connection, _ = self._channel()
        connection.close()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _channel(self) -> tuple[pika.BlockingConnection, Any]:
        connection = pika.BlockingConnection(pika.URLParameters(self.broker))
        channel = connection.channel()
        declare_events_exchange(channel, self.exchange)
        channel.queue_declare(self.queue, durable=True, arguments={"x-queue-type": "quorum"})
        channel.queue_bind(self.queue, self.exchange, routing_key="#")
        return connection, channel

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                connection, channel = self._channel()
                channel.basic_qos(prefetch_count=500)
                for method, _properties, body in channel.consume(self.queue, inactivity_timeout=0.2):
                    if self._stop.is_set():
                        break
                    if method is None:
                        continue
                    event = json.loads(body)
                    with self._lock:
                        self.deliveries += 1
                        self.events.setdefault(event["event_id"], event)
                    channel.basic_ack(method.delivery_tag)
                connection.close()
            except (pika.exceptions.AMQPError, OSError):
                self._stop.wait(0.5)

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.events.values())

    def close(self, delete: bool = False) -> None:
        self._stop.set()
        self._thread.join(10)
        if delete:
            with contextlib.suppress(pika.exceptions.AMQPError, OSError):
                connection = pika.BlockingConnection(pika.URLParameters(self.broker))
                connection.channel().queue_delete(self.queue)
                connection.close()


class Run:
    def __init__(self, image: str, sandbox_image: str, orders: int, verdicts: Verdicts) -> None:
        self.image = image
        self.sandbox_image = sandbox_image
        self.orders = orders
        self.v = verdicts
        self.uid = uuid.uuid4().hex[:8]
        self.prefix = f"ic-{self.uid}"
        self.create_queue = f"ic{self.uid}.create"
        self.poll_queue = f"ic{self.uid}.poll"
        self.exchange = f"ic{self.uid}.events"
        self.database = f"image_check_{self.uid}"
        self.ledger_url = POSTGRES.rsplit("/", 1)[0] + "/" + self.database
        self.sandbox_port = free_port()
        self.webhooks_port = free_port()
        self.secrets = Path(tempfile.mkdtemp(prefix="order-worker-secrets-"))
        self.metrics_ports: dict[str, int] = {}
        self.witness: Witness | None = None
        self._t0 = 0.0
        self.probe_errors: Counter[str] = Counter()

    # ---------------------------------------------------------------------------------- plumbing
    def prepare(self) -> None:
        with psycopg.connect(POSTGRES, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{self.database}"')
        compose = ROOT / "deploy" / "compose-secrets"
        for name in (
            "order_worker_zerotrace_api_key",
            "order_worker_zerotrace_api_secret",
            "order_worker_zerotrace_webhook_secrets",
            "order_worker_itrx_api_key",
            "order_worker_itrx_api_secret",
        ):
            shutil.copy(compose / name, self.secrets / name)
        (self.secrets / "order_worker_broker_url").write_text(BROKER)
        (self.secrets / "order_worker_ledger_url").write_text(self.ledger_url)
        key = secrets.token_bytes(32)
        (self.secrets / "order_worker_token_keys").write_text(f"ci1:{base64.b64encode(key).decode()}")
        # The chart's Secret volume is readable by the pod's user only through fsGroup; here, by anyone.
        self.secrets.chmod(0o755)
        for path in self.secrets.iterdir():
            path.chmod(0o644)
        self.witness = Witness(self.exchange)

    def secret(self, name: str) -> str:
        return (self.secrets / name).read_text().strip().split(",")[0]

    def service_env(self, metrics_port: int) -> dict[str, str]:
        return {
            "ORDER_WORKER_SECRETS_DIR": SECRETS_IN_CONTAINER,
            "ORDER_WORKER_CREATE_QUEUE": self.create_queue,
            "ORDER_WORKER_POLL_QUEUE": self.poll_queue,
            "ORDER_WORKER_EVENTS_EXCHANGE": self.exchange,
            "ORDER_WORKER_IDEMPOTENCY_NAMESPACE": NAMESPACE,
            "ORDER_WORKER_ZEROTRACE_BASE_URL": f"http://127.0.0.1:{self.sandbox_port}",
            "ORDER_WORKER_ITRX_BASE_URL": f"http://127.0.0.1:{self.sandbox_port}",
            "ORDER_WORKER_ITRX_CALLBACK_URL": f"http://127.0.0.1:{self.webhooks_port}/webhooks/itrx",
            "ORDER_WORKER_ZEROTRACE_WEIGHT_BUDGET": "0",
            "ORDER_WORKER_WEBHOOKS_PORT": str(self.webhooks_port),
            "ORDER_WORKER_METRICS_PORT": str(metrics_port),
            "ORDER_WORKER_POLL_AWAITING_DEPOSIT": "1",
            "ORDER_WORKER_POLL_CONFIRMING": "1",
            "ORDER_WORKER_POLL_PROCESSING": "1",
            "ORDER_WORKER_POLL_ACTION_REQUIRED": "1",
            "ORDER_WORKER_SCHEDULER_INTERVAL": "0.5",
            "ORDER_WORKER_SUBMIT_STUCK_SECONDS": "10",
            "ORDER_WORKER_RETRY_BASE_SECONDS": "0.2",
            "ORDER_WORKER_RETRY_MAX_SECONDS": "2",
        }

    def container(self, name: str, image: str, args: list[str], env: dict[str, str], grace: int) -> str:
        """``docker run -d`` with the chart's security context and mounts."""
        full = f"{self.prefix}-{name}"
        flags = [
            "run",
            "-d",
            "--name",
            full,
            "--label",
            f"order-worker.image-check={self.uid}",
            "--network",
            "host",
            "--read-only",
            "--user",
            "10001:10001",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--tmpfs",
            "/tmp:size=128m,mode=1777",
            "--stop-timeout",
            str(grace),
            "-v",
            f"{self.secrets}:{SECRETS_IN_CONTAINER}:ro",
        ]
        for key, value in env.items():
            flags += ["-e", f"{key}={value}"]
        docker(*flags, image, *args)
        return full

    def role(self, name: str, args: list[str], grace: int, port: int | None = None) -> str:
        port = port or free_port()
        self.metrics_ports[name] = port
        return self.container(name, self.image, args, self.service_env(port), grace)

    def probe(self, name: str, path: str, record: bool = False) -> int:
        """One probe from inside the container, as the kubelet's exec probe or compose's healthcheck would."""
        url = f"http://127.0.0.1:{self.metrics_ports[name]}{path}"
        done = subprocess.run(
            ["docker", "exec", f"{self.prefix}-{name}", "python", "-c", PROBE, url],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
        code, _, reason = done.stdout.strip().partition(" ")
        if done.returncode != 0 or not code.lstrip("-").isdigit():
            code, reason = "0", f"docker exec: {done.stderr.strip()[-200:]}"
        if reason and record:
            self.probe_errors[f"{name} {path}: {reason}"] += 1
        return int(code)

    def state(self, name: str) -> dict[str, Any]:
        state: dict[str, Any] = json.loads(
            docker("inspect", "--format", "{{json .State}}", f"{self.prefix}-{name}")
        )
        return state

    def wait_ready(self, name: str, timeout: float = 90) -> None:
        def ready() -> bool:
            if not self.state(name)["Running"]:
                raise Failed(
                    f"{name} exited {self.state(name)['ExitCode']} before it was ready:\n{self.logs(name)}"
                )
            return self.probe(name, "/readyz") == 200

        wait_until(ready, timeout, f"{name} /readyz from inside the container")

    def logs(self, name: str, lines: int = 40) -> str:
        done = subprocess.run(
            ["docker", "logs", "--tail", str(lines), f"{self.prefix}-{name}"],
            capture_output=True,
            text=True,
            check=False,
        )
        return (done.stdout + done.stderr).strip()

    def check_confinement(self, name: str) -> None:
        host = json.loads(docker("inspect", "--format", "{{json .HostConfig}}", f"{self.prefix}-{name}"))
        user = docker("inspect", "--format", "{{.Config.User}}", f"{self.prefix}-{name}")
        inside = docker("exec", f"{self.prefix}-{name}", "python", "-c", INSIDE).split()
        ok = (
            host["ReadonlyRootfs"] is True
            and host["CapDrop"] == ["ALL"]
            and user == "10001:10001"
            and inside == ["10001", "10001", "0", "read-only"]
        )
        self.v.add(
            ok,
            f"{name}: read-only root, UID/GID {inside[0]}/{inside[1]}, effective capabilities {inside[2]},"
            f" root filesystem {inside[3]}, /tmp writable",
        )

    # ---------------------------------------------------------------------------------- the run
    def start(self) -> None:
        sandbox_env = {
            "ORDER_WORKER_SANDBOX_ZEROTRACE_API_KEY": self.secret("order_worker_zerotrace_api_key"),
            "ORDER_WORKER_SANDBOX_ZEROTRACE_API_SECRET": self.secret("order_worker_zerotrace_api_secret"),
            "ORDER_WORKER_SANDBOX_ZEROTRACE_WEBHOOK_SECRET": self.secret(
                "order_worker_zerotrace_webhook_secrets"
            ),
            "ORDER_WORKER_SANDBOX_ZEROTRACE_WEBHOOK_URL": f"http://127.0.0.1:{self.webhooks_port}/webhooks/0trace",
            "ORDER_WORKER_SANDBOX_ITRX_API_KEY": self.secret("order_worker_itrx_api_key"),
            "ORDER_WORKER_SANDBOX_ITRX_API_SECRET": self.secret("order_worker_itrx_api_secret"),
            "ORDER_WORKER_SANDBOX_ITRX_DEFAULT_CALLBACK_URL": f"http://127.0.0.1:{self.webhooks_port}/webhooks/itrx",
            "ORDER_WORKER_SANDBOX_ZEROTRACE_RATE_LIMIT_WEIGHT": "1000000",
        }
        self.container(
            "sandbox",
            self.sandbox_image,
            ["sandbox", "--host", "127.0.0.1", "--port", str(self.sandbox_port), "--speed", "120", "--quiet"],
            sandbox_env,
            10,
        )
        wait_until(
            lambda: http_ok(f"http://127.0.0.1:{self.sandbox_port}/_sandbox/ping"),
            60,
            "the sandbox container",
        )
        started = time.monotonic()
        name = self.role("migrate", ["migrate"], 30)
        code = int(docker("wait", name, timeout=120))
        self.v.add(code == 0, f"migrate: exit {code} in {time.monotonic() - started:.1f} s")
        if code != 0:
            raise Failed(f"migrate failed:\n{self.logs('migrate')}")
        self.role("webhooks", ["webhooks", "--port", str(self.webhooks_port)], 30, port=self.webhooks_port)
        self.role("scheduler", ["scheduler", "--no-migrate"], 60)
        for worker in ("worker-1", "worker-2"):
            self.start_worker(worker)
        for name in ("webhooks", "scheduler", "worker-1", "worker-2"):
            self.wait_ready(name)
        for name in ("sandbox", "webhooks", "scheduler", "worker-1", "worker-2"):
            if name == "sandbox":
                self.metrics_ports["sandbox"] = self.sandbox_port
            self.check_confinement(name)

    def start_worker(self, name: str) -> None:
        self.role(
            name,
            [
                "worker",
                "--processes",
                "2",
                "--threads",
                "8",
                "--shutdown-timeout",
                str(WORKER_SHUTDOWN),
                "--no-migrate",
            ],
            WORKER_GRACE,
        )

    def commands(self) -> list[dict[str, Any]]:
        # Interleaved, so both partners are in flight when workers are killed and stopped.
        return example_commands(f"roles-{self.uid}", self.orders)

    def ledger(self) -> dict[str, tuple[str, str | None]]:
        with psycopg.connect(self.ledger_url) as connection:
            rows = connection.execute("SELECT command_id, status, order_id FROM orders").fetchall()
        return {r[0]: (r[1], r[2]) for r in rows}

    def outbox(self) -> dict[str, bool]:
        with psycopg.connect(self.ledger_url) as connection:
            rows = connection.execute("SELECT event_id, published_at FROM outbox").fetchall()
        return {r[0]: r[1] is not None for r in rows}

    def watch_probes(self, name: str, stop: threading.Event, samples: list[tuple[float, int, int]]) -> None:
        while not stop.is_set():
            health, ready = self.probe(name, "/healthz", True), self.probe(name, "/readyz", True)
            # Stamped when answered: a probe sent just before SIGTERM and refused after it is a drain sample.
            samples.append((time.monotonic(), health, ready))
            stop.wait(1)

    def publish(self, commands: list[dict[str, Any]], seconds: float, errors: list[BaseException]) -> None:
        """Paced over ``seconds`` so that the kill and the stop land while commands are still arriving."""
        try:
            with CommandProducer(BROKER, self.create_queue, self.poll_queue) as producer:
                for i, command in enumerate(commands):
                    producer.create_order(command)
                    time.sleep(max(0.0, seconds * (i + 1) / len(commands) - (time.monotonic() - self._t0)))
        except Exception as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    def execute(self) -> None:
        assert self.witness is not None
        commands = self.commands()
        ids = {c["command_id"] for c in commands}
        # worker-2 is probed from inside, as the kubelet would, from now until it is gone.
        samples: list[tuple[float, int, int]] = []
        stop = threading.Event()
        watcher = threading.Thread(target=self.watch_probes, args=("worker-2", stop, samples), daemon=True)
        watcher.start()
        started = self._t0 = time.monotonic()
        errors: list[BaseException] = []
        publisher = threading.Thread(
            target=self.publish, args=(commands, PUBLISH_SECONDS, errors), daemon=True
        )
        publisher.start()

        def created() -> int:
            return sum(1 for e in self.witness.snapshot() if e["type"] == "created") if self.witness else 0

        wait_until(lambda: created() >= len(ids) // 4, 120, "a quarter of the orders created", 0.2)
        docker("kill", f"{self.prefix}-worker-1")
        killed = self.state("worker-1")
        self.v.add(
            killed["ExitCode"] == 137,
            f"docker kill worker-1 after {created()} of {len(ids)} creates:"
            f" exit {killed['ExitCode']} (SIGKILL)",
        )
        self.start_worker("worker-3")
        self.wait_ready("worker-3")

        wait_until(lambda: created() >= len(ids) // 2, 120, "half of the orders created", 0.2)
        term_at = time.monotonic()
        at_stop = created()
        docker("stop", "-t", str(WORKER_GRACE), f"{self.prefix}-worker-2", timeout=WORKER_GRACE + 30)
        took = time.monotonic() - term_at
        stop.set()
        watcher.join(30)
        stopped = self.state("worker-2")
        self.v.add(
            stopped["ExitCode"] == 0 and took < WORKER_GRACE,
            f"docker stop worker-2 after {at_stop} creates: exit {stopped['ExitCode']} after {took:.1f} s"
            f" (grace {WORKER_GRACE} s, shutdown timeout {WORKER_SHUTDOWN} s)",
        )
        before = [s for s in samples if s[0] < term_at]
        during = [s for s in samples if s[0] >= term_at]
        self.v.add(
            len(before) >= 3
            and longest_failing_run([h for _, h, _r in before]) < PROBE_FAILURE_THRESHOLD
            and longest_failing_run([r for _, _h, r in before]) < PROBE_FAILURE_THRESHOLD,
            f"worker-2 /healthz and /readyz from inside the container: {len(before)} samples over"
            f" {term_at - started:.0f} s until SIGTERM,"
            f" /healthz {dict(Counter(h for _, h, _r in before))}"
            f" /readyz {dict(Counter(r for _, _h, r in before))} (-1 = over the chart's 3 s probe timeout;"
            f" fails on {PROBE_FAILURE_THRESHOLD} in a row, the chart's failureThreshold)",
        )
        # The health process answers until the worker processes have finished (worker/worker_http.py);
        # the last probe may meet the container already gone, so it is not judged.
        self.v.add(
            all(h == 200 for _, h, _r in during[:-1]),
            f"worker-2 while draining ({took:.1f} s): /healthz {dict(Counter(h for _, h, _r in during))}"
            f" /readyz {dict(Counter(r for _, _h, r in during))} (0 = no answer; the last probe may"
            " meet the container gone)",
        )
        for reason, count in self.probe_errors.items():
            self.v.note(f"probe without an answer, {count} x {reason}")
        publisher.join(PUBLISH_SECONDS + 60)
        if errors:
            raise Failed(f"publishing failed: {errors[0]!r}")
        self.start_worker("worker-4")
        self.wait_ready("worker-4")

        def settled() -> bool:
            rows = self.ledger()
            done = [cid for cid in ids if cid in rows and (rows[cid][0] in TERMINAL)]
            outbox = self.outbox()
            seen = {e["event_id"] for e in self.witness.snapshot()} if self.witness else set()
            return len(done) == len(ids) and all(outbox.values()) and set(outbox) <= seen

        with contextlib.suppress(Failed):
            wait_until(settled, 240, "every order terminal and every event received", 1)
        elapsed = time.monotonic() - started
        self.verdict_orders(ids, elapsed)

    def verdict_orders(self, ids: set[str], elapsed: float) -> None:
        assert self.witness is not None
        rows = self.ledger()
        statuses = Counter(rows[c][0] if c in rows else "missing" for c in ids)
        terminal = sum(n for s, n in statuses.items() if s in TERMINAL)
        self.v.add(
            terminal == len(ids),
            f"orders: {terminal}/{len(ids)} terminal in {elapsed:.0f} s (both partners) {dict(statuses)}",
        )
        events = [e for e in self.witness.snapshot() if e.get("command_id") in ids]
        created = Counter(e["command_id"] for e in events if e["type"] == "created")
        types: dict[str, set[str]] = {}
        for e in events:
            types.setdefault(e["command_id"], set()).add(e["type"])
        # A create cut short by the kill may have reached itrx, which has no idempotency: the order goes
        # in_doubt instead of `created` and the partner's callback settles it (README, "Never guess").
        in_doubt = sorted(c for c in ids if created[c] == 0 and "in_doubt" in types.get(c, set()))
        wrong = sorted(c for c in ids if created[c] > 1 or (created[c] == 0 and c not in in_doubt))
        self.v.add(
            not wrong,
            f"contract: one `created` per command ({sum(1 for c in ids if created[c] == 1)}/{len(ids)};"
            f" {len(in_doubt)} in_doubt instead, as the kill may leave an itrx create;"
            f" {sum(1 for c in ids if created[c] > 1)} with more than one)",
        )
        for command_id in wrong + in_doubt:
            chain = [
                f"{e['type']}:{e.get('previous_status')}->{e.get('status')}({e.get('source')})"
                for e in events
                if e["command_id"] == command_id
            ]
            self.v.note(f"{command_id}: {' '.join(chain)}")
        transitions = Counter(
            (e.get("command_id"), e["type"], e.get("previous_status"), e.get("status"))
            for e in events
            if e["type"] != "rejected"
        )
        duplicates = sum(n - 1 for n in transitions.values() if n > 1)
        self.v.add(
            duplicates == 0,
            f"contract: one event id per transition ({len(events)} events, {duplicates} transitions under a"
            f" second id; {self.witness.deliveries} deliveries)",
        )
        outbox = self.outbox()
        seen = {e["event_id"] for e in self.witness.snapshot()}
        lost = set(outbox) - seen
        unpublished = sum(1 for published in outbox.values() if not published)
        self.v.add(
            not lost and not unpublished,
            f"nothing lost: {len(outbox)} ledger events, {len(outbox) - len(lost)} received on the exchange,"
            f" {unpublished} unpublished",
        )
        answer = http_json(f"http://127.0.0.1:{self.sandbox_port}/_sandbox/orders")
        orders = answer["orders"] if isinstance(answer, dict) else answer
        by_ref = Counter(str(o.get("idempotency_key") or o.get("out_trade_no")) for o in orders)
        per_command = [by_ref.get(partner_ref(NAMESPACE, c), 0) for c in ids]
        duplicated = sum(1 for n in per_command if n > 1)
        missing = sum(1 for n in per_command if n == 0)
        self.v.add(
            duplicated == 0 and missing == 0,
            f"partner orders: {sum(per_command)} in the sandbox for {len(ids)} commands,"
            f" {duplicated} duplicated, {missing} never created",
        )

    def stop_all(self) -> None:
        """Every remaining role stops on SIGTERM and exits 0, as on a rolling update."""
        names = ["webhooks", "scheduler", "worker-3", "worker-4"]
        codes = {}
        for name in names:
            grace = WORKER_GRACE if name.startswith("worker") else 60
            docker("stop", "-t", str(grace), f"{self.prefix}-{name}", timeout=grace + 30)
            codes[name] = self.state(name)["ExitCode"]
        self.v.add(
            all(c == 0 for c in codes.values()),
            f"SIGTERM: every role exits 0 {codes}",
        )

    def cleanup(self, dump_logs: bool) -> None:
        if self.witness is not None:
            self.witness.close()
        names = docker(
            "ps",
            "-a",
            "--filter",
            f"label=order-worker.image-check={self.uid}",
            "--format",
            "{{.Names}}",
            check=False,
        ).split()
        if dump_logs:
            for name in names:
                short = name.removeprefix(f"{self.prefix}-")
                print(f"----- {short} (last lines) -----\n{self.logs(short)}", file=sys.stderr)
        if names:
            docker("rm", "-f", *names, check=False)
        with contextlib.suppress(Exception):
            connection = pika.BlockingConnection(pika.URLParameters(BROKER))
            channel = connection.channel()
            for base in (self.create_queue, self.poll_queue):
                for queue in (base, f"{base}.DQ", f"{base}.XQ"):
                    channel.queue_delete(queue)
            channel.queue_delete(f"{self.exchange}.witness")
            channel.queue_delete(f"{self.exchange}.unrouted")
            channel.exchange_delete(self.exchange)
            channel.exchange_delete(f"{self.exchange}.unrouted")
            connection.close()
        with contextlib.suppress(Exception), psycopg.connect(POSTGRES, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        shutil.rmtree(self.secrets, ignore_errors=True)


def longest_failing_run(codes: list[int]) -> int:
    longest = current = 0
    for code in codes:
        current = current + 1 if code != 200 else 0
        longest = max(longest, current)
    return longest


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@contextlib.contextmanager
def timed(label: str) -> Iterator[None]:
    started = time.monotonic()
    yield
    print(f"     {label}: {time.monotonic() - started:.0f} s", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", required=True)
    parser.add_argument("--sandbox-image", required=True)
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--verdicts", type=Path, required=True, help="PASS/FAIL lines are appended here")
    options = parser.parse_args()
    verdicts = Verdicts(options.verdicts)
    run = Run(options.image, options.sandbox_image, options.orders, verdicts)
    error = None
    try:
        with timed("role matrix"):
            run.prepare()
            run.start()
            run.execute()
            run.stop_all()
    except (Failed, subprocess.TimeoutExpired, pika.exceptions.AMQPError, psycopg.Error, OSError) as exc:
        error = exc
        verdicts.add(False, f"role matrix aborted: {exc}")
    finally:
        run.cleanup(dump_logs=error is not None or verdicts.failed > 0)
    return 1 if verdicts.failed or error else 0


if __name__ == "__main__":
    sys.exit(main())
