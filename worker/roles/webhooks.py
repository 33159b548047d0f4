"""The webhooks role: the push receiver (``worker.webhooks``) served over HTTP until SIGTERM."""

from __future__ import annotations

from aiohttp import web

from worker.roles import log
from worker.runtime import get_runtime
from worker.settings import Settings
from worker.settings_metrics import export_settings
from worker.webhooks.receiver import PushReceiver
from worker.webhooks.server import build_app


def run(settings: Settings, host: str, port: int, threads: int) -> None:
    """Serve ``POST /webhooks/<provider>`` for every partner with pushes, plus the health endpoints."""
    runtime = get_runtime()
    runtime.ledger.migrate()
    receiver = PushReceiver(settings, runtime.ledger, runtime.pipeline)
    export_settings(settings)
    log.info("webhooks_serving", host=host, port=port)
    # auto_decompress=False: the HMAC covers the bytes on the wire, never a decompressed version of them.
    web.run_app(
        build_app(receiver, threads),
        host=host,
        port=port,
        print=None,
        shutdown_timeout=15,
        auto_decompress=False,
    )
    runtime.close()
