"""``/metrics``, ``/healthz`` and ``/readyz`` for every role.

Liveness only says the process serves HTTP; readiness checks the dependencies the role needs (ledger,
broker), cached for a few seconds so a scraping storm cannot hammer the database.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pika
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client import multiprocess as prom_multiprocess

log = logging.getLogger(__name__)

Readiness = Callable[[], str | None]
"""Returns None when ready, else a short reason (no secrets: it is served over HTTP)."""


class CachedReadiness:
    def __init__(self, check: Readiness, ttl: float = 3.0) -> None:
        self._check = check
        self._ttl = ttl
        self._lock = threading.Lock()
        self._at = 0.0
        self._value: str | None = "not checked yet"

    def __call__(self) -> str | None:
        with self._lock:
            if time.monotonic() - self._at > self._ttl:
                try:
                    self._value = self._check()
                except Exception as error:  # noqa: BLE001 - any failure means "not ready"
                    self._value = f"{type(error).__name__}"
                self._at = time.monotonic()
            return self._value


def metrics_registry() -> CollectorRegistry:
    """The multiprocess view when worker processes share a metrics directory, else this process's."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        prom_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


def broker_check(broker_url: str) -> Readiness:
    def check() -> str | None:
        parameters = pika.URLParameters(broker_url)
        parameters.socket_timeout = 2
        parameters.blocked_connection_timeout = 2
        connection = pika.BlockingConnection(parameters)
        connection.close()
        return None

    return check


def all_of(*checks: Readiness) -> Readiness:
    def check() -> str | None:
        for item in checks:
            reason = item()
            if reason:
                return reason
        return None

    return check


def serve_http(host: str, port: int, readiness: Readiness) -> ThreadingHTTPServer:
    """Start the server on a daemon thread and return it (``server.server_address`` has the real port)."""
    cached = CachedReadiness(readiness)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._reply(200, generate_latest(metrics_registry()), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                self._reply(200, b"ok\n", "text/plain")
            elif path == "/readyz":
                reason = cached()
                if reason is None:
                    self._reply(200, b"ready\n", "text/plain")
                else:
                    self._reply(503, f"not ready: {reason}\n".encode(), "text/plain")
            else:
                self._reply(404, b"not found\n", "text/plain")

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("http: " + format, *args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server


def port_problem(host: str, port: int) -> str | None:
    """Why ``port`` cannot be served on ``host`` now, or None; checked before the worker starts, so a port
    taken by another service is a clear start-up error instead of a worker with no health endpoints."""
    if port == 0:
        return None
    with socket.socket(ThreadingHTTPServer.address_family) as probe:  # bound as the server binds
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            return _cannot_serve(host, port, error)
    return None


def _cannot_serve(host: str, port: int, error: OSError) -> str:
    return f"cannot serve metrics and health on {host}:{port}: {error.strerror or error}"


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
    from worker.ledger import open_ledger
    from worker.settings import get_settings

    settings = get_settings()
    ledger = open_ledger(settings.ledger_url.get_secret_value())

    def ledger_check() -> str | None:
        ledger.ping()
        return None

    try:
        server = serve_http(
            settings.metrics_host,
            settings.metrics_port,
            all_of(ledger_check, broker_check(settings.broker_url.get_secret_value())),
        )
    except OSError as error:
        # Dramatiq watches its worker processes, not its fork processes: without this the workers would
        # go on consuming with no /metrics and no /readyz, and the pod would never be ready. Stop them all.
        log.critical(
            "%s; stopping the worker", _cannot_serve(settings.metrics_host, settings.metrics_port, error)
        )
        os.kill(os.getppid(), signal.SIGTERM)
        os._exit(1)
    log.info("metrics and health on port %d", server.server_address[1])
    threading.Event().wait()
