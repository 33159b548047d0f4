"""The worker role: this process becomes Dramatiq's worker for the create and poll actors (``worker.actors``).

Prometheus metrics of several processes need a shared directory, set before anything imports
prometheus_client, so the role replaces this process (``execve``) with Dramatiq's command line (through
``worker.roles.dramatiq_main``, which gives Dramatiq's processes our log format and level).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from worker.settings import Settings


def run(settings: Settings, processes: int, threads: int, shutdown_timeout: float) -> None:
    """Replace this process with the Dramatiq worker; returns only if ``execve`` fails."""
    metrics_dir = Path(
        os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="order-worker-metrics-")
    )
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "dramatiq_prom_db": str(metrics_dir)}
    command = dramatiq_command(
        (settings.bus.create_queue, settings.bus.poll_queue, settings.bus.actions_queue),
        processes,
        threads,
        shutdown_timeout,
    )
    os.execve(sys.executable, command, env)  # noqa: S606 - our own interpreter


# How long Dramatiq's main process waits for its worker processes to report that they booted before it
# starts the fork process serving /metrics and /healthz. A worker process that dies while booting (a
# command that crashes the interpreter, taken the moment its consumers start; the OOM killer) never
# reports, and with Dramatiq's default of 30 s the main process then sat for 30 s with no health endpoint
# and without noticing the dead worker, which a liveness probe reads as a hang. Our only fork process
# serves HTTP and needs nothing from the workers, so it may start before they are up: the main process
# then sees the dead worker within a second and exits, and the pod is restarted as for any crash.
WORKER_FORK_TIMEOUT_MS = 1000


def dramatiq_command(
    queues: Sequence[str], processes: int, threads: int, shutdown_timeout: float
) -> list[str]:
    """The Dramatiq command line the worker role becomes (tests start it as the role does)."""
    return [
        sys.executable,
        "-m",
        "worker.roles.dramatiq_main",
        "worker.actors",
        "--skip-logging",
        "--processes",
        str(processes),
        "--threads",
        str(threads),
        "--queues",
        *queues,
        "--worker-shutdown-timeout",
        str(int(shutdown_timeout * 1000)),
        "--worker-fork-timeout",
        str(WORKER_FORK_TIMEOUT_MS),
        "--fork-function",
        "worker.worker_http:serve_worker_http",
    ]
