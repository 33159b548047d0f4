"""``order-worker webhooks``: the HTTP face of :mod:`worker.webhooks.receiver`.

aiohttp gives the raw body untouched (no decompression or re-encoding middleware on these routes) and
enforces the body limit before the whole body is read. Ledger work runs in a thread pool so one slow
commit does not stall other deliveries; the partner's 10 s answer budget is far above a commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from worker.logs import get_logger
from worker.observability import CachedReadiness, metrics_registry
from worker.webhooks.receiver import Headers, PushReceiver

log = get_logger(__name__)
OPENAPI = Path(__file__).with_name("openapi.yaml")


def _headers(request: web.Request) -> Headers:
    collected: dict[str, list[str]] = {}
    for name, value in request.headers.items():
        collected.setdefault(name.lower(), []).append(value)
    return collected


def build_app(receiver: PushReceiver, threads: int = 8) -> web.Application:
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="push")

    def ledger_ready() -> None:
        receiver.ledger.ping()

    ready = CachedReadiness(ledger_ready)

    def route(provider: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            try:
                raw = await request.read()
            except web.HTTPRequestEntityTooLarge:
                result = receiver.too_large(provider)
                return web.Response(status=result.status, body=result.body(), content_type="application/json")
            headers = _headers(request)
            try:
                result = await asyncio.get_running_loop().run_in_executor(
                    pool, receiver.receive, provider, raw, headers
                )
            except Exception:
                log.exception("push_unrecorded", next="the partner retries")
                return web.json_response({"result": "unavailable"}, status=503)
            return web.Response(status=result.status, body=result.body(), content_type="application/json")

        return handler

    async def metrics(request: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(metrics_registry()))
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return response

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        reason = await asyncio.get_running_loop().run_in_executor(pool, ready)
        return web.Response(
            status=200 if reason is None else 503,
            text="ready\n" if reason is None else f"not ready: {reason}\n",
        )

    async def openapi(request: web.Request) -> web.Response:
        return web.Response(text=OPENAPI.read_text(), content_type="application/yaml")

    async def close_pool(app: web.Application) -> None:
        pool.shutdown(wait=True)

    app = web.Application(client_max_size=receiver.settings.serving.webhook_max_body)
    for provider in receiver.schemes:
        app.router.add_post(f"/webhooks/{provider}", route(provider))
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/openapi.yaml", openapi)
    app.on_cleanup.append(close_pool)
    return app
