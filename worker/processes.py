"""Child processes of a stack on one machine: ports, readiness waits, the partner sandbox, role processes.

``order-worker run``/``demo``, the end-to-end and reliability tests and the benchmarks all start the same
processes; they share these primitives so that a port is picked, a readiness wait ends and a child is
stopped the same way everywhere, and a fix to one of them reaches all of its users.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

SANDBOX_MODULE = "order_worker_sandbox"

T = TypeVar("T")

_ISSUED_PORTS: set[int] = set()


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _ephemeral_floor() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as handle:
            return int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def free_port() -> int:
    """A port for a server that is about to be started.

    ``bind(0)`` hands out a port from the kernel's ephemeral range, and between closing it and the server's
    own bind any outgoing connection (a worker's broker or database socket) may take it: seen as a metrics
    server dying with EADDRINUSE. Ports below that range are never picked for outgoing connections, and
    none is issued twice by one process."""
    floor = _ephemeral_floor()
    if floor > 12_000:
        for _ in range(500):
            port = random.randrange(10_000, floor)
            if port in _ISSUED_PORTS:
                continue
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _ISSUED_PORTS.add(port)
            return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        chosen: int = sock.getsockname()[1]
    _ISSUED_PORTS.add(chosen)
    return chosen


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - a local URL we built
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def poll(predicate: Callable[[], T], timeout: float, interval: float = 0.1) -> T | None:
    """The predicate's first truthy value, asked again every ``interval`` seconds; None at the deadline.
    Callers say what a timeout means to them (a failed test, a bench that cannot go on, a message)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


def wait_http(
    url: str, timeout: float, alive: Callable[[], bool] | None = None, interval: float = 0.2
) -> bool:
    """True once ``url`` answers 200; False at the deadline, or as soon as ``alive()`` says the process
    that should answer has died (waiting out the deadline then would only hide the cause)."""

    def outcome() -> str | None:
        if http_ok(url):
            return "ready"
        return "died" if alive is not None and not alive() else None

    return poll(outcome, timeout, interval) == "ready"


def die_with_parent() -> None:
    """Have Linux send this process SIGTERM when its parent dies (``prctl(PR_SET_PDEATHSIG)``).

    A child in a session of its own hears nothing of its parent's end: killed with SIGKILL, the parent
    would leave it running, holding its ports, with nobody to stop it. Elsewhere than Linux this does
    nothing."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)


class Child:
    """A child process in its own session with its output in a log file.

    The own session lets one signal reach every process the child forks (Dramatiq's worker processes), and
    keeps a Ctrl-C in the terminal from reaching the children before the parent stops them in order;
    ``tied`` children are also stopped by the kernel when the parent dies without stopping them."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        log_path: Path,
        *,
        append: bool = False,
        cwd: Path | None = None,
        tied: bool = False,
    ) -> None:
        self.name = name
        self.log_path = log_path
        self.log = log_path.open("ab" if append else "wb")
        self.popen = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            list(argv),
            env=dict(env),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=cwd,
            preexec_fn=die_with_parent if tied else None,  # noqa: PLW1509 - one prctl, no locks taken
        )

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal_group(self, signum: int) -> None:
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signum)

    def wait_or_kill(self, timeout: float) -> int | None:
        try:
            self.popen.wait(max(0.1, timeout))
        except subprocess.TimeoutExpired:
            self.signal_group(signal.SIGKILL)
            self.popen.wait(5)
        self.log.close()
        return self.popen.returncode

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM (the graceful shutdown every role implements), SIGKILL after ``timeout`` seconds."""
        self.signal_group(signal.SIGTERM)
        return self.wait_or_kill(timeout)

    def output(self) -> str:
        with contextlib.suppress(ValueError):
            self.log.flush()
        return self.log_path.read_text(errors="replace")


def stop_all(children: Sequence[Child], timeout: float = 30) -> None:
    """Signal every child first and then wait, so the stack takes the longest shutdown, not their sum."""
    for child in reversed(children):
        child.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for child in children:
        child.wait_or_kill(deadline - time.monotonic())


def role_argv(role: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "worker.cli", role, *args]


@dataclass
class RunningSandbox:
    process: Child
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def sandbox_argv(port: int, *options: str, module: str = SANDBOX_MODULE) -> list[str]:
    """The simulator's command line; ``module`` names a wrapper that serves it with prepared state."""
    return [sys.executable, "-m", module, "--port", str(port), *options]


def await_sandbox(process: Child, port: int, timeout: float) -> RunningSandbox:
    """The sandbox once it answers its ping; stopped, with the end of its output raised, if it never does."""
    box = RunningSandbox(process, port)
    if not wait_http(f"{box.url}/_sandbox/ping", timeout, lambda: process.alive):
        process.stop(5)
        raise RuntimeError(f"the sandbox did not answer on {box.url}: {process.output()[-2000:]}")
    return box


def start_sandbox(
    log_path: Path,
    *,
    port: int | None = None,
    speed: float = 100.0,
    extra: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    timeout: float = 30,
    append: bool = False,
    tied: bool = False,
) -> RunningSandbox:
    """The partner simulator as a child process, answering its ping when this returns.

    The simulator is a separate distribution the product never imports; it is run as a module, and a
    missing install is reported with the command that installs it."""
    if importlib.util.find_spec(SANDBOX_MODULE) is None:
        raise RuntimeError(
            "the partner simulator is not installed here; install it with 'pip install ./sandbox' "
            "from a source checkout (production images do not carry it)"
        )
    chosen = free_port() if port is None else port
    options = ["--host", "127.0.0.1", "--speed", str(speed), *extra]
    chosen_env = os.environ if env is None else env
    argv = sandbox_argv(chosen, *options)
    process = Child("sandbox", argv, chosen_env, log_path, append=append, tied=tied)
    return await_sandbox(process, chosen, timeout)
