"""``/metrics``, ``/healthz`` and ``/readyz`` for every role.

Liveness only says the process serves HTTP; readiness checks the dependencies the role needs (ledger,
broker), cached for a few seconds so a scraping storm cannot hammer the database. Each role brings its own
checks (the broker's is ``worker.bus.connection.broker_check``), so this module, which the webhook receiver
serves through too, needs no AMQP library.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
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
                    # A ledger that is out says why in a fixed phrase (``LedgerUnavailable.reason``).
                    reason = getattr(error, "reason", None)
                    name = type(error).__name__
                    self._value = f"{name}: {reason}" if isinstance(reason, str) else name
                self._at = time.monotonic()
            return self._value


_MULTIPROCESS: CollectorRegistry | None = None


def metrics_registry() -> CollectorRegistry:
    """The multiprocess view when worker processes share a metrics directory, else this process's.

    The multiprocess collector reads only the shared files, where ``process_*`` and ``python_info`` never
    go: without their own collectors those series vanished from the worker role. They describe the
    process that serves ``/metrics`` (the worker role's HTTP process); its worker processes' memory and
    CPU are the container's, which the kubelet (cAdvisor) reports."""
    global _MULTIPROCESS  # noqa: PLW0603 - one registry per process, built on the first scrape
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    if _MULTIPROCESS is None:
        registry = CollectorRegistry()
        prom_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        _MULTIPROCESS = registry
    return _MULTIPROCESS


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
            return cannot_serve(host, port, error)
    return None


def cannot_serve(host: str, port: int, error: OSError) -> str:
    return f"cannot serve metrics and health on {host}:{port}: {error.strerror or error}"
