"""The worker role's metrics and health process: Dramatiq's ``--fork-function`` (``worker.cli``).

Kept out of ``worker.observability`` because it checks the broker: the webhook receiver serves its
endpoints through that module too, and must not depend on an AMQP library.
"""

from __future__ import annotations

import os
import signal
import threading
import time

from worker.logs import get_logger
from worker.observability import all_of, cannot_serve, serve_http

log = get_logger(__name__)


DRAIN_LIMIT_SECONDS = 600.0
"""The longest this process outlives the SIGTERM, whatever the worker processes do."""


def _siblings(parent: int) -> set[int] | None:
    """The other children of Dramatiq's main process (its worker processes), or None where Linux's
    ``/proc/PID/task/PID/children`` cannot be read."""
    try:
        with open(f"/proc/{parent}/task/{parent}/children", encoding="ascii") as handle:
            return {int(pid) for pid in handle.read().split()} - {os.getpid()}
    except (OSError, ValueError):
        return None


def _drain_then_exit(draining: threading.Event) -> None:
    """Keep answering while the worker processes finish their messages, then leave with ``os._exit``.

    Dramatiq's main process waits for its worker processes, then for this one: serving until the workers
    are gone keeps ``/healthz`` answering (and ``/readyz`` saying "draining") through the whole grace
    period, and never makes the main process wait on this one."""
    draining.set()
    parent = os.getppid()
    deadline = time.monotonic() + DRAIN_LIMIT_SECONDS
    while time.monotonic() < deadline and _siblings(parent):
        time.sleep(0.2)
    os._exit(0)


def serve_worker_http() -> None:
    """Dramatiq fork function (``--fork-function``): the worker processes' shared metrics and health.

    On SIGTERM this process has nothing of its own to finish: it goes on answering until the worker
    processes have exited (:func:`_drain_then_exit`), then leaves with ``os._exit``, which no exception in
    the main thread can delay. Dramatiq's own handler would raise SystemExit wherever the main thread
    happens to be; in the reliability suite (kill -9 scenario, PostgreSQL ledger) a process using it once
    outlived both SIGTERMs it got after a worker crash 0.2 s into start-up, and the main process waited on
    it forever while the pod kept answering /healthz with no worker behind it.
    """
    draining = threading.Event()

    def on_stop(signum: int, frame: object) -> None:
        threading.Thread(target=_drain_then_exit, args=(draining,), daemon=True).start()

    signal.signal(signal.SIGTERM, on_stop)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, on_stop)
    from worker.bus.connection import broker_check
    from worker.ledger import open_ledger
    from worker.settings import get_settings
    from worker.settings_metrics import export_settings

    settings = get_settings()
    export_settings(settings)
    ledger = open_ledger(settings.ledger.ledger_url.get_secret_value())

    def ledger_check() -> str | None:
        ledger.ping()
        return None

    def drain_check() -> str | None:
        return "draining: the worker processes are finishing their messages" if draining.is_set() else None

    try:
        server = serve_http(
            settings.serving.metrics_host,
            settings.serving.metrics_port,
            all_of(drain_check, ledger_check, broker_check(settings.bus.broker_url.get_secret_value())),
        )
    except OSError as error:
        # Dramatiq watches its worker processes, not its fork processes: without this the workers would
        # go on consuming with no /metrics and no /readyz, and the pod would never be ready. Stop them all.
        log.critical(
            "http_unservable",
            reason=cannot_serve(settings.serving.metrics_host, settings.serving.metrics_port, error),
            next="stopping the worker",
        )
        os.kill(os.getppid(), signal.SIGTERM)
        os._exit(1)
    log.info("http_serving", port=server.server_address[1], paths="/metrics /healthz /readyz")
    threading.Event().wait()
