"""The worker role's metrics and health process: Dramatiq's ``--fork-function`` (``worker.cli``).

Kept out of ``worker.observability`` because it checks the broker: the webhook receiver serves its
endpoints through that module too, and must not depend on an AMQP library.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

from worker.observability import all_of, cannot_serve, serve_http

log = logging.getLogger(__name__)


def _exit_now(signum: int, frame: object) -> None:
    os._exit(0)


def serve_worker_http() -> None:
    """Dramatiq fork function (``--fork-function``): the worker processes' shared metrics and health.

    This process only answers HTTP; on SIGTERM it has nothing to finish, so it leaves at once with
    ``os._exit``. Dramatiq's own handler raises SystemExit wherever the main thread happens to be, and the
    Dramatiq main process joins this one before it exits. In the reliability suite (kill -9 scenario,
    PostgreSQL ledger) this process once outlived both SIGTERMs it got after a worker crash 0.2 s into
    start-up; the main process then waited on it forever and the pod kept answering /healthz with no
    worker behind it.
    """
    signal.signal(signal.SIGTERM, _exit_now)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, _exit_now)
    from worker.bus.connection import broker_check
    from worker.ledger import open_ledger
    from worker.settings import get_settings

    settings = get_settings()
    ledger = open_ledger(settings.ledger.ledger_url.get_secret_value())

    def ledger_check() -> str | None:
        ledger.ping()
        return None

    try:
        server = serve_http(
            settings.serving.metrics_host,
            settings.serving.metrics_port,
            all_of(ledger_check, broker_check(settings.bus.broker_url.get_secret_value())),
        )
    except OSError as error:
        # Dramatiq watches its worker processes, not its fork processes: without this the workers would
        # go on consuming with no /metrics and no /readyz, and the pod would never be ready. Stop them all.
        log.critical(
            "%s; stopping the worker",
            cannot_serve(settings.serving.metrics_host, settings.serving.metrics_port, error),
        )
        os.kill(os.getppid(), signal.SIGTERM)
        os._exit(1)
    log.info("metrics and health on port %d", server.server_address[1])
    threading.Event().wait()
