"""``order-worker run`` leaves nothing behind, however it is stopped: a signal of its own (SIGTERM, a
SIGINT it started with ignored, as a script's background job does, SIGHUP), the death of whatever started
it, or a SIGKILL that leaves it no chance to clean up. Counted from /proc and the ports, not from logs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.stack import wait_until
from worker.processes import free_port, http_ok, port_open


def _free_pair() -> int:
    """A port whose successor is free too: the scheduler's metrics port is the worker's plus one."""
    while True:
        port = free_port()
        if not port_open("127.0.0.1", port + 1):
            return port


METRICS = _free_pair()
PORTS = (free_port(), free_port(), METRICS, METRICS + 1)
RUN = [
    *(sys.executable, "-m", "worker.cli", "run"),
    *("--sandbox-port", str(PORTS[0]), "--webhooks-port", str(PORTS[1]), "--metrics-port", str(METRICS)),
]


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ORDER_WORKER_")}


def _start_direct(tmp: Path, ignore_sigint: bool = False) -> tuple[subprocess.Popen[bytes], int]:
    process = subprocess.Popen(
        RUN,
        cwd=tmp,
        env=_environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_ignore_sigint if ignore_sigint else None,
    )
    return process, process.pid


def _start_under_a_parent(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A parent process that starts the stack and prints its pid: killing the parent is the test."""
    script = (
        "import subprocess, sys\n"
        f"child = subprocess.Popen({RUN!r}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        "print(child.pid, flush=True)\n"
        "child.wait()\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], cwd=tmp, env=_environment(), stdout=subprocess.PIPE
    )
    assert parent.stdout is not None
    return parent, int(parent.stdout.readline())


WAYS: dict[
    str,
    tuple[
        Callable[[Path], tuple[subprocess.Popen[bytes], int]], Callable[[subprocess.Popen[bytes], int], None]
    ],
] = {
    "SIGTERM": (_start_direct, lambda proc, pid: os.kill(pid, signal.SIGTERM)),
    "SIGINT in a background job": (
        lambda tmp: _start_direct(tmp, ignore_sigint=True),
        lambda proc, pid: os.kill(pid, signal.SIGINT),
    ),
    "SIGHUP": (_start_direct, lambda proc, pid: os.kill(pid, signal.SIGHUP)),
    "its parent killed": (_start_under_a_parent, lambda proc, pid: proc.kill()),
    "itself killed": (_start_direct, lambda proc, pid: os.kill(pid, signal.SIGKILL)),
}


@pytest.mark.parametrize("way", list(WAYS))
def test_run_leaves_no_process_and_no_port_behind(way: str, tmp_path: Path) -> None:
    start, stop = WAYS[way]
    handle, run_pid = start(tmp_path)
    started: set[int] = set()
    try:
        wait_until(
            lambda: all(http_ok(f"http://127.0.0.1:{port}/readyz") for port in PORTS[1:]),
            90,
            "the stack ready",
            interval=0.3,
        )
        started = _descendants(run_pid)
        assert len(started) >= 5, started  # sandbox, worker (+ its processes), scheduler, webhooks
        stop(handle, run_pid)
        wait_until(lambda: not _running(run_pid), 60, "order-worker run gone")
        wait_until(lambda: not any(_running(pid) for pid in started), 60, "every process of the stack gone")
        wait_until(lambda: not any(port_open("127.0.0.1", port) for port in PORTS), 30, "the ports free")
    finally:
        # What a failed run left behind must not hold the ports for the rest of the suite.
        for pid in {run_pid, *started, *_descendants(run_pid)}:
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
        handle.wait(10)
