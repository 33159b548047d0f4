"""Per-process wiring: one settings object, one ledger, one pooled HTTP client per partner per process.

Built lazily on first use, after Dramatiq has forked its worker processes, so no connection or pool is
ever shared across a fork.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from worker import metrics
from worker.ledger import open_ledger
from worker.ledger.base import Ledger
from worker.pipeline import OrderPipeline
from worker.providers.itrx import ItrxClient
from worker.providers.zerotrace import ZeroTraceClient
from worker.sealing import TokenSealer
from worker.settings import Settings, get_settings
from worker.transport import PartnerHttp


@dataclass
class Runtime:
    settings: Settings
    ledger: Ledger
    pipeline: OrderPipeline
    http: tuple[PartnerHttp, ...]
    """One client per partner: each partner may have its own proxy and TLS material."""

    def close(self) -> None:
        self.ledger.close()
        for client in self.http:
            client.close()


def build_runtime(settings: Settings) -> Runtime:
    settings.check_production_safety()
    ledger = open_ledger(settings.ledger_url.get_secret_value())
    zerotrace_http = PartnerHttp(settings.transport("zerotrace"))
    itrx_http = PartnerHttp(settings.transport("itrx"))
    zerotrace = ZeroTraceClient(
        settings.zerotrace_base_url,
        settings.zerotrace_api_key,
        settings.zerotrace_api_secret,
        zerotrace_http,
        observer=metrics.observe_partner_call,
        other_secrets=settings.zerotrace_webhook_secrets,
    )
    itrx = ItrxClient(
        settings.itrx_base_url,
        settings.itrx_api_key.get_secret_value(),
        settings.itrx_api_secret,
        itrx_http,
        observer=metrics.observe_partner_call,
        other_secrets=settings.itrx_previous_api_secrets,
    )
    pipeline = OrderPipeline(
        settings, ledger, zerotrace, itrx, TokenSealer.from_settings(settings.token_keys)
    )
    return Runtime(settings, ledger, pipeline, (zerotrace_http, itrx_http))


_lock = threading.Lock()
_runtime: Runtime | None = None


def get_runtime() -> Runtime:
    global _runtime  # noqa: PLW0603 - one runtime per process, built after fork
    with _lock:
        if _runtime is None:
            _runtime = build_runtime(get_settings())
        return _runtime
