"""Running the sandbox: inside an existing event loop, or on its own loop in a background thread.

The thread mode exists for synchronous tests: the whole sandbox (server, timers, outbound deliveries)
lives on the thread's loop, and the test talks to it only over HTTP, so no state is shared across threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading

from aiohttp import web

from order_worker_sandbox.app import build_app
from order_worker_sandbox.config import SandboxConfig
from order_worker_sandbox.core import Sandbox


class SandboxServer:
    def __init__(self, config: SandboxConfig) -> None:
        self.sandbox = Sandbox(config)
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.port: int = config.port

    @property
    def host(self) -> str:
        return self.sandbox.config.host

    @property
    def base_url(self) -> str:
        host = self.host if ":" not in self.host else f"[{self.host}]"
        scheme = "https" if self.sandbox.config.tls_cert_file else "http"
        return f"{scheme}://{host}:{self.port}"

    def _tls_context(self) -> ssl.SSLContext | None:
        """HTTPS when a certificate is configured; with a client CA, a client certificate is required,
        so a partner's mTLS can be rehearsed locally."""
        config = self.sandbox.config
        if not config.tls_cert_file:
            if config.tls_key_file or config.tls_client_ca_file:
                raise ValueError("tls_key_file and tls_client_ca_file need tls_cert_file")
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(config.tls_cert_file, config.tls_key_file or None)
        if config.tls_client_ca_file:
            context.load_verify_locations(config.tls_client_ca_file)
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    async def start(self) -> None:
        """Bind and serve on the running loop; ``self.port`` holds the real port afterwards."""
        app = build_app(self.sandbox)
        # keepalive_timeout: clients (benchmarks, pools) reuse connections; access logs cost ~15% CPU.
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, keepalive_timeout=75.0)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner,
            self.host,
            self.sandbox.config.port,
            backlog=1024,
            reuse_address=True,
            ssl_context=self._tls_context(),
        )
        await site.start()
        addresses = self._runner.addresses
        if addresses:
            self.port = int(addresses[0][1])
        self.sandbox.scheduler.start()

    async def stop(self) -> None:
        await self.sandbox.scheduler.stop()
        await self.sandbox.deliverer.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- background thread --------------------------------------------------------------------------

    def start_in_thread(self, timeout: float = 10.0) -> None:
        started = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
                errors.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            try:
                loop.run_forever()
            finally:
                with contextlib.suppress(Exception):
                    loop.run_until_complete(self.stop())
                loop.close()

        self._thread = threading.Thread(target=run, name="order-worker-sandbox", daemon=True)
        self._thread.start()
        if not started.wait(timeout):
            raise TimeoutError("the sandbox did not start in time")
        if errors:
            raise errors[0]

    def stop_thread(self, timeout: float = 10.0) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._loop = self._thread = None
