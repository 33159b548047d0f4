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
from worker.partners import registry
from worker.pipeline import OrderPipeline
from worker.sealing import TokenSealer
from worker.settings import Settings, get_settings


@dataclass
class Runtime:
    settings: Settings
    ledger: Ledger
    pipeline: OrderPipeline

    def close(self) -> None:
        self.ledger.close()
        for connected in self.pipeline.partners.values():
            for account in connected.every_account():
                if account.http is not None:
                    account.http.close()


def build_runtime(settings: Settings) -> Runtime:
    partners = registry.connect(settings, observer=metrics.observe_partner_call)
    ledger = open_ledger(settings.ledger.ledger_url.get_secret_value())
    pipeline = OrderPipeline(
        settings, ledger, partners, TokenSealer.from_settings(settings.tokens.token_keys)
    )
    return Runtime(settings, ledger, pipeline)


_lock = threading.Lock()
_runtime: Runtime | None = None


def get_runtime() -> Runtime:
    global _runtime  # noqa: PLW0603 - one runtime per process, built after fork
    with _lock:
        if _runtime is None:
            _runtime = build_runtime(get_settings())
        return _runtime
