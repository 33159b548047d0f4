"""The aiohttp application: both partner APIs and the control API on one router, faults in front.

Every partner route goes through :func:`_instrument`, which counts the request and its answer and applies
the fault rule (if any) picked for that endpoint. When no rule exists this costs one empty-list check,
so the benchmark measures the simulators, not the fault machinery.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Awaitable, Callable

from aiohttp import web

from order_worker_sandbox.control import ControlApi
from order_worker_sandbox.core import Sandbox
from order_worker_sandbox.faults import FaultRule
from order_worker_sandbox.itrx import ItrxApi
from order_worker_sandbox.responses import html_response, json_response, zt_error
from order_worker_sandbox.zerotrace import ZeroTraceApi

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SANDBOX_KEY: web.AppKey[Sandbox] = web.AppKey("sandbox", Sandbox)
MAX_BODY = 1024 * 1024


def _reset_connection(request: web.Request) -> None:
    """Abort with SO_LINGER=0 so the client sees a TCP RST, as when a proxy or process dies."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _dropped(request: web.Request) -> web.Response:
    """Reset the connection; the returned response is never written (the socket is gone)."""
    _reset_connection(request)
    return web.Response(status=499)


class _ConnectionUse:
    """How many requests each client connection has carried.

    A connection is known by its transport object, looked up by the client's address and port. The port
    alone is not enough: on loopback Linux hands a client a port still in TIME_WAIT for its next
    connection (``tcp_tw_reuse``), so a new connection can arrive from the port of an old one; the
    transport tells them apart. The table is dropped whole when it grows (a forgotten connection then
    looks new, which only spares it a fault)."""

    _LIMIT = 50_000

    def __init__(self) -> None:
        self._requests: dict[object, tuple[object, int]] = {}

    def reused(self, request: web.Request) -> bool:
        transport = request.transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        if peer is None:
            return False
        known, seen = self._requests.get(peer, (None, 0))
        if known is not transport:
            seen = 0
            if len(self._requests) >= self._LIMIT:
                self._requests.clear()
        self._requests[peer] = (transport, seen + 1)
        return seen > 0


def _closed_unread(request: web.Request) -> web.Response:
    """Close the connection without reading the request (FIN, not RST): the partner's idle timer fired."""
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=499)


def _fault_response(rule: FaultRule, endpoint: str) -> web.Response:
    zerotrace = endpoint.startswith("0trace.")
    if rule.kind == "http_500":
        return zt_error(99, 500) if zerotrace else html_response("<h1>Server Error (500)</h1>", 500)
    if rule.kind == "http_503":
        if zerotrace:
            return zt_error(11, 503)
        return html_response(
            "<html><head><title>503 Service Temporarily Unavailable</title></head></html>", 503
        )
    if rule.kind == "http_429":
        headers = {"Retry-After": str(rule.retry_after)}
        if zerotrace:
            return zt_error(5, 429, headers)
        secs = rule.retry_after
        return json_response(
            {"detail": f"Request was throttled. Expected available in {secs} seconds."}, 429, headers
        )
    # kind == "error": caller-specified status and JSON body
    return json_response(rule.body if rule.body is not None else {}, rule.status)


def _instrument(sandbox: Sandbox, endpoint: str, handler: Handler, connections: _ConnectionUse) -> Handler:
    stats = sandbox.stats
    faults = sandbox.faults

    async def wrapped(request: web.Request) -> web.StreamResponse:
        stats.requests[endpoint] += 1
        rule = faults.pick(endpoint, connections.reused(request))
        if rule is not None:
            stats.faults[f"{endpoint}:{rule.kind}"] += 1
            if rule.kind == "idle_close":
                return _closed_unread(request)
            if rule.kind == "latency":
                await asyncio.sleep(rule.latency_ms / 1000)
            elif rule.kind == "reset":
                await request.read()
                return _dropped(request)
            elif rule.kind not in ("lose_response", "latency_after"):
                await request.read()
                injected = _fault_response(rule, endpoint)
                stats.responses[(endpoint, injected.status)] += 1
                return injected
        resp = await handler(request)
        if rule is not None and rule.kind == "lose_response":
            return _dropped(request)
        if rule is not None and rule.kind == "latency_after":
            await asyncio.sleep(rule.latency_ms / 1000)
        stats.responses[(endpoint, resp.status)] += 1
        return resp

    return wrapped


def build_app(sandbox: Sandbox) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    app[SANDBOX_KEY] = sandbox
    connections = _ConnectionUse()
    for api in (ZeroTraceApi(sandbox), ItrxApi(sandbox)):
        for method, path, endpoint, handler in api.routes():
            app.router.add_route(method, path, _instrument(sandbox, endpoint, handler, connections))
    for method, path, handler in ControlApi(sandbox).routes():
        app.router.add_route(method, path, handler)
    return app
