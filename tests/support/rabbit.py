"""A throwaway RabbitMQ node for scenarios that kill or restart the broker (never the shared one)."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pika
from pika.exceptions import AMQPError

from tests.support.stack import wait_until
from worker.processes import port_open


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
        wait_until(lambda: not port_open("127.0.0.1", self.port, 0.5), 30, "AMQP port closed", interval=0.1)

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            if self.process is not None and self.process.poll() is None:
                pid = self.beam_pid()
                if pid is not None:
                    os.kill(pid, signal.SIGKILL)
                self._reap()
        shutil.rmtree(self.base, ignore_errors=True)
