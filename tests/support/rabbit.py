"""Throwaway RabbitMQ nodes for scenarios that kill, restart or freeze the broker (never the shared one):
one node alone (:class:`RabbitNode`), or three joined in a cluster (:class:`RabbitCluster`)."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pika
from pika.exceptions import AMQPError

from tests.support.stack import wait_until
from worker.processes import port_open


def _free_low_port(also_free_at: int | None = None, avoid: Iterable[int] = ()) -> int:
    """A free port below the kernel's ephemeral range (32768+), so no outgoing connection can take it
    while the node is down between restarts; ``also_free_at`` checks a second port at that offset (the
    CLI's distribution port is the node's + 10000)."""
    rng = random.Random()
    for _ in range(500):
        port = rng.randrange(20000, 30000)
        ports = [port] if also_free_at is None else [port, port + also_free_at]
        if set(ports) & set(avoid):
            continue
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

    def __init__(self, base: Path | None = None, avoid_ports: Iterable[int] = (), config: str = "") -> None:
        # Not under pytest's tmp dir: that is private to root and the node runs as the rabbitmq user.
        self.base = base or Path(tempfile.mkdtemp(prefix="owrel-rabbit-"))
        self.base.chmod(0o755)
        self.name = f"owrel{uuid.uuid4().hex[:8]}@localhost"
        taken = set(avoid_ports)
        self.port = _free_low_port(avoid=taken)
        taken.add(self.port)
        self.dist_port = _free_low_port(also_free_at=10000, avoid=taken)
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
            "disk_free_limit.absolute = 50MB\n" + config
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

    def ctl(self, *args: str, tool: str = "rabbitmqctl", timeout: float = 120) -> str:
        """``rabbitmqctl -n NODE ARGS`` (or another CLI tool); its standard output."""
        done = subprocess.run(
            [tool, "-n", self.name, *args],
            env=self.env(),
            check=False,
            capture_output=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise AssertionError(f"{tool} {' '.join(args)} on {self.name}: {done.stderr.decode()[-800:]}")
        return done.stdout.decode()

    def stop(self) -> None:
        """``rabbitmqctl -n NODE stop``: the orderly shutdown an operator would do."""
        self.ctl("stop")
        self._reap()
        self.stops += 1

    def freeze(self) -> None:
        """SIGSTOP the Erlang VM: to its peers and clients the node falls silent, as behind a partition;
        its sockets stay open, so only timeouts and heartbeats can tell."""
        pid = self.beam_pid()
        assert pid is not None, "no pid file: the node never started"
        os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        pid = self.beam_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

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
        wait_until(lambda: not port_open("127.0.0.1", self.port, 0.5), 30, "AMQP port closed", interval=0.1)

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            if self.process is not None and self.process.poll() is None:
                pid = self.beam_pid()
                if pid is not None:
                    os.kill(pid, signal.SIGKILL)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGCONT)  # a frozen VM dies of SIGKILL too, but let it go
                self._reap()
        shutil.rmtree(self.base, ignore_errors=True)


class RabbitCluster:
    """Three throwaway nodes joined in one cluster (never the shared node on 5672).

    The nodes run as the ``rabbitmq`` user, so they share that user's Erlang cookie, which is what lets
    them join; each keeps its own name, ports and directories (:class:`RabbitNode`). They start in
    parallel (an Erlang VM takes long to boot on two cores), then the second and third join the first with
    ``stop_app`` / ``join_cluster`` / ``start_app``. Quorum queues declared afterwards get a member on
    every node (RabbitMQ's default group size is the cluster's size, up to five).

    The nodes run as a three-node production cluster should (:data:`CLUSTER_CONFIG`): a node that falls
    silent is declared down after ``net_ticktime`` (10 s here, 60 s by default), and until then the
    cluster's metadata (queue records, among them which member leads a quorum queue) waits for it, so new
    channels and consumers of a queue it led stall; ``pause_minority`` makes such a node, once it is heard
    again, pause itself and rejoin the majority rather than split the cluster.
    """

    SIZE = 3
    CLUSTER_CONFIG = "cluster_partition_handling = pause_minority\nnet_ticktime = 10\n"

    def __init__(self) -> None:
        self.nodes: list[RabbitNode] = []
        for _ in range(self.SIZE):
            taken = [
                port for node in self.nodes for port in (node.port, node.dist_port, node.dist_port + 10000)
            ]
            self.nodes.append(RabbitNode(avoid_ports=taken, config=self.CLUSTER_CONFIG))

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def url(self, **query: str) -> str:
        """Every node's URL, comma-separated: the way ``ORDER_WORKER_BROKER_URL`` names a cluster."""
        suffix = "?" + "&".join(f"{key}={value}" for key, value in query.items()) if query else ""
        return ",".join(url + suffix for url in self.urls)

    def start(self, timeout: float = 240) -> float:
        """Boot the three nodes at once and join them; returns the seconds it took."""
        started = time.monotonic()
        in_parallel([lambda node=node: node.start(timeout) for node in self.nodes])
        first = self.nodes[0]
        for node in self.nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", first.name)
            node.ctl("start_app")
        wait_until(lambda: len(self.running_nodes()) == self.SIZE, timeout, "all three nodes running")
        return time.monotonic() - started

    def node_named(self, name: str) -> RabbitNode:
        return next(node for node in self.nodes if node.name == name)

    def running_nodes(self, via: RabbitNode | None = None) -> list[str]:
        try:
            status = json.loads((via or self._any_up()).ctl("cluster_status", "--formatter", "json"))
        except (AssertionError, ValueError, subprocess.TimeoutExpired):
            return []
        return list(status.get("running_nodes", []))

    def _any_up(self, but: RabbitNode | None = None) -> RabbitNode:
        for node in self.nodes:
            if node is not but and node.process is not None and node.process.poll() is None:
                return node
        raise AssertionError("no node of the cluster is running")

    def queues(self, via: RabbitNode | None = None) -> dict[str, dict[str, Any]]:
        """Quorum queues as RabbitMQ lists them: ``{name: {"leader", "members", "online"}}``."""
        text = (via or self._any_up()).ctl(
            "list_queues", "name", "type", "leader", "members", "online", "--formatter", "json", "-q"
        )
        return {row["name"]: row for row in json.loads(text) if row.get("type") == "quorum"}

    def leader_of(self, queue: str, via: RabbitNode | None = None) -> RabbitNode:
        return self.node_named(str(self.queues(via)[queue]["leader"]))

    def replicated(self, queues: Iterable[str], via: RabbitNode | None = None) -> bool:
        """Every one of these queues has a member on every node, and all of them online."""
        try:
            listed = self.queues(via)
        except (AssertionError, ValueError, subprocess.TimeoutExpired):
            return False
        names = {node.name for node in self.nodes}
        return all(
            name in listed
            and set(listed[name].get("members", [])) == names
            and set(listed[name].get("online", [])) == names
            for name in queues
        )

    def destroy(self) -> None:
        in_parallel([node.destroy for node in self.nodes])


def in_parallel(calls: Iterable[Callable[[], object]]) -> None:
    """Run the calls on threads of their own and wait for all; the first failure is raised."""
    failures: list[BaseException] = []

    def run(call: Callable[[], object]) -> None:
        try:
            call()
        except BaseException as error:  # handed to the caller below
            failures.append(error)

    threads = [threading.Thread(target=run, args=(call,), daemon=True) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
