"""A worker that cannot run as a whole must stop at once, so that it is restarted like any crash.

* Its metrics port is taken: Dramatiq watches its worker processes but not its fork processes, and the
  metrics and health server is a fork process; when it could not bind, the workers went on consuming and
  the pod was never ready.
* A worker process dies while booting: Dramatiq's main process waited 30 s for it to report before
  starting the health server and noticing the death, and a liveness probe read that as a hang.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.stack import Stack
from worker.processes import free_port
from worker.roles.worker import dramatiq_command

pytestmark = pytest.mark.parametrize("ledger_url", ["sqlite"], indirect=True)


@contextlib.contextmanager
def taken_port() -> Iterator[int]:
    port = free_port()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        yield port


def test_the_worker_command_refuses_a_taken_metrics_port(stack: Stack) -> None:
    with taken_port() as port:
        finished = subprocess.run(
            [sys.executable, "-m", "worker.cli", "worker", "--processes", "1", "--threads", "1"],
            env=stack.env(ORDER_WORKER_METRICS_HOST="127.0.0.1", ORDER_WORKER_METRICS_PORT=str(port)),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert finished.returncode == 2
    assert f"cannot serve metrics and health on 127.0.0.1:{port}" in finished.stderr
    assert "ORDER_WORKER_METRICS_PORT" in finished.stderr


def test_workers_stop_when_the_metrics_server_cannot_bind(stack: Stack, tmp_path: Path) -> None:
    """The port taken after the command's own check (a race the check cannot close): Dramatiq is started
    as the worker command starts it, and the whole worker must exit."""
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    command = dramatiq_command((stack.create_queue, stack.poll_queue), 1, 1, shutdown_timeout=10)
    with taken_port() as port:
        env = stack.env(
            ORDER_WORKER_METRICS_HOST="127.0.0.1",
            ORDER_WORKER_METRICS_PORT=str(port),
            PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        )
        worker = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            output, _ = worker.communicate(timeout=90)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.pid, signal.SIGKILL)
    assert f"cannot serve metrics and health on 127.0.0.1:{port}" in output
    assert "stopping the worker" in output


def test_a_worker_process_dying_while_booting_stops_the_worker_promptly(stack: Stack, tmp_path: Path) -> None:
    """The ``worker_boot`` failpoint kills the worker process while it loads the actors, before it tells
    the main process it is up: what a command that crashes the interpreter does when it is taken the moment
    the consumers start. The main process must exit on its own well before Dramatiq's 30 s default wait
    (the liveness probe of the reliability suite restarts after 23 s)."""
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    command = dramatiq_command((stack.create_queue, stack.poll_queue), 1, 1, shutdown_timeout=10)
    env = stack.env(
        ORDER_WORKER_METRICS_HOST="127.0.0.1",
        ORDER_WORKER_METRICS_PORT=str(free_port()),
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        ORDER_WORKER_FAILPOINTS="worker_boot=1",
    )
    worker = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        output, _ = worker.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("the worker was still running 20 s after its worker process died while booting")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)
    assert "failpoint worker_boot: SIGKILL" in output
    assert "exited unexpectedly" in output
    assert worker.returncode != 0
