"""The long-running roles, one module each, each started by ``run(settings, ...)``: ``worker`` (the Dramatiq
actors), ``scheduler`` (due commands, the outbox relay, dead letters) and ``webhooks`` (partner pushes).

The CLI (``worker.cli``) parses options and calls these; tests and embedders can call them directly.
"""

from __future__ import annotations

import signal
import threading

from worker.ledger import open_ledger
from worker.logs import get_logger
from worker.settings import Settings

log = get_logger("worker.roles")


def migrate(settings: Settings) -> None:
    """Apply the ledger's migrations (versioned, safe to race between replicas)."""
    ledger = open_ledger(settings.ledger.ledger_url.get_secret_value())
    try:
        ledger.migrate()
    finally:
        ledger.close()


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT: roles finish what is in flight, then return."""
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        log.info("stopping", signal=signal.Signals(signum).name, next="finish in-flight work, then exit")
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop
